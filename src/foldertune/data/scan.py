"""Walk an image folder: classes, image files, and every file that cannot be used, with the reason.

    result = scan_folder("photos/")
    result.classes          # ['cat', 'dog', '狗'] sorted, empty class folders left out
    result.images[0]        # ImageRecord(path='/abs/photos/cat/1.jpg', label='cat', split=None)
    result.skipped          # [SkippedFile(path=..., label='dog', problem='unreadable', reason='empty file (0 bytes)')]

Layouts: one sub-folder per class, or train/ and val/ (valid/, validation/) and optionally test/ sub-folders that
each hold one sub-folder per class. Files in nested folders belong to the class folder above them. Hidden files
and folders, __MACOSX, AppleDouble "._*" files, Thumbs.db and desktop.ini are clutter and ignored silently.
Symbolic links are followed, except a link to a folder that contains it (a loop, reported); a folder reached twice
is walked once. Nothing is ever written here.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from foldertune.data import DEFAULT_MAX_PIXELS
from foldertune.data.images import IMAGE_EXTENSIONS, ImageInfo, ImageReadError, inspect_image
from foldertune.data.scan_cache import ScanCache
from foldertune.errors import UserError
from foldertune.notebook import tqdm
from foldertune.runs.atomic import is_inside

CLUTTER_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini", "$recycle.bin", "system volume information"})
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageRecord:
    """One usable image."""

    path: str  # absolute, as found (links not resolved)
    label: str  # class name
    split: str | None  # train / val / test when the folder came split, else None


@dataclass(frozen=True)
class SkippedFile:
    """One file (or class folder) left out, and why."""

    path: str
    label: str
    problem: str  # unreadable | unreadable name | not an image | outside class folders | ignored folder | empty class
    # | unreadable folder | link loop
    reason: str
    split: str | None = None


@dataclass
class ScanResult:
    root: Path
    classes: list[str]
    images: list[ImageRecord]
    skipped: list[SkippedFile] = field(default_factory=list)
    presplit: bool = False
    info: dict[str, ImageInfo] = field(default_factory=dict)  # path -> what the file holds (when verified)

    @property
    def unreadable(self) -> list[SkippedFile]:
        return [s for s in self.skipped if s.problem == "unreadable"]

    def class_counts(self) -> Counter:
        return Counter(record.label for record in self.images)


def is_clutter(name: str) -> bool:
    """Hidden files and folders and the litter of macOS, Windows and archivers."""
    return name.startswith(".") or name.lower() in CLUTTER_NAMES


def scan_folder(
    root: str | os.PathLike,
    *,
    verify: bool = True,
    decode: str = "draft",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    progress: bool = True,
    cache: ScanCache | None = None,
) -> ScanResult:
    """Find classes and images under `root`; with `verify`, read every image once and set aside the bad ones.

    `decode` is how far each image is read when verifying (see `inspect_image`): "draft" is what training uses.
    With a `cache`, files unchanged since an earlier scan are not read again.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"data folder '{root}' does not exist; pass a folder with one sub-folder per class.")
    if not root.is_dir():
        raise UserError(f"'{root}' is a file, not a folder; pass a folder with one sub-folder per class.")
    root = root.absolute()
    tidy = Path(os.path.normpath(root))  # "runs/../photos" as "photos", where that is the same folder (symlinks)
    if tidy != root and tidy.is_dir() and os.path.samefile(tidy, root):
        root = tidy

    split_dirs = _split_folders(root)
    presplit = "train" in split_dirs and len(split_dirs) > 1
    tops = list(split_dirs.items()) if presplit else [(None, root)]

    candidates: list[ImageRecord] = []
    skipped: list[SkippedFile] = []
    folders_per_class: dict[str, list[Path]] = {}
    for split, top in tops:
        for entry in _sorted_entries(top, skipped):
            if is_clutter(entry.name):
                continue
            if _has_bad_name(entry, skipped, "", split):
                continue
            if _is_dir(entry):
                label = unicodedata.normalize("NFC", entry.name)  # macOS may store names decomposed (NFD)
                folders_per_class.setdefault(label, []).append(Path(entry.path))
                candidates.extend(
                    ImageRecord(path, label, split) for path in _walk_files(Path(entry.path), skipped, label, split)
                )
            elif _has_image_extension(entry.name):  # other loose files (README, CREDITS.md) are not data
                skipped.append(SkippedFile(entry.path, "", "outside class folders", "not inside a class folder", split))
    alike = _alike_names(folders_per_class)
    if alike:
        raise UserError(
            f"class folders {alike[0]!r} and {alike[1]!r} in '{root}' differ only in spaces at their "
            "ends, so every table and figure would show them alike; rename one, or merge them."
        )
    if presplit:
        for entry in _sorted_entries(root, skipped):
            if not is_clutter(entry.name) and entry.name.lower() not in SPLIT_FOLDERS and _is_dir(entry):
                skipped.append(SkippedFile(entry.path, "", "ignored folder", "not a train/val/test folder", None))

    info: dict[str, ImageInfo] = {}
    if verify:
        candidates, unreadable, info = verify_records(
            candidates, decode=decode, max_pixels=max_pixels, workers=workers, progress=progress, cache=cache
        )
        skipped.extend(unreadable)
    counts = Counter(record.label for record in candidates)
    for label, folders in sorted(folders_per_class.items()):
        if counts[label] == 0:
            for folder in folders:
                skipped.append(SkippedFile(str(folder), label, "empty class", "no usable image; class left out"))
    classes = sorted(counts)
    return ScanResult(root=root, classes=classes, images=candidates, skipped=skipped, presplit=presplit, info=info)


def check_layout(scan: ScanResult, *, min_classes: int) -> None:
    """Refuse a folder that holds no class sub-folders of images, in the one sentence every command uses.

    Images lying directly in the folder, no image at all, or fewer than `min_classes` classes (2 to train or
    check, 1 to evaluate). A folder whose only images are unreadable passes: the caller reports those files.
    """
    if len(scan.classes) >= min_classes or scan.unreadable:
        return
    loose = [s for s in scan.skipped if s.problem == "outside class folders"]
    if not scan.classes and loose:
        folder = Path(loose[0].path).parent
        many = len(loose) != 1
        raise UserError(
            f"{len(loose)} image{'s' if many else ''} lie{'' if many else 's'} directly in '{folder}', not in class "
            f"sub-folders: make one sub-folder per class (for example {folder / 'cat' / Path(loose[0].path).name})."
        )
    if not scan.classes:
        raise UserError(
            f"no images found in '{scan.root}': it needs one sub-folder per class with images in them "
            f"(for example {scan.root / 'cat' / '1.jpg'})."
        )
    raise UserError(
        f"only one class ('{scan.classes[0]}') found in '{scan.root}'; a classifier needs at least two class "
        "sub-folders."
    )


def _alike_names(names) -> tuple[str, str] | None:
    """Two class names that differ only in white space at their ends ('cat' and 'cat '), if any."""
    seen: dict[str, str] = {}
    for name in sorted(names):
        if name.strip() in seen:
            return seen[name.strip()], name
        seen[name.strip()] = name
    return None


def list_image_files(paths: list[str | os.PathLike]) -> tuple[list[Path], list[SkippedFile]]:
    """Expand files and folders (recursively, clutter skipped) into image paths, for prediction."""
    files: list[Path] = []
    skipped: list[SkippedFile] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            files.extend(map(Path, _walk_files(path, skipped, "", None)))
        elif path.exists() or path.is_symlink():
            files.append(path)
        else:
            raise UserError(f"'{raw}' does not exist; pass image files or folders of images.")
    if paths and not files:
        given = ", ".join(f"'{raw}'" for raw in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        names = ", ".join(Path(s.path).name for s in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        what = f" (skipped {len(skipped)} other file{'s' if len(skipped) > 1 else ''}: {names})" if skipped else ""
        raise UserError(f"no image file found in {given}{what}; pass image files or folders of images.")
    return files, skipped


def _split_folders(root: Path) -> dict[str, Path]:
    """train/val/test folders directly under root, by their canonical split name."""
    found: dict[str, Path] = {}
    for entry in _sorted_entries(root, []):
        split = SPLIT_FOLDERS.get(entry.name.lower())
        if split and _is_dir(entry):
            if split in found:
                raise UserError(
                    f"'{root}' has both '{found[split].name}' and '{entry.name}' folders; keep one of them for the "
                    f"{split} split."
                )
            found[split] = Path(entry.path)
    return found


def _walk_files(folder: Path, skipped: list[SkippedFile], label: str, split: str | None) -> list[str]:
    """Image files under `folder`, depth first in name order, following links but never a folder twice (paths as
    strings: a Path per file costs seconds in a folder of 100,000)."""
    files: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            stat = current.stat()
        except OSError:
            continue
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            continue  # a link back to a folder already walked: a loop or a duplicate
        seen.add(key)
        subfolders = []
        for entry in _sorted_entries(current, skipped, label, split):
            if is_clutter(entry.name) or _has_bad_name(entry, skipped, label, split):
                continue
            if _is_dir(entry):
                if entry.is_symlink() and is_inside(current, entry.path):
                    reason = "symbolic link to a folder that contains it (a loop); not followed"
                    skipped.append(SkippedFile(entry.path, label, "link loop", reason, split))
                    continue
                subfolders.append(Path(entry.path))
            elif _has_image_extension(entry.name):
                files.append(entry.path)  # includes broken links: reported when verified
            elif entry.is_file():
                reason = f"file type {Path(entry.name).suffix or '(none)'} is not a supported image type"
                skipped.append(SkippedFile(entry.path, label, "not an image", reason, split))
        stack.extend(reversed(subfolders))
    return files


def _sorted_entries(folder: Path, skipped: list[SkippedFile], label: str = "", split: str | None = None):
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        skipped.append(SkippedFile(str(folder), label, "unreadable folder", error.strerror or str(error), split))
        return []


def _has_bad_name(entry: os.DirEntry, skipped: list[SkippedFile], label: str, split: str | None) -> bool:
    """A name that is not valid UTF-8 (common in archives made on Windows) cannot go into UTF-8 logs: skip it."""
    try:
        entry.name.encode("utf-8")
        return False
    except UnicodeEncodeError:
        shown = os.fsencode(entry.path).decode("utf-8", "backslashreplace")  # caf\xe9, as bytes read
        skipped.append(SkippedFile(shown, label, "unreadable name", "name is not valid UTF-8; rename it", split))
        return True


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links; False for a broken one
    except OSError:
        return False


def _has_image_extension(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def verify_records(
    records: list[ImageRecord],
    *,
    decode: str = "draft",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None,
    progress: bool,
    cache: ScanCache | None = None,
) -> tuple[list[ImageRecord], list[SkippedFile], dict[str, ImageInfo]]:
    """Split records into usable images and unreadable files, reading each once in a thread pool (only those new or
    changed since an earlier scan, with a `cache`).

    Also returns what each usable file holds (size, mode, orientation, ...), by path.
    """
    workers = workers or min(16, 2 * (os.cpu_count() or 1))  # decoding releases the GIL; files may sit on slow disks
    read = f"{decode}:{max_pixels}"
    known = cache.infos([record.path for record in records], read) if cache is not None else {}
    to_read = [record for record in records if record.path not in known]

    def inspect(record: ImageRecord) -> ImageInfo | str:
        try:
            return inspect_image(record.path, decode=decode, max_pixels=max_pixels)
        except ImageReadError as error:
            return str(error)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # disable=None: a bar on a terminal, nothing in logs and pipes
        bar = tqdm(
            pool.map(inspect, to_read),
            total=len(to_read),
            desc="checking images" if decode != "header" else "reading headers",
            unit="img",
            disable=None if progress else True,
            leave=False,
        )
        found = dict(zip((record.path for record in to_read), bar, strict=True))
    if cache is not None:
        cache.note_read(found)
        cache.store_infos({path: result for path, result in found.items() if not isinstance(result, str)}, read)
    good, bad, info = [], [], {}
    for record in records:
        result = known[record.path] if record.path in known else found[record.path]
        if isinstance(result, str):
            bad.append(SkippedFile(record.path, record.label, "unreadable", result, record.split))
        else:
            good.append(record)
            info[record.path] = result
    return good, bad, info
