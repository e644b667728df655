"""From a data folder (or manifest) to the classes and the train / val / test lists a run uses.

data = prepare_data(DataConfig(root="photos/"), seed=0, progress=True)
data.classes                 # ['cat', 'dog']
data.samples("train")        # [('/abs/photos/cat/1.jpg', 0), ...]
print(data.summary())        # counts per class and split, skipped files with reasons, warnings
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from foldertune.config import DataConfig
from foldertune.data.check import DataCheck, check_data, find_duplicates, ignored_lines, untrained_classes
from foldertune.data.images import ImageInfo
from foldertune.data.near_duplicates import copy_groups, find_near_pairs
from foldertune.data.scan import ImageRecord, SkippedFile, check_layout, scan_folder, verify_records
from foldertune.data.scan_cache import ScanCache
from foldertune.data.split import assign_splits, format_counts, read_manifest, split_counts
from foldertune.errors import UserError
from foldertune.runs.cache import cache_root

MAX_LISTED = 10  # skipped files named in the terminal summary; data_report.csv has them all


@dataclass
class PreparedData:
    source: str  # the data folder or manifest
    classes: list[str]
    records: list[ImageRecord]  # usable images, split assigned
    skipped: list[SkippedFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: dict[str, ImageInfo] = field(default_factory=dict)  # path -> what the file holds
    check: DataCheck | None = None  # the data doctor's findings (None on resume, which reuses the run's split)
    files_read: str = ""  # how many files the scan read afresh, and how many the scan cache knew

    def samples(self, split: str) -> list[tuple[str, int]]:
        index = {name: i for i, name in enumerate(self.classes)}
        return [(record.path, index[record.label]) for record in self.records if record.split == split]

    def count(self, split: str) -> int:
        return sum(record.split == split for record in self.records)

    def summary(self) -> str:
        """Counts per class and split, then what was left out and why."""
        lines = [f"data: {self.source}", format_counts(split_counts(self.records))]
        if self.files_read:
            lines.append(self.files_read)
        unreadable = [s for s in self.skipped if s.problem == "unreadable"]
        if unreadable:
            lines.append(f"skipped {len(unreadable)} unreadable image file(s) (all listed in data_report.csv):")
            lines += [f"  {s.path}: {s.reason}" for s in unreadable[:MAX_LISTED]]
            if len(unreadable) > MAX_LISTED:
                lines.append(f"  ... and {len(unreadable) - MAX_LISTED} more")
        lines += ignored_lines(self.skipped, self.source)
        lines += [f"warning: {text}" for text in self.warnings]
        if self.check is not None:
            lines += self.check.warning_lines()
        return "\n".join(lines)

    def report_rows(self) -> list[dict[str, str]]:
        """Rows of data_report.csv: every file or class folder left out, and why."""
        return [
            {"path": s.path, "class": s.label, "split": s.split or "", "problem": s.problem, "reason": s.reason}
            for s in self.skipped
        ]


def prepare_data(cfg: DataConfig, *, seed: int, progress: bool) -> PreparedData:
    """Scan (or read the manifest), set aside unreadable files, split, check, and make sure training is possible.

    Copies of one image (identical bytes, or near copies by perceptual hash) are kept in one split; where the split
    was given (folders, manifest), copies across splits are reported as leaks by the data check. What each file
    held is kept in the scan cache (data/scan_cache.py), so a second run reads only new or changed files.
    """
    cache = ScanCache.at(cache_root(cfg.cache_dir))
    if cfg.manifest:
        listed = read_manifest(cfg.manifest)
        records, skipped, info = verify_records(listed, max_pixels=cfg.max_pixels, workers=None, progress=progress,
                                                cache=cache)  # fmt: skip
        source, split_warnings = str(Path(cfg.manifest).absolute()), []
        groups = find_duplicates(records, info, progress=progress, cache=cache)
    else:
        scan = scan_folder(cfg.root, max_pixels=cfg.max_pixels, progress=progress, cache=cache)
        check_layout(scan, min_classes=2)
        _check_fractions(cfg, presplit=scan.presplit, root=scan.root)
        groups = find_duplicates(scan.images, scan.info, progress=progress, cache=cache)
        near = find_near_pairs([record.path for record in scan.images], progress=progress, cache=cache)
        together = copy_groups(scan.images, groups, near)  # copies, exact or near, share a split
        records, split_warnings = assign_splits(
            scan.images, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=seed, together=together
        )
        if scan.presplit and (cfg.val_fraction, cfg.test_fraction) != (DataConfig.val_fraction, 0.0):
            split_warnings.append(
                f"'{scan.root}' is already split into train/val folders, so --val and --test are not used; its "
                "folders decide the split."
            )
        source, skipped, info = str(scan.root), scan.skipped, scan.info
        by_path = {record.path: record for record in records}
        groups = [[by_path[record.path] for record in group] for group in groups]  # with their splits now
    if cfg.manifest:
        near = find_near_pairs([record.path for record in records], progress=progress, cache=cache)
    classes = sorted({record.label for record in records})
    check = check_data(records, info, skipped, source=source, decode="draft", duplicate_groups=groups, near_pairs=near)
    data = PreparedData(source, classes, records, skipped, split_warnings, info, check, cache.summary())
    _check_trainable(data)
    return data


def _check_fractions(cfg: DataConfig, *, presplit: bool, root: Path) -> None:
    if not presplit and cfg.val_fraction == 0:
        raise UserError(
            f"--val 0 leaves no validation images in '{root}', and training needs some to pick the best epoch; use "
            "--val 0.2 (the default), or split the folder into train/ and val/ sub-folders."
        )


def _check_trainable(data: PreparedData) -> None:
    if not data.classes:
        raise UserError(
            f"no usable images found in '{data.source}'; it needs one sub-folder per class with images in them "
            "(for example photos/cat/1.jpg, photos/dog/2.jpg)."
        )
    if len(data.classes) == 1:
        raise UserError(
            f"only one class ('{data.classes[0]}') found in '{data.source}'; a classifier needs at least two class "
            "sub-folders."
        )
    if data.count("train") == 0:
        raise UserError(f"no training images in '{data.source}'; add images to the train split.")
    if data.count("val") == 0:
        raise UserError(
            f"no validation images in '{data.source}': the classes are too small to hold any out; add images, "
            "raise --val, or provide a val/ folder."
        )
    data.warnings += [f"{sentence}." for sentence in untrained_classes(data.records)]
