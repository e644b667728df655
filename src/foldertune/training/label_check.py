"""The label check (`foldertune check --labels`): the frozen backbone looks at every image once, and the doctor adds
suspected label errors, near-duplicates the hash missed and outliers to its verdict.

    report = check_source("photos/", decode="draft")
    check_labels(report, LabelCheckOptions(model="mobilenet_v2"))   # adds findings and scores to `report`
    write_fix_manifest(report, "fixed.csv", relabel=False)          # for `foldertune train --manifest fixed.csv`

The features come through the feature cache that linear training uses (`<cache>/features/`), so a second check,
or a linear run on the same images, reads them instead of computing them again. Nothing in the data folder is
written.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foldertune.analysis.label_scores import (
    FOLDS,
    HEADS,
    MIN_LABEL_SCORE,
    OutOfFold,
    out_of_fold_probabilities,
    outlier_flags,
    outlier_scores,
    rank_label_issues,
)
from foldertune.config import ModelConfig
from foldertune.data.check import DataCheck, Finding
from foldertune.data.near_duplicates import MIN_COSINE, NearPair, copy_groups, embedding_pairs, fold_groups
from foldertune.data.split import assign_splits, write_manifest
from foldertune.errors import UserError
from foldertune.models.registry import get_backbone
from foldertune.runs.atomic import check_output, is_inside


@dataclass(frozen=True)
class LabelCheckOptions:
    """How the label check looks at the images."""

    model: str = ModelConfig.backbone
    """the pretrained backbone whose features judge the labels (--model)"""
    img_size: int | None = None
    """input size in pixels (--img-size; default: the backbone's own)"""
    folds: int = FOLDS
    """linear heads trained, each on all folds but one (--folds)"""
    min_score: float = MIN_LABEL_SCORE
    """how sure a suspected label error must be besides being among the estimated number of likeliest ones: 1 - the
    probability of its own class, 0..1 (--min-label-score)"""
    device: str = "auto"
    """where the backbone runs (--device)"""
    cache_dir: str | None = None
    """the cache folder (default: $FOLDERTUNE_CACHE_DIR or ~/.cache/foldertune)"""
    seed: int = 0
    """fold assignment"""

    def __post_init__(self) -> None:
        get_backbone(self.model)  # an unknown name is a UserError with a suggestion
        if self.img_size is not None and (isinstance(self.img_size, bool) or not 16 <= self.img_size <= 4096):
            raise UserError(f"--img-size must be between 16 and 4096 pixels; got {self.img_size!r}.")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise UserError(f"--folds must be a whole number of 2 or more; got {self.folds!r}.")
        if not 0 <= self.min_score <= 1:
            raise UserError(f"--min-label-score must be between 0 and 1; got {self.min_score!r}.")


def label_check_options(
    *,
    model: str | None = None,
    img_size: int | None = None,
    folds: int | None = None,
    min_label_score: float | None = None,
    device: str | None = None,
    cache_dir: str | None = None,
) -> LabelCheckOptions:
    """LabelCheckOptions from the flags' values (None: the default), validated."""
    return LabelCheckOptions(
        model=model or ModelConfig.backbone, img_size=img_size, folds=FOLDS if folds is None else folds,
        device=device or "auto", cache_dir=cache_dir,
        min_score=MIN_LABEL_SCORE if min_label_score is None else min_label_score,
    )  # fmt: skip


LABEL_OPTIONS = ("model", "img_size", "folds", "min_label_score", "device", "cache_dir")  # of label_check_options


def check_fix_options(
    *, labels: bool, fix_manifest: str | os.PathLike | None, relabel: bool, label_options: dict | None = None
) -> None:
    """Refuse label-check options without --labels, and --relabel without --fix-manifest, as the CLI and API do.

    `label_options`: the options of `label_check_options` that were given (None values count as not given).
    """
    given = {name: value for name, value in (label_options or {}).items() if value is not None}
    unknown = sorted(set(given) - set(LABEL_OPTIONS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], LABEL_OPTIONS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"unknown option {unknown[0]!r} for check; {hint}choose from {', '.join(LABEL_OPTIONS)}.")
    if given and not labels:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise UserError(f"{flag} needs --labels: it sets how the label check looks at the images.")
    if fix_manifest is not None and not labels:
        raise UserError("--fix-manifest needs --labels: the label check finds what to leave out.")
    if relabel and fix_manifest is None:
        raise UserError("--relabel needs --fix-manifest OUT.csv: the manifest that gets the suggested classes.")


def check_labels(report: DataCheck, options: LabelCheckOptions, *, progress: bool = True, log=print) -> DataCheck:
    """Add suspected label errors, near-duplicates by feature cosine and outliers to `report` (and return it)."""
    classes = sorted({record.label for record in report.records})
    if len(classes) < 2:
        raise UserError("--labels needs at least two classes with readable images: a label is judged against others.")
    started = time.perf_counter()
    features, computed = _features([record.path for record in report.records], options, progress=progress, log=log)
    paths = [record.path for record in report.records]
    near = embedding_pairs(features, min_cosine=MIN_COSINE, progress=progress)
    report.add_near_pairs([NearPair(paths[i], paths[j], f"feature cosine {cosine:.2f}") for i, j, cosine in near])

    index = {label: i for i, label in enumerate(classes)}
    labels = np.array([index[record.label] for record in report.records])
    position = {path: i for i, path in enumerate(paths)}
    group_of = np.arange(len(paths))
    for number, group in enumerate(fold_groups(report.records, report.duplicate_groups, report.near_pairs)):
        for record in group:
            group_of[position[record.path]] = len(paths) + number  # copies share a fold
    fit, reused = _out_of_fold(features, labels, group_of, options)
    verdict = rank_label_issues(labels, fit.probabilities, min_score=options.min_score)
    outliers = outlier_scores(features)
    strange = outlier_flags(outliers)
    typical = float(np.median(outliers))
    for i, record in enumerate(report.records):
        suggested = classes[verdict.suggested[i]]
        report.scores[record.path] = {"suggested_class": suggested, "label_score": f"{verdict.score[i]:.4f}",
                                      "outlier_score": f"{outliers[i]:.4f}"}  # fmt: skip
        if verdict.flagged[i]:
            report.add_findings(record.path, [Finding(
                "label-issue", f"filed as '{record.label}', looks like '{suggested}' (score {verdict.score[i]:.2f})"
            )])  # fmt: skip
        if strange[i]:
            report.add_findings(record.path, [Finding(
                "outlier", f"outlier score {outliers[i]:.2f}, typical {typical:.2f}"
            )])  # fmt: skip
    _nearest_of_suspects(report, features, labels, verdict.suggested, np.flatnonzero(verdict.flagged))
    report.labels_checked = True
    report.ranked["label-issue"] = [paths[i] for i in verdict.order]
    report.ranked["outlier"] = [paths[i] for i in np.argsort(-outliers, kind="stable")]
    report.about.append(
        f"label check: {options.model} features of {len(paths)} image(s) ({computed} computed, "
        f"{len(paths) - computed} from the cache), {_folds_used(options.folds, labels, group_of)} linear heads "
        f"(C={fit.c:g}"
        f"{', from the cache' if reused else ''}), {verdict.estimated} label error(s) estimated by {verdict.method}, "
        f"{time.perf_counter() - started:.1f} s"
    )
    return report


def write_fix_manifest(
    report: DataCheck, out: str | os.PathLike, *, relabel: bool, val: float = 0.2, seed: int = 0
) -> dict[str, int]:
    """A path,class,split manifest of the usable images without the suspected label errors (or, with `relabel`,
    with the suggested class); images not split yet are split as `train` would (copies together). Returns counts."""
    suspects = {path for path, found in report.findings.items() if any(f.kind == "label-issue" for f in found)}
    records = []
    for record in report.records:
        if record.path in suspects and not relabel:
            continue
        label = report.scores[record.path]["suggested_class"] if record.path in suspects else record.label
        records.append(type(record)(record.path, label, record.split))
    if any(record.split is None for record in records):
        together = copy_groups(records, report.duplicate_groups, report.near_pairs)
        records, _ = assign_splits(records, val_fraction=val, test_fraction=0.0, seed=seed, together=together)
    write_manifest(out, records)
    return {"images": len(records), "left out": 0 if relabel else len(suspects), "relabelled": len(suspects) * relabel}


def check_output_path(path: str | os.PathLike, data: str | os.PathLike, *, flag: str, force: bool) -> Path:
    """An output file of `check`: never inside the data folder, never replaced without --force."""
    path = Path(path).expanduser()
    if Path(data).is_dir() and is_inside(path, data):
        raise UserError(f"{flag} '{path}' is inside the data folder; check never writes there: pick a path outside it.")
    return check_output(path, flag, force=force, inputs=(data,))


def _nearest_of_suspects(
    report: DataCheck, features: np.ndarray, labels: np.ndarray, suggested: np.ndarray, suspects: np.ndarray, k: int = 3
) -> None:
    """For each suspect, its `k` nearest images (cosine) in the class it is filed under and in the suggested one."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    for i in suspects.tolist():
        similarity = unit @ unit[i]
        similarity[i] = -np.inf
        nearest = {}
        for name, label in (("given", labels[i]), ("suggested", suggested[i])):
            members = np.flatnonzero(labels == label)
            members = members[members != i]
            chosen = members[np.argsort(-similarity[members], kind="stable")[:k]]
            nearest[name] = [report.records[j].path for j in chosen.tolist()]
        report.neighbours[report.records[i].path] = nearest


def _folds_used(asked: int, labels: np.ndarray, groups: np.ndarray) -> str:
    """How many folds the heads use, in words: '5-fold', or '3-fold (not the 5 asked for: ...)' when the smallest
    class or the copy groups allow fewer (`fold_count`)."""
    from foldertune.analysis.label_scores import fold_count

    used = fold_count(asked, labels, groups)
    if used >= asked:
        return f"{used}-fold"
    return f"{used}-fold (not the {asked} asked for: the smallest class, or the copies, allow no more)"


def _out_of_fold(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, options: LabelCheckOptions
) -> tuple[OutOfFold, bool]:
    """The out-of-fold probabilities, read from the cache folder when the same features, labels, copy groups, folds
    and seed were judged before (`<cache>/label-check/`); and whether they were."""
    from foldertune.runs.cache import ArrayStore, cache_root

    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([HEADS, options.folds, options.seed, features.shape, str(features.dtype)]).encode())
    for array in (features, labels.astype(np.int64), np.unique(groups, return_inverse=True)[1].astype(np.int64)):
        digest.update(np.ascontiguousarray(array).tobytes())
    name = digest.hexdigest()
    store = ArrayStore(cache_root(options.cache_dir) / "label-check")
    cached = store.load(name, shape=(len(labels) + 1, int(labels.max()) + 1))
    if cached is not None:  # the last row holds the chosen strength and its log loss
        return OutOfFold(cached[:-1], float(cached[-1, 0]), float(cached[-1, 1])), True
    fit = out_of_fold_probabilities(features, labels, groups, folds=options.folds, seed=options.seed)
    extra = np.zeros((1, fit.probabilities.shape[1]))
    extra[0, :2] = fit.c, fit.log_loss
    try:
        store.save(name, np.vstack([fit.probabilities, extra]))
    except OSError as error:  # a read-only cache: the next check fits the heads again
        warnings.warn(f"the label check's cache '{store.folder}' is not writable ({error})", stacklevel=2)
    return fit, False


def _features(paths: list[str], options: LabelCheckOptions, *, progress: bool, log) -> tuple[np.ndarray, int]:
    """(N, width) frozen-backbone features of the evaluation view, through the feature cache; and how many were
    computed."""
    from foldertune.device import choose_runtime
    from foldertune.models.build import build_model
    from foldertune.models.weights import resolve_weights
    from foldertune.runs.cache import cache_root
    from foldertune.training.frozen_features import extract_features, feature_store

    backbone = get_backbone(options.model)
    state_dict, _ = resolve_weights(backbone, log=log)
    pre = backbone.preprocessing.with_crop_size(options.img_size)
    model = build_model(options.model, num_classes=None, state_dict=state_dict, img_size=pre.crop_size).eval()
    runtime = choose_runtime(options.device, "auto")
    model = model.to(runtime.device)
    store = feature_store(model, options.model, pre, precision=runtime.precision, root=cache_root(options.cache_dir))
    features, computed = extract_features(model, options.model, paths, pre, runtime, store=store, progress=progress,
                                          desc="features (label check)")  # fmt: skip
    return features[:, 0].numpy(), computed
