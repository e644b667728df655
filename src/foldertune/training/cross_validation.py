"""Cross-validation (`train --folds K`): K runs fold-1 ... fold-K inside one run folder, then cv.json.

    run = cross_validate(RunConfig.from_flat(data="photos/", mode="linear", folds=5))   # -> Path of the run folder
    run = resume_cross_validation("runs/mobilenet_v2-linear-5fold")                      # the unfinished folds

The train and val images are pooled and dealt into K stratified folds (`assign_folds`; copies, exact or near, share a
fold, as `split` keeps them in one split); test images stay out of every fold. Fold k is a normal run folder
(`fit` with a split of its own: fold k is its val split, the other folds its train split, the test images its test
split) evaluated without figures, so that K folds cost K trainings and little else; `foldertune report RUN/fold-k`
draws them. In linear mode the feature cache computes each image's features once, for every fold. Then each metric's
mean and spread over the folds and the pooled out-of-fold metrics go to cv.json, every out-of-fold prediction to
cv_predictions.csv and cv_logits.npy, and the summary to the terminal. With --refit a final model is trained on all
train and val images with the same settings into the run folder itself (no validation split: its last epoch is
best.pt); without it the run has no model of its own, and predict / export / evaluate refuse it, naming a fold.

--resume continues with the first unfinished fold (finished ones, with their metrics.json, are kept), then the refit.
Under torchrun every process trains every fold, one after the other; rank 0 alone writes the files.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections import Counter
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from foldertune.analysis.calibration import fit_temperature
from foldertune.analysis.cross_validation import OutOfFold, cv_summary
from foldertune.config import RunConfig
from foldertune.data.check import CHECK_COLUMNS
from foldertune.data.near_duplicates import fold_groups
from foldertune.data.scan import ImageRecord
from foldertune.data.split import assign_folds, write_manifest
from foldertune.device import choose_runtime
from foldertune.errors import UserError
from foldertune.models.registry import get_backbone
from foldertune.runs.atomic import read_json, write_json
from foldertune.runs.checkpoint import load_checkpoint, save_checkpoint
from foldertune.runs.folder import RunFolder, check_new_run
from foldertune.runs.tables import read_table, write_table
from foldertune.training.distributed import Distributed
from foldertune.training.fit import RunFinished, _check_data, finish, fit, resume
from foldertune.training.interrupt import TrainingInterrupted
from foldertune.training.prepare import PreparedData, prepare_data
from foldertune.training.run_record import config_record

FOLD_COLUMNS = ["path", "class", "fold"]


def cross_validate(cfg: RunConfig, *, data: PreparedData | None = None, quiet: bool = False, log=print) -> Path:
    """Train the K folds of a new cross-validation run (and the final model with --refit); returns its run folder."""
    dist = Distributed.from_environment()
    if not dist.is_main:
        quiet, log = True, _silent
    dist.start(choose_runtime(dist.device(cfg.train.device), cfg.train.precision).device)  # once, for every fold

    def setup() -> tuple[PreparedData, dict[str, int], str]:
        check_new_run(cfg)
        prepared = data if data is not None else prepare_data(cfg.data, seed=cfg.train.seed, progress=not quiet)
        pooled = _pooled(prepared)
        log(pooled.summary())  # the counts the folds are dealt from
        together = fold_groups(pooled.records, prepared.check.duplicate_groups, prepared.check.near_pairs)
        dealt = [record for record in pooled.records if record.split == "train"]
        check_folds(cfg.train.folds, dealt)
        fold_of = assign_folds(dealt, folds=cfg.train.folds, seed=cfg.train.seed, together=together)
        default = f"{cfg.model.backbone}-{cfg.train.mode}-{cfg.train.folds}fold"
        run = RunFolder.create(cfg.project, cfg.run_name, default_name=default)
        run.write_classes(pooled.classes)
        write_manifest(run.split_file, pooled.records)
        write_table(run.folds_file, FOLD_COLUMNS, [{"path": r.path, "class": r.label, "fold": fold_of[r.path]}
                                                   for r in dealt])  # fmt: skip
        run.data_report_log().append(*prepared.report_rows())
        write_table(run.data_check_file, CHECK_COLUMNS, pooled.check.rows())
        pre = get_backbone(cfg.model.backbone).preprocessing.with_crop_size(cfg.data.img_size)
        runtime = choose_runtime(dist.device(cfg.train.device), cfg.train.precision)
        run.write_config(config_record(cfg, runtime, pre, pooled, "as each fold's config.json says"))
        return pooled, fold_of, str(run.path)

    pooled, fold_of, path = dist.from_main(setup)
    run = RunFolder(path)
    test = pooled.count("test")
    log(
        f"cross-validation: {len(fold_of)} train and val images dealt into {cfg.train.folds} stratified folds "
        f"(copies kept together) in {run.path}" + (f"; the {test} test images stay out of every fold" if test else "")
    )
    return _train_folds(run, cfg, pooled, fold_of, dist, quiet=quiet, log=log, overrides={})


def resume_cross_validation(
    run_path: str | os.PathLike,
    *,
    epochs: int | None = None,
    device: str | None = None,
    workers: int | None = None,
    quiet: bool = False,
    log=print,
) -> Path:
    """Continue a cross-validation run: the unfinished folds (finished ones are kept), the summary, the refit."""
    dist = Distributed.from_environment()
    if not dist.is_main:
        quiet, log = True, _silent
    run = RunFolder(Path(run_path).expanduser())
    cfg = RunConfig.from_dict(run.config()["settings"])
    dist.start(choose_runtime(dist.device(device or cfg.train.device), cfg.train.precision).device)
    if epochs is not None and epochs != cfg.train.epochs:
        raise UserError(
            f"--epochs cannot change when resuming the cross-validation run '{run.path}': every fold trains alike; "
            "drop it (or start a new run with --folds and more --epochs)."
        )
    if _finished(run, cfg):
        raise RunFinished(f"cross-validation run '{run.path}' already finished: cv.json and every fold are written.")
    overrides = {key: value for key, value in (("device", device), ("workers", workers)) if value is not None}
    if device is not None:
        cfg = replace(cfg, train=replace(cfg.train, device=device))
    if workers is not None:
        cfg = replace(cfg, data=replace(cfg.data, workers=workers))

    def verified() -> tuple[list[ImageRecord], dict[str, int]]:
        records = _check_data(run, cfg, quiet)  # every image there and unchanged since the run started
        return records, {row["path"]: int(row["fold"]) for row in read_table(run.folds_file)}

    records, fold_of = dist.from_main(verified)
    pooled = PreparedData(run.config()["data"]["source"], run.classes(), records)
    log(f"resuming the cross-validation run {run.path} ({cfg.train.folds} folds)")
    return _train_folds(run, cfg, pooled, fold_of, dist, quiet=quiet, log=log, overrides=overrides)


def check_folds(folds: int, records: list[ImageRecord]) -> None:
    """Refuse more folds than the smallest class has images: some fold would validate without that class."""
    counts = Counter(record.label for record in records)
    label, smallest = min(sorted(counts.items()), key=lambda item: item[1])
    if folds > smallest:
        fewer = f"pass a --folds of {smallest} or fewer, or " if smallest >= 2 else ""  # --folds is 2 or more
        raise UserError(
            f"--folds asks for {folds} folds, more than the {smallest} train and val image(s) of class '{label}', so "
            f"some fold would validate without it; {fewer}add images to '{label}' (at least {folds}), or train "
            "without --folds."
        )


def is_cross_validation(run: RunFolder) -> bool:
    """Whether `run` was started with --folds (no torch needed)."""
    return bool(run.folds())


def _pooled(data: PreparedData) -> PreparedData:
    """`data` with its val images counted as train: what the folds are dealt from and --refit trains on."""
    records = [replace(record, split="train") if record.split == "val" else record for record in data.records]
    check = dataclasses.replace(data.check, records=records) if data.check is not None else None
    return replace(data, records=records, check=check)


def _fold_data(pooled: PreparedData, fold_of: dict[str, int], number: int) -> PreparedData:
    """Fold `number`'s split: its images are val, the other folds' train, the test images test."""
    records = [
        replace(record, split="val" if fold_of[record.path] == number else "train") if record.path in fold_of
        else record for record in pooled.records
    ]  # fmt: skip
    check = dataclasses.replace(pooled.check, records=records) if pooled.check is not None else None
    return replace(pooled, records=records, check=check, warnings=[])


def _fold_config(cfg: RunConfig, run: RunFolder, number: int) -> RunConfig:
    """Fold `number`'s settings: the run's, inside its folder, numbers only (`report RUN/fold-k` draws them)."""
    train = replace(cfg.train, folds=None, refit=False)
    return replace(cfg, train=train, project=str(run.path), run_name=run.fold(number).name, report=False)


def _train_folds(
    run: RunFolder, cfg: RunConfig, pooled: PreparedData, fold_of: dict[str, int], dist: Distributed, *, quiet: bool,
    log, overrides: dict,
) -> Path:  # fmt: skip
    """Every fold not finished yet, then cv.json, the summary, --refit and the report."""
    for number in range(1, cfg.train.folds + 1):
        fold = run.fold(number)
        state = dist.from_main(lambda fold=fold: _fold_state(fold))
        if state == "finished":
            log(f"\nfold {number}/{cfg.train.folds}: finished before, kept ({fold.path})")
            continue
        log(f"\nfold {number}/{cfg.train.folds}:")
        start = partial(fit, _fold_config(cfg, run, number), data=_fold_data(pooled, fold_of, number), quiet=quiet,
                        log=log, keep_group=True)  # fmt: skip
        try:
            _carry_on(fold, state, dist, quiet=quiet, log=log, overrides=overrides, start=start)
        except TrainingInterrupted as stopped:  # the whole run continues from here, not the fold alone
            raise TrainingInterrupted(stopped.signum, run.path, f"in fold {number}, {stopped.where}") from None
    if dist.is_main:
        summary = summarize(run)
        log("\n" + "\n".join(summary_lines(summary, refit=cfg.train.refit)))
    if cfg.train.refit:
        _refit(run, cfg, pooled, dist, quiet=quiet, log=log, overrides=overrides)
    dist.close()
    if dist.is_main and cfg.report and not cfg.train.refit:  # with --refit, the final model's run wrote the report
        from foldertune.reporting.html_report import write_report

        write_report(run.path, log=log)
    if not cfg.train.refit:  # the final model's run said it already
        log(f"run folder: {run.path}")
    return run.path


def _refit(run: RunFolder, cfg: RunConfig, pooled: PreparedData, dist: Distributed, *, quiet: bool, log,
           overrides: dict) -> None:  # fmt: skip
    """The final model: the same settings, all train and val images, in the run folder itself."""
    state = dist.from_main(lambda: _fold_state(run))
    if state == "finished":
        return
    log(f"\n--refit: the final model, trained on all {pooled.count('train')} train and val images:")
    start = partial(fit, cfg, data=pooled, quiet=quiet, log=log, into=run.path, keep_group=True)
    _carry_on(run, state, dist, quiet=quiet, log=log, overrides=overrides, start=start)
    if dist.is_main:  # the temperature fitted on the pooled out-of-fold logits calibrates the final model
        checkpoint = load_checkpoint(run.best)
        checkpoint["temperature"] = read_json(run.cv_file)["temperature"]
        save_checkpoint(run.best, checkpoint)
        log(f"--refit: calibration temperature {checkpoint['temperature']:.2f}, fitted on the pooled out-of-fold "
            "predictions")  # fmt: skip


def _carry_on(run: RunFolder, state: str, dist: Distributed, *, quiet: bool, log, overrides: dict, start) -> None:
    """Take `run` on from its `_fold_state`: evaluate a trained one, resume a started one, or `start()` a new one."""
    if state == "trained":
        if dist.is_main:
            finish(run.path, quiet=quiet, log=log)
    elif state == "started":
        resume(run.path, quiet=quiet, log=log, keep_group=True, **overrides)
    else:
        start()


def _fold_state(run: RunFolder) -> str:
    """finished (metrics.json), trained (every epoch, not evaluated), started (last.pt), or new; a fold folder
    that stopped before its first epoch ended is moved aside (kept) and starts again."""
    if run.metrics_file.is_file():
        return "finished"
    if run.last.is_file():
        try:
            checkpoint = load_checkpoint(run.last)
        except UserError:
            return "started"
        cfg = RunConfig.from_dict(run.config()["settings"])
        stale = checkpoint["training"]["progress"]["stale"]
        done = checkpoint["epoch"] >= cfg.train.epochs or (cfg.train.patience and stale >= cfg.train.patience)
        return "trained" if done and not checkpoint["training"].get("interrupted") else "started"
    if run.path.name.startswith("fold-") and run.path.exists():
        aside = next(run.path.with_name(f"{run.path.name}.unstarted-{n}") for n in itertools.count(1)
                     if not run.path.with_name(f"{run.path.name}.unstarted-{n}").exists())  # fmt: skip
        run.path.rename(aside)
    return "new"


def _finished(run: RunFolder, cfg: RunConfig) -> bool:
    return run.cv_file.is_file() and (not cfg.train.refit or run.metrics_file.is_file())


def summarize(run: RunFolder) -> dict:
    """cv.json, cv_predictions.csv and cv_logits.npy from the folds' evaluations; returns cv.json's content."""
    classes = run.classes()
    index = {name: i for i, name in enumerate(classes)}
    per_fold, paths, folds, targets, probabilities, logits = [], [], [], [], [], []
    number = 1
    while run.fold(number).metrics_file.is_file():
        fold = run.fold(number)
        per_fold.append({split: evaluation.metrics()["overall"] for split in ("val", "test")
                         if (evaluation := fold.evaluation(split)).exists()})  # fmt: skip
        val = fold.evaluation("val")
        readable = [row for row in read_table(val.predictions_file) if not row.get("error")]
        paths += [row["path"] for row in readable]
        folds += [number] * len(readable)
        targets += [index[row["true"]] for row in readable]
        probabilities.append(np.load(val.scores_file))
        # the fold's probabilities are softmax(logits / T) with its own temperature: log p * T is its logits, up to a
        # constant per image that softmax ignores
        temperature = per_fold[-1]["val"].get("temperature", 1.0)
        logits.append(np.log(np.clip(probabilities[-1].astype(np.float64), 1e-30, 1.0)) * temperature)
        number += 1
    pooled = OutOfFold(paths, np.array(folds), np.array(targets), np.concatenate(probabilities), classes)
    summary = {"folds": len(per_fold), "model": "best.pt (--refit)" if (run.config()["settings"]["train"]
               .get("refit")) else "none: each fold-k/best.pt is the model of its fold"}  # fmt: skip
    summary.update(cv_summary(per_fold, pooled))
    logits = np.concatenate(logits).astype(np.float32)
    summary["temperature"] = fit_temperature(logits, pooled.targets)  # for --refit's model, which has no val split
    write_json(run.cv_file, summary)
    _write_out_of_fold(run, pooled, logits)
    return summary


def _write_out_of_fold(run: RunFolder, pooled: OutOfFold, logits: np.ndarray) -> None:
    predicted = pooled.probabilities.argmax(axis=1)
    own = pooled.probabilities[np.arange(len(pooled.targets)), pooled.targets]
    rows = [
        {"path": path, "fold": int(fold), "true": pooled.classes[true], "predicted": pooled.classes[guess],
         "confidence": f"{pooled.probabilities[i].max():.6f}", "correct": int(guess == true),
         "loss": f"{-np.log(max(float(own[i]), 1e-12)):.6f}"}
        for i, (path, fold, true, guess) in enumerate(zip(pooled.paths, pooled.folds, pooled.targets, predicted,
                                                          strict=True))
    ]  # fmt: skip
    write_table(run.cv_predictions_file, ["path", "fold", "true", "predicted", "confidence", "correct", "loss"], rows)
    np.save(run.cv_logits_file, logits)


def summary_lines(summary: dict, *, refit: bool) -> list[str]:
    """The terminal's account of cv.json: each metric's mean +- std (min, max) over the folds, the pooled value."""
    pooled = summary["pooled"]["overall"]
    lines = [f"cross-validation, {summary['folds']} folds (mean +- std over the folds, min-max; pooled out-of-fold "
             f"over {pooled['images']} images):"]  # fmt: skip
    for split in ("val", "test"):
        if split not in summary:
            continue
        for name in ("accuracy", "balanced_accuracy", "macro_f1", "loss"):
            figures = summary[split][name]
            line = (f"  {split:<4} {name:<18} {figures['mean']:.4f} +- {figures['std']:.4f}  ({figures['min']:.4f}-"
                    f"{figures['max']:.4f})")  # fmt: skip
            if split == "val":
                line += f"  pooled {pooled[name]:.4f}"
            lines.append(line)
    if refit:
        lines.append("model: the run folder's best.pt, trained on every train and val image after the folds (--refit)")
    else:
        lines.append("model: none of its own; each fold-k/best.pt is its fold's model: predict and export take "
                     "RUN/fold-k, or train with --refit for one model on every image")  # fmt: skip
    return lines


def _silent(*_args, **_kwargs) -> None:
    """The log of processes other than rank 0."""
