"""The dataset doctor: what a data folder holds, what training will leave out and why, and what may mislead it.

    scan = scan_folder("photos/", decode="draft")         # as training reads: "header" (--fast), "full" (--deep)
    report = check_data(scan.images, scan.info, scan.skipped, source=str(scan.root), decode="draft")
    print(report.summary())                                 # class counts, imbalance, findings grouped by kind
    write_table("check.csv", CHECK_COLUMNS, report.rows())  # one row per file, with every finding

Findings per file, by severity:
- error (training leaves the file out): unreadable, with the reason;
- warning (training uses it, but it may mislead): the same image in two splits (leak), in two classes (label
  conflict), tiny, elongated;
- note (handled automatically): exact duplicates in one class, grey, CMYK, 16-bit, alpha, EXIF-rotated, animated.
Exact duplicates are found by content: files of equal size are hashed (BLAKE2b), so a scan reads whole files only
where two sizes collide. Nothing here writes to the data folder.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from foldertune.data.images import GREY_MODES, ImageInfo
from foldertune.data.near_duplicates import NearPair, find_near_pairs
from foldertune.data.scan import SPLITS, ImageRecord, SkippedFile
from foldertune.data.scan_cache import ScanCache
from foldertune.data.split import format_counts, split_counts
from foldertune.errors import UserError
from foldertune.notebook import card, escape, html_table, tqdm
from foldertune.runs.cache import file_digest
from foldertune.runs.folder import RunFolder
from foldertune.runs.tables import read_table

TINY_SIDE = 32  # pixels on the shorter side below which a picture holds too little to learn from
MAX_ASPECT = 3.0  # longer / shorter side beyond which the centre crop sees less than a third of the picture
IMBALANCE = 3.0  # largest / smallest class above which the summary warns
FEW_IMAGES = 10  # a class with fewer images than this cannot be validated on reliably
MAX_LISTED = 5  # examples per kind in the terminal summary; the CSV has every file
MAX_ERRORS_LISTED = 20  # unreadable files named in the terminal summary

# kind -> (severity, what it means for training); the order is the order of the summary
KINDS = {
    "unreadable": ("error", "left out of training"),
    "leak": ("warning", "the same image is in two splits: validation or test scores are inflated"),
    "label conflict": ("warning", "the same image is filed under two classes: at least one label is wrong"),
    "label-issue": ("warning", "the model, trained without it, puts it in another class: check its label"),
    "outlier": ("warning", "unlike the images of every class: a stray file?"),
    "tiny": ("warning", "too small to learn much from: it is upscaled to the network's input size"),
    "elongated": ("warning", "the centre crop keeps only the middle of it"),
    "duplicate": ("note", "exact copies in one class and split: each copy counts again"),
    "near-duplicate": ("note", "near copies (resized, re-encoded, cropped, mirrored) in one class and split"),
    "exif-rotated": ("note", "turned upright by its EXIF orientation, as a photo viewer shows it"),
    "grey": ("note", "no colour: converted to RGB"),
    "cmyk": ("note", "CMYK: converted to RGB"),
    "16-bit": ("note", "more than 8 bits per channel: scaled to 8 bits"),
    "alpha": ("note", "transparent pixels are put on a white background"),
    "animated": ("note", "several frames: the first is used"),
}
SEVERITIES = ("error", "warning", "note")
CHECK_COLUMNS = [
    "path", "class", "split", "status", "findings", "detail",
    "format", "mode", "width", "height", "bytes", "mtime_ns", "duplicate_group",
    "suggested_class", "label_score", "outlier_score", "near_duplicate_of",
]  # fmt: skip
SCORE_COLUMNS = ("suggested_class", "label_score", "outlier_score")  # filled by the label check (--labels)


@dataclass(frozen=True)
class Finding:
    kind: str  # a key of KINDS
    detail: str  # for this file, e.g. "EXIF orientation 6" or "also in val: photos/val/cat/3.jpg"


@dataclass
class DataCheck:
    """The doctor's verdict on a list of images (and the files the scan left out)."""

    source: str
    decode: str  # header | draft | full: how far each image was read
    records: list[ImageRecord]  # the usable images
    info: dict[str, ImageInfo]
    skipped: list[SkippedFile]
    findings: dict[str, list[Finding]]  # path -> findings, usable images only
    duplicate_groups: list[list[ImageRecord]]  # identical contents, 2+ files each
    warnings: list[str] = field(default_factory=list)  # about classes as a whole: imbalance, too few images
    near_pairs: list[NearPair] = field(default_factory=list)  # one photo in two files that are not identical
    scores: dict[str, dict[str, object]] = field(default_factory=dict)  # path -> SCORE_COLUMNS (label check)
    about: list[str] = field(default_factory=list)  # how the label check was made, for the summary
    labels_checked: bool = False  # the label check ran: suspected label errors then count as failures too
    ranked: dict[str, list[str]] = field(default_factory=dict)  # kind -> paths, likeliest first (label check)
    neighbours: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # suspect -> {"given": [...],
    # "suggested": [...]}: its nearest images in the class it is filed under and in the suggested class
    _index: dict[str, ImageRecord] = field(default_factory=dict, repr=False)  # path -> record, for by_path

    def count(self, kind: str) -> int:
        if kind == "unreadable":
            return sum(s.problem == "unreadable" for s in self.skipped)
        return sum(any(f.kind == kind for f in found) for found in self.findings.values())

    def unreadable_files(self) -> list[SkippedFile]:
        return [s for s in self.skipped if s.problem == "unreadable"]

    @property
    def failed(self) -> bool:
        """Unreadable files, an image (or a near copy) in two splits, or suspected label errors: a non-zero exit
        status."""
        return self.count("unreadable") > 0 or self.count("leak") > 0 or self.count("label-issue") > 0

    def add_near_pairs(self, pairs: list[NearPair]) -> None:
        """Near-duplicates found later (by the backbone's features): their findings, each pair once."""
        by_path = {record.path: record for record in self.records}
        exact = {record.path: number for number, group in enumerate(self.duplicate_groups) for record in group}
        known = {frozenset((pair.first, pair.second)) for pair in self.near_pairs}
        for pair in pairs:
            if frozenset((pair.first, pair.second)) in known or pair.first not in by_path or pair.second not in by_path:
                continue
            if exact.get(pair.first, -1) == exact.get(pair.second, -2):
                continue
            first, second = by_path[pair.first], by_path[pair.second]
            self.add_findings(first.path, near_duplicate_findings(first, second, pair.how, self.source))
            self.add_findings(second.path, near_duplicate_findings(second, first, pair.how, self.source))
            self.near_pairs.append(pair)

    def by_path(self, path: str) -> ImageRecord:
        if path not in self._index:
            self._index = {record.path: record for record in self.records}
        return self._index[path]

    def shown(self, path: str) -> str:
        """A path as the summary shows it: relative to the data folder where below it."""
        return _relative(path, self.source)

    def add_findings(self, path: str, found: list[Finding]) -> None:
        self.findings[path] = _once_per_kind(self.findings.get(path, []) + found)

    def summary(self, *, max_listed: int = MAX_LISTED) -> str:
        how = {"header": "headers only", "draft": "every image decoded", "full": "every image fully decoded"}
        total = len(self.records) + self.count("unreadable")
        lines = [
            f"data: {self.source} ({total} image file(s), {how[self.decode]})",
            format_counts(split_counts(self.records)),
            *self.about,
        ]
        lines += [f"warning: {text}" for text in self.warnings]
        for severity in SEVERITIES:
            kinds = [kind for kind, (level, _) in KINDS.items() if level == severity and self.count(kind)]
            if not kinds:
                continue
            lines.append(
                {"error": "errors:", "warning": "warnings:", "note": "notes (handled automatically):"}[severity]
            )
            for kind in kinds:
                lines.append(f"  {kind}: {self.count(kind)} file(s), {KINDS[kind][1]}")
                listed = MAX_ERRORS_LISTED if severity == "error" else max_listed
                for path, detail in self._examples(kind)[:listed]:
                    lines.append(f"    {_relative(path, self.source)}: {detail}")
                if self.count(kind) > listed:
                    lines.append(f"    ... and {self.count(kind) - listed} more")
        lines += ignored_lines(self.skipped, self.source)
        if not any(self.count(kind) for kind in KINDS if KINDS[kind][0] != "note") and not self.warnings:
            lines.append("no errors or warnings.")
        if self.decode == "header":
            lines.append(
                "headers only (--fast): a file cut short or with corrupt pixels passes; without --fast every image is "
                "decoded as training reads it."
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The summary as a notebook cell shows it: images per class (and split), then the findings by severity."""
        counts = split_counts(self.records)
        columns = ["class"] + [split for split in SPLITS if any(row[split] for row in counts)] + ["total"]
        if columns == ["class", "train", "total"]:  # nothing split yet
            columns = ["class", "total"]
        parts = [html_table(columns, [[row[column] for column in columns] for row in counts])]
        parts += [f'<div style="color:#a60">warning: {escape(text)}</div>' for text in self.warnings]
        colour = {"error": "#b00", "warning": "#a60", "note": "#666"}
        for kind, (severity, meaning) in KINDS.items():
            if self.count(kind):
                examples = "".join(
                    f"<li>{escape(_relative(path, self.source))}: {escape(detail)}</li>"
                    for path, detail in self._examples(kind)[:MAX_ERRORS_LISTED]
                )
                parts.append(
                    f'<details><summary style="color:{colour[severity]}">{severity}: {escape(kind)}: '
                    f"{self.count(kind)} file(s), {escape(meaning)}</summary><ul>{examples}</ul></details>"
                )
        if not any(self.count(kind) for kind in KINDS if KINDS[kind][0] != "note") and not self.warnings:
            parts.append("<div>no errors or warnings.</div>")
        total = len(self.records) + self.count("unreadable")
        return card(f"Data check: {escape(self.source)} ({total} image file(s))", "".join(parts))

    def warning_lines(self) -> list[str]:
        """The warnings alone, one line per kind (for training's summary; unreadable files are listed there)."""
        lines = [f"warning: {text}" for text in self.warnings]
        for kind, (severity, meaning) in KINDS.items():
            if severity == "warning" and self.count(kind):
                path, detail = self._examples(kind)[0]
                lines.append(
                    f"warning: {kind}: {self.count(kind)} file(s), {meaning} (e.g. {_relative(path, self.source)}: "
                    f"{detail}; all in data_check.csv)"
                )
        return lines

    def rows(self) -> list[dict[str, object]]:
        """One row per file: every usable image with its findings, then every file or folder left out."""
        group_of = {record.path: number for number, group in enumerate(self.duplicate_groups, 1) for record in group}
        near_of: dict[str, str] = {}
        for pair in self.near_pairs:
            near_of.setdefault(pair.second, pair.first)
            near_of.setdefault(pair.first, pair.second)
        rows = []
        for record in self.records:
            found, info = self.findings.get(record.path), self.info.get(record.path)
            severities = {KINDS[f.kind][0] for f in found} if found else ()  # most files have no finding
            rows.append({
                "path": record.path, "class": record.label, "split": record.split or "",
                "status": next((s for s in SEVERITIES if s in severities), "ok") if found else "ok",
                "findings": ";".join(f.kind for f in found) if found else "",
                "detail": "; ".join(f.detail for f in found) if found else "",
                "format": info.format if info else "", "mode": info.mode if info else "",
                "width": info.width if info else "", "height": info.height if info else "",
                "bytes": info.file_bytes if info else "", "mtime_ns": info.mtime_ns if info else "",
                "duplicate_group": group_of.get(record.path, ""), "near_duplicate_of": near_of.get(record.path, ""),
                **self.scores.get(record.path, {}),
            })  # fmt: skip
        for s in self.skipped:
            status = "error" if s.problem == "unreadable" else "skipped"
            rows.append({"path": s.path, "class": s.label, "split": s.split or "", "status": status,
                         "findings": s.problem, "detail": s.reason})  # fmt: skip
        return rows

    def _examples(self, kind: str) -> list[tuple[str, str]]:
        if kind == "unreadable":
            return [(s.path, s.reason) for s in self.skipped if s.problem == "unreadable"]
        found = [(path, f.detail) for path, found in self.findings.items() for f in found if f.kind == kind]
        if kind in self.ranked:
            position = {path: rank for rank, path in enumerate(self.ranked[kind])}
            found.sort(key=lambda item: position.get(item[0], len(position)))
        return found


def check_data(
    records: list[ImageRecord],
    info: dict[str, ImageInfo],
    skipped: list[SkippedFile],
    *,
    source: str,
    decode: str,
    tiny_side: int = TINY_SIDE,
    max_aspect: float = MAX_ASPECT,
    workers: int | None = None,
    progress: bool = True,
    duplicate_groups: list[list[ImageRecord]] | None = None,
    near_pairs: list[NearPair] = (),
) -> DataCheck:
    """Findings for every usable image (as read by `verify_records`), exact duplicates, near-duplicates (from
    `find_near_pairs`), and class-level warnings.

    `duplicate_groups` (from `find_duplicates` on the same records) saves hashing the files again.
    """
    findings: dict[str, list[Finding]] = defaultdict(list)
    for record in records:
        if record.path not in info:
            continue
        found = file_findings(info[record.path], tiny_side=tiny_side, max_aspect=max_aspect)
        if found:  # most files have none: no empty list for each
            findings[record.path] += found
    groups = duplicate_groups
    if groups is None:
        groups = find_duplicates(records, info, workers=workers, progress=progress)
    for group in groups:
        for record in group:
            findings[record.path] += duplicate_findings(record, group, source)
    by_path = {record.path: record for record in records}
    exact = {record.path: number for number, group in enumerate(groups) for record in group}
    near_pairs = [pair for pair in near_pairs if pair.first in by_path and pair.second in by_path
                  and exact.get(pair.first, -1) != exact.get(pair.second, -2)]  # fmt: skip
    for pair in near_pairs:
        first, second = by_path[pair.first], by_path[pair.second]
        findings[first.path] += near_duplicate_findings(first, second, pair.how, source)
        findings[second.path] += near_duplicate_findings(second, first, pair.how, source)
    # in the records' order, then the copies' (what an example in the summary is: the first file of its kind)
    first = [path for path in by_path if path in findings and path in info]
    listed = set(first)
    in_order = first + [path for path in findings if path not in listed]
    findings = {path: _once_per_kind(findings[path]) for path in in_order if findings[path]}
    result = DataCheck(source, decode, records, info, skipped, findings, groups, near_pairs=list(near_pairs))
    result.warnings = class_warnings(records)
    return result


def file_findings(info: ImageInfo, *, tiny_side: int = TINY_SIDE, max_aspect: float = MAX_ASPECT) -> list[Finding]:
    """What is worth knowing about one image from its description alone."""
    found = []
    short, long = sorted((info.width, info.height))
    if short < tiny_side:
        found.append(Finding("tiny", f"{info.width}x{info.height} px, shorter side under {tiny_side}"))
    if long / short > max_aspect:
        found.append(Finding("elongated", f"{info.width}x{info.height} px, {long / short:.1f}:1"))
    if info.orientation != 1:
        found.append(Finding("exif-rotated", f"EXIF orientation {info.orientation}"))
    if info.grey:
        found.append(Finding("grey", f"mode {info.mode}" + ("" if info.mode in GREY_MODES else ", every pixel grey")))
    if info.mode == "CMYK":
        found.append(Finding("cmyk", "mode CMYK"))
    if info.bits > 8:
        found.append(Finding("16-bit", f"{info.bits} bits per channel (mode {info.mode})"))
    if info.alpha:
        found.append(Finding("alpha", f"mode {info.mode}" + (" with a transparent colour" if info.mode == "P" else "")))
    if info.animated:
        found.append(Finding("animated", f"animated {info.format}"))
    return found


def duplicate_findings(record: ImageRecord, group: list[ImageRecord], source: str) -> list[Finding]:
    """A leak when a copy is in another split, a label conflict when in another class, else a plain duplicate."""
    others = [other for other in group if other.path != record.path]
    found = []
    other_splits = [o for o in others if o.split != record.split and o.split and record.split]
    if other_splits:
        found.append(Finding("leak", f"also in {other_splits[0].split}: {_relative(other_splits[0].path, source)}"))
    other_labels = [o for o in others if o.label != record.label]
    if other_labels:
        found.append(
            Finding(
                "label conflict", f"also in class '{other_labels[0].label}': {_relative(other_labels[0].path, source)}"
            )
        )
    if not found:
        found.append(Finding("duplicate", f"same as {_relative(others[0].path, source)}"))
    return found


def near_duplicate_findings(record: ImageRecord, other: ImageRecord, how: str, source: str) -> list[Finding]:
    """A near copy in another split is a leak, in another class a label conflict, else a near-duplicate note."""
    shown = f"{_relative(other.path, source)} ({how})"
    found = []
    if other.split != record.split and other.split and record.split:
        found.append(Finding("leak", f"near copy in {other.split}: {shown}"))
    if other.label != record.label:
        found.append(Finding("label conflict", f"near copy in class '{other.label}': {shown}"))
    return found or [Finding("near-duplicate", f"near copy of {shown}")]


def _once_per_kind(found: list[Finding]) -> list[Finding]:
    """The first finding of each kind (an image with three near copies is one near-duplicate, the CSV names one)."""
    kinds: dict[str, Finding] = {}
    for finding in found:
        kinds.setdefault(finding.kind, finding)
    return list(kinds.values())


def find_duplicates(
    records: list[ImageRecord],
    info: dict[str, ImageInfo],
    *,
    workers: int | None = None,
    progress: bool = True,
    cache: ScanCache | None = None,
) -> list[list[ImageRecord]]:
    """Groups of files with identical bytes; only files whose size matches another's are read and hashed (unless
    the `cache` knows their digest, or the groups of this same list of files, all unchanged)."""
    by_size: dict[int, list[ImageRecord]] = defaultdict(list)
    for record in records:
        if record.path in info:
            by_size[info[record.path].file_bytes].append(record)
    candidates = [record for group in by_size.values() if len(group) > 1 for record in group]
    if not candidates:
        return []
    # a candidate list the cache saw before, every file unchanged: the same groups (as positions in the list)
    key = cache.fingerprint("copies", [record.path for record in candidates]) if cache is not None else None
    positions = cache.result(key) if cache is not None else None
    if positions is None:
        positions = _identical(candidates, info, workers=workers, progress=progress, cache=cache)
        if cache is not None:
            cache.store_result(key, "copies", positions)
    groups = [sorted((candidates[i] for i in group), key=lambda r: (SPLITS.index(r.split) if r.split else -1, r.path))
              for group in positions]  # fmt: skip
    return sorted(groups, key=lambda group: group[0].path)


def _identical(candidates: list[ImageRecord], info: dict[str, ImageInfo], *, workers: int | None, progress: bool,
               cache: ScanCache | None) -> list[list[int]]:  # fmt: skip
    """Positions in `candidates` of the files with identical bytes, 2+ per group, by digest."""
    known = cache.digests(record.path for record in candidates) if cache is not None else {}
    to_read = [path for path in dict.fromkeys(record.path for record in candidates) if path not in known]
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        bar = tqdm(pool.map(_digest_or_none, to_read), total=len(to_read), desc="comparing files of equal size",
                   unit="file", disable=None if progress else True, leave=False)  # fmt: skip
        found = dict(zip(to_read, bar, strict=True))
    if cache is not None:
        cache.note_read(found)
        cache.store_digests({path: digest for path, digest in found.items() if digest is not None})
    by_content: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, record in enumerate(candidates):
        digest = known.get(record.path) or found.get(record.path)
        if digest is not None:
            by_content[(info[record.path].file_bytes, digest)].append(i)
    return [group for group in by_content.values() if len(group) > 1]


def untrained_classes(records: list[ImageRecord]) -> list[str]:
    """For each class with validation or test images but no training image (in a split folder or manifest), the
    sentence that says so, without its full stop."""
    in_train = {record.label for record in records if record.split == "train"}
    return [
        f"class '{label}' has {split} images but no training images"
        for split in ("val", "test")
        for label in sorted({record.label for record in records if record.split == split} - in_train)
    ]


def class_warnings(records: list[ImageRecord]) -> list[str]:
    """Classes that cannot be learned (no training image), imbalance between classes and classes too small to
    validate on."""
    counts = Counter(record.label for record in records)
    if len(counts) < 2:
        return []
    warnings = untrained_classes(records)
    (largest, most), (smallest, fewest) = (
        max(counts.items(), key=lambda kv: kv[1]),
        min(counts.items(), key=lambda kv: kv[1]),
    )
    if most / fewest > IMBALANCE:
        warnings.append(
            f"classes are imbalanced: '{largest}' has {most} images, '{smallest}' only {fewest} "
            f"({most / fewest:.1f}x); accuracy will favour the large classes, so read the per-class recall and "
            "the macro F1 rather than accuracy"
        )
    small = sorted(label for label, n in counts.items() if n < FEW_IMAGES)
    if small:
        listed = ", ".join(f"'{label}' ({counts[label]})" for label in small[:MAX_LISTED])
        warnings.append(
            f"{len(small)} {'class has' if len(small) == 1 else 'classes have'} fewer than {FEW_IMAGES} images: "
            f"{listed}; their scores will be noisy"
        )
    return warnings


# What each kind of left-out item is called, one and many.
IGNORED_NOUNS = {
    "not an image": ("file that is not an image", "files that are not images"),
    "outside class folders": ("file outside the class folders", "files outside the class folders"),
    "ignored folder": ("ignored folder", "ignored folders"),
    "empty class": ("empty class folder", "empty class folders"),
    "unreadable folder": ("unreadable folder", "unreadable folders"),
    "unreadable name": ("file with an unreadable name", "files with unreadable names"),
    "link loop": ("link loop", "link loops"),
}


def ignored_lines(skipped: list[SkippedFile], source: str) -> list[str]:
    """One line per kind of item left out other than unreadable images (not an image, empty class, ...)."""
    others = [s for s in skipped if s.problem != "unreadable"]
    lines = []
    for problem in sorted({s.problem for s in others}):
        group = [s for s in others if s.problem == problem]
        example = f"{_relative(group[0].path, source)} ({group[0].reason})"
        one, many = IGNORED_NOUNS.get(problem, (f"{problem} item", f"{problem} items"))
        lines.append(f"ignored {len(group)} {one if len(group) == 1 else many}, e.g. {example}")
    return lines


def _digest_or_none(path: str) -> str | None:
    try:
        return file_digest(path)
    except OSError:  # vanished or unreadable since the scan: it is simply no one's duplicate
        return None


def _relative(path: str, source: str) -> str:
    """Paths below the data folder are shown relative to it."""
    try:
        return str(Path(path).relative_to(source))
    except ValueError:
        return path


def decode_level(*, fast: bool, deep: bool) -> str:
    """How far `check` reads each image: as training does (draft), headers only (--fast) or every pixel (--deep)."""
    if fast and deep:
        raise UserError("--fast and --deep exclude each other: --fast reads headers only, --deep every pixel.")
    return "header" if fast else "full" if deep else "draft"


def check_data_path(path: Path) -> None:
    """Refuse a DATA for check that does not exist or is a file other than a manifest, before any other check."""
    takes = "pass a data folder (one sub-folder per class), a split manifest (.csv) or a run folder"
    if not path.exists():
        raise UserError(f"DATA '{path}' does not exist; {takes}.")
    if path.is_file() and path.suffix.lower() != ".csv":
        raise UserError(f"DATA '{path}' is a file, not a folder; {takes}.")


def check_source(
    source: str | os.PathLike,
    *,
    decode: str,
    tiny_side: int = TINY_SIDE,
    max_aspect: float = MAX_ASPECT,
    workers: int | None = None,
    progress: bool = True,
) -> DataCheck:
    """Check a data folder, a split manifest (CSV), or a run folder (the split it trained on)."""
    if not tiny_side >= 1:  # `not >=`: NaN is refused too
        raise UserError(f"--min-side must be at least 1 pixel; got {tiny_side}.")
    if not max_aspect >= 1:
        raise UserError(f"--max-aspect must be at least 1; got {max_aspect}.")
    if workers is not None and not workers >= 1:
        raise UserError(f"--workers must be at least 1; got {workers}.")
    from foldertune.data import DEFAULT_MAX_PIXELS
    from foldertune.data.scan import check_layout, scan_folder, verify_records
    from foldertune.data.split import read_manifest

    path = Path(source).expanduser()
    check_data_path(path)
    run = RunFolder(path)
    manifest = run.split_file if run.is_run() else path if path.suffix.lower() == ".csv" else None
    if manifest is None:
        scan = scan_folder(path, decode=decode, workers=workers, progress=progress)
        check_layout(scan, min_classes=2)
        records, info, skipped, root = scan.images, scan.info, scan.skipped, str(scan.root)
    else:
        listed = read_manifest(manifest)
        records, skipped, info = verify_records(
            listed, decode=decode, max_pixels=DEFAULT_MAX_PIXELS, workers=workers, progress=progress
        )
        root = os.path.commonpath([record.path for record in listed]) if listed else str(path.parent)
    near = [] if decode == "header" else find_near_pairs([r.path for r in records], workers=workers, progress=progress)
    return check_data(
        records, info, skipped, source=root, decode=decode, tiny_side=tiny_side, max_aspect=max_aspect,
        workers=workers, progress=progress, near_pairs=near,
    )  # fmt: skip


def changed_since(check_csv: Path, info: dict[str, ImageInfo]) -> list[str]:
    """Files whose size or modification time differ from those recorded in a run's data_check.csv, described.

    Runs made before data_check.csv existed have nothing to compare: an empty list.
    """
    if not check_csv.is_file():
        return []
    changed = []
    for row in read_table(check_csv):
        now = info.get(row["path"])
        if now is None or not row["bytes"] or not row["mtime_ns"]:
            continue  # left out at the start, or not in this list
        if int(row["bytes"]) != now.file_bytes:
            changed.append(f"{row['path']}: {row['bytes']} bytes then, {now.file_bytes} now")
        elif int(row["mtime_ns"]) != now.mtime_ns:
            changed.append(f"{row['path']}: modified since")
    return changed
