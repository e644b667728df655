"""Stratified, seeded train/val/test split into a manifest; optional train/ val/ test/ folders (copy or link).

    records, warnings = assign_splits(scan.images, val_fraction=0.2, test_fraction=0.1, seed=0)
    write_manifest("split.csv", records)          # path,class,split
    materialize(records, scan.root, "split_out/", how="link")

Each class is shuffled by a generator seeded from (seed, class name), so a class's split depends only on its own
files and the seed: adding a class or a file to another class does not reshuffle it. The originals are never
moved or changed.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import unicodedata
import zlib
from collections import defaultdict
from itertools import repeat
from operator import attrgetter
from pathlib import Path

import numpy as np

from foldertune.data.scan import SPLITS, ImageRecord
from foldertune.errors import UserError
from foldertune.runs.atomic import is_inside
from foldertune.runs.tables import write_rows

MANIFEST_COLUMNS = ("path", "class", "split")


def assign_splits(
    images: list[ImageRecord],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    together: list[list[ImageRecord]] = (),
) -> tuple[list[ImageRecord], list[str]]:
    """Records with `split` set, plus warnings for classes too small to split.

    Splits already given (a train/ val/ folder layout) are kept; when only train/ (and test/) were given,
    validation images are drawn from train/. Each group in `together` (copies of one image) ends up in a single
    split (the one its first file drew, or train where a class would otherwise lose its training images), so that no
    image is trained on and validated on at once; a class whose validation or test split this leaves short gets the
    missing images back from its training images (`_refill`).
    """
    check_seed(seed)
    given = {record.split for record in images}
    if "val" in given:
        return list(images), []
    to_split = [record for record in images if record.split in (None, "train")]
    kept = [record for record in images if record.split not in (None, "train")]
    if "test" in given:
        test_fraction = 0.0  # the folder has its own test split
    by_class: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in to_split:
        by_class[record.label].append(record)

    result: list[ImageRecord] = []
    warnings: list[str] = []
    drawn: dict[str, tuple[list[str], int, int]] = {}  # class -> its paths in drawing order, n_val, n_test
    for label in sorted(by_class):
        members = sorted(by_class[label], key=attrgetter("path"))
        counts = split_sizes(len(members), val_fraction, test_fraction)
        if counts is None:
            warnings.append(
                f"class '{label}' has only {len(members)} image(s), too few to split: all of them go to train."
            )
            result.extend(ImageRecord(record.path, record.label, "train") for record in members)
            continue
        n_val, n_test = counts
        rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])
        order = rng.permutation(len(members)).tolist()  # the first n_val drawn go to val, the next n_test to test
        splits = ["train"] * len(members)
        drawn[label] = ([members[index].path for index in order], n_val, n_test)
        for rank, index in enumerate(order[: n_val + n_test]):
            splits[index] = "val" if rank < n_val else "test"
        # not replace(): 100,000 of them; in class and path order, as the manifest lists them
        result.extend(map(ImageRecord, [record.path for record in members], repeat(label), splits))
    if together:
        result = _refill(_keep_together(result, together), together, drawn)
    return result + kept, warnings


def assign_folds(
    images: list[ImageRecord], *, folds: int, seed: int, together: list[list[ImageRecord]] = ()
) -> dict[str, int]:
    """{path: fold number, 1 to `folds`}: each class dealt evenly over the folds in a seeded order, and each group in
    `together` (copies of one image) in a single fold, so that no fold is validated on a copy of its training images.

    Groups are placed first, largest first, each into the fold that holds the fewest images of its class so far;
    then the single images, in the class's seeded order, likewise. A class of n >= `folds` images has n // folds or
    one more in every fold (groups permitting).
    """
    check_seed(seed)
    in_group = {record.path: number for number, group in enumerate(together) for record in group}
    units: dict[str, list[list[ImageRecord]]] = defaultdict(list)  # class -> groups, then single images
    for group in sorted(together, key=lambda group: (-len(group), min(record.path for record in group))):
        units[min(group, key=lambda record: record.path).label].append(list(group))
    by_class: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in images:
        if record.path not in in_group:
            by_class[record.label].append(record)
    for label, members in by_class.items():
        members.sort(key=lambda record: record.path)
        rng = np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])
        units[label] += [[members[index]] for index in rng.permutation(len(members))]
    fold_of: dict[str, int] = {}
    sizes = np.zeros(folds, dtype=int)
    for label in sorted(units):
        in_class = np.zeros(folds, dtype=int)
        for unit in units[label]:
            fold = int(np.lexsort((np.arange(folds), sizes, in_class))[0])  # fewest of the class, then overall
            for record in unit:
                fold_of[record.path] = fold + 1
            in_class[fold] += len(unit)
            sizes[fold] += len(unit)
    return fold_of


def check_seed(seed: int) -> None:
    """Refuse a seed the random generator cannot take, naming the flag."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"--seed must be a whole number of 0 or more; got {seed}.")


def _keep_together(records: list[ImageRecord], groups: list[list[ImageRecord]]) -> list[ImageRecord]:
    """Copies go to the split their first file drew; but a class that this leaves without training images takes
    back, into train, the groups of which a copy drew train."""
    if not groups:
        return records
    grouped = {record.path for group in groups for record in group}
    split_of, label_of = {}, {}
    for record in records:
        if record.path in grouped:
            split_of[record.path], label_of[record.path] = record.split, record.label
    members = [sorted(record.path for record in group if record.path in split_of) for group in groups]
    moved = {path: split_of[paths[0]] for paths in members for path in paths}
    trained = {record.label for record in records if record.split == "train" and record.path not in moved}
    trained.update(label_of[path] for path, split in moved.items() if split == "train")
    for paths in members:
        if any(split_of[path] == "train" for path in paths) and any(label_of[p] not in trained for p in paths):
            moved.update(dict.fromkeys(paths, "train"))
    return [record if moved.get(record.path, record.split) == record.split else
            ImageRecord(record.path, record.label, moved[record.path]) for record in records]  # fmt: skip


def _refill(
    records: list[ImageRecord], groups: list[list[ImageRecord]], drawn: dict[str, tuple[list[str], int, int]]
) -> list[ImageRecord]:
    """Bring each class's validation and test splits back to the sizes it drew, which `_keep_together` changed (a
    copy group follows the split of its first file: a draw by one of its other copies is lost, and a group counts all
    its copies). Units (single images, and groups wholly in the class) move between that split and train: the last
    drawn out of a split that is too big, the first drawn into one that is too small, while the class keeps a
    training image. A group may overshoot a split that holds nothing yet."""
    split_of = {record.path: record.split for record in records}
    group_of = {record.path: [member.path for member in group] for group in groups for record in group}

    def movable(unit: list[str], where: str, in_class: set[str]) -> bool:
        return all(split_of.get(member) == where and member in in_class for member in unit)

    for order, n_val, n_test in drawn.values():
        in_class = set(order)
        training = sum(split_of[path] == "train" for path in order)
        for split, wanted in (("val", n_val), ("test", n_test)):
            have = sum(split_of[path] == split for path in order)
            for path in reversed(order):  # a split that copies made too big gives its last draws back to train
                unit = group_of.get(path, [path])
                if have - len(unit) >= max(wanted, 1) and movable(unit, split, in_class):
                    split_of.update(dict.fromkeys(unit, "train"))
                    have, training = have - len(unit), training + len(unit)
            for path in order:  # and one that they made too small takes training images, in drawing order
                unit = group_of.get(path, [path])
                fits = have + len(unit) <= wanted or have == 0
                if have < wanted and fits and training - len(unit) >= 1 and movable(unit, "train", in_class):
                    split_of.update(dict.fromkeys(unit, split))
                    have, training = have + len(unit), training - len(unit)
    return [record if split_of[record.path] == record.split else
            ImageRecord(record.path, record.label, split_of[record.path]) for record in records]  # fmt: skip


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int] | None:
    """(n_val, n_test) for a class of n images: at least one in each requested split and one left for training."""
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n < needed:
        return None
    n_val = max(1, _round_half_up(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, _round_half_up(n * test_fraction)) if test_fraction > 0 else 0
    while n - n_val - n_test < 1:
        if n_val >= n_test and n_val > 1:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def split_counts(records: list[ImageRecord]) -> list[dict[str, object]]:
    """One row per class: class, train, val, test, total; then a row for all classes."""
    table: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SPLITS, 0))
    for record in records:
        table[record.label][record.split or "train"] += 1
    rows = [{"class": label, **table[label], "total": sum(table[label].values())} for label in sorted(table)]
    totals = {split: sum(row[split] for row in rows) for split in SPLITS}
    rows.append({"class": "(all)", **totals, "total": sum(totals.values())})
    return rows


def format_counts(rows: list[dict[str, object]]) -> str:
    """The split_counts table as aligned text for the terminal (the test column only when used; one count column
    when nothing is split yet)."""
    columns = ["class", "train", "val", "test", "total"]
    if not any(row["test"] for row in rows):
        columns.remove("test")
    if not any(row["val"] or row["test"] for row in rows):
        columns = ["class", "total"]
    table = [[name if name != "total" or len(columns) > 2 else "images" for name in columns]]
    table += [[str(row[column]) for column in columns] for row in rows]
    widths = [max(_display_width(line[i]) for line in table) for i in range(len(columns))]
    lines = []
    for line in table:
        name = line[0] + " " * (widths[0] - _display_width(line[0]))
        lines.append("  ".join([name] + [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]))
    return "\n".join(lines)


def _display_width(text: str) -> int:
    """Columns a terminal uses for text: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def write_manifest(path: str | os.PathLike, records: list[ImageRecord]) -> None:
    """path,class,split as UTF-8 CSV, written to a temporary file and renamed into place."""
    write_rows(path, MANIFEST_COLUMNS, [(record.path, record.label, record.split or "train") for record in records])


def read_manifest(path: str | os.PathLike) -> list[ImageRecord]:
    """Records from a manifest CSV; relative paths are taken relative to the manifest's folder."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"manifest '{path}' does not exist; pass a CSV with columns path,class,split.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError:
        raise UserError(f"manifest '{path}' is not UTF-8 text; save it as UTF-8 CSV (Excel: 'CSV UTF-8').") from None
    missing = [column for column in MANIFEST_COLUMNS if column not in columns]
    if missing:
        raise UserError(f"manifest '{path}' lacks the column(s) {', '.join(missing)}; it needs path,class,split.")
    records, line_of = [], {}
    for line, row in enumerate(rows, start=2):
        if any(not (row.get(column) or "").strip() for column in MANIFEST_COLUMNS):
            raise UserError(f"manifest '{path}' line {line}: path, class and split must all be filled in.")
        split = row["split"].strip().lower()
        if split not in SPLITS:
            raise UserError(f"manifest '{path}' line {line}: split must be train, val or test; got {row['split']!r}.")
        file = Path(row["path"].strip())
        absolute = file if file.is_absolute() else path.parent.absolute() / file  # split.csv must not depend on cwd
        key = os.path.normpath(absolute)
        if key in line_of:
            raise UserError(f"manifest '{path}' lists {row['path'].strip()!r} twice (lines {line_of[key]} and {line}); "
                            "keep one row per file, with the class and split it should have.")  # fmt: skip
        line_of[key] = line
        records.append(ImageRecord(str(absolute), row["class"], split))
    if not records:
        raise UserError(f"manifest '{path}' lists no images.")
    return records


def materialize(records: list[ImageRecord], root: Path, out: str | os.PathLike, *, how: str) -> Path:
    """Copy or link every image into out/<split>/<class>/<path inside the class folder>; originals untouched."""
    out = Path(out).expanduser().absolute()
    root = Path(root).absolute()
    if is_inside(out, root):
        raise UserError(f"--out '{out}' is inside the data folder; choose a folder outside '{root}'.")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file; choose a new folder.")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out '{out}' already exists and is not empty; choose a new folder.")
    for record in records:
        inside_class = Path(record.path).relative_to(root).parts[1:]
        target = out / (record.split or "train") / record.label / Path(*inside_class)
        target.parent.mkdir(parents=True, exist_ok=True)
        if how == "link":
            try:
                os.symlink(os.path.abspath(record.path), target)
            except OSError as error:
                raise UserError(f"cannot create a link at '{target}' ({error.strerror}); use --copy instead.") from None
        else:
            shutil.copy2(record.path, target)
    return out
