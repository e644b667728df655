"""Move unreadable files out of a data folder, only when asked, and put them back on request.

    moved = quarantine(unreadable, root="photos/", folder="quarantine/")   # photos/cat/x.jpg -> quarantine/cat/x.jpg
    restored = restore("quarantine/")                                      # and back again

Relative paths are kept. `folder/quarantine.csv` lists every move (original, moved_to, reason, bytes, time); it is
written before any file moves, so an interrupted quarantine can still be undone. Nothing is ever overwritten or
deleted: a file whose destination exists already stays where it is.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from foldertune.data.scan import SkippedFile
from foldertune.errors import UserError
from foldertune.runs.atomic import is_inside
from foldertune.runs.tables import read_table, write_table

MANIFEST = "quarantine.csv"
COLUMNS = ["original", "moved_to", "reason", "bytes", "time"]


@dataclass(frozen=True)
class Move:
    source: Path
    target: Path
    done: bool
    note: str = ""  # why it did not move


def quarantine(files: list[SkippedFile], *, root: str | os.PathLike, folder: str | os.PathLike) -> list[Move]:
    """Move `files` (below `root`) to the same relative paths below `folder`, recording each in its manifest."""
    root, folder = Path(root).absolute(), Path(folder).expanduser().absolute()
    if is_inside(folder, root):
        raise UserError(
            f"--quarantine '{folder}' is inside the data folder '{root}', where it would be scanned as a class; "
            "pick a folder outside it."
        )
    if is_inside(root, folder):
        raise UserError(f"--quarantine '{folder}' contains the data folder '{root}'; pick a folder beside it.")
    manifest = folder / MANIFEST
    earlier = read_table(manifest) if manifest.exists() else []
    planned = []
    for skipped in files:
        source = Path(skipped.path)
        relative = source.relative_to(root)  # records hold absolute paths below root, links unresolved
        bytes_ = source.lstat().st_size if os.path.lexists(source) else ""
        planned.append({"original": str(source), "moved_to": str(folder / relative), "reason": skipped.reason,
                        "bytes": bytes_, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    write_table(manifest, COLUMNS, earlier + planned)  # first: an interrupted run can be undone from it
    moves = []
    for row in planned:
        source, target = Path(row["original"]), Path(row["moved_to"])
        if os.path.lexists(target):
            moves.append(Move(source, target, False, "a file of that name is already in the quarantine folder"))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)  # a rename on one file system; a link moves as a link
        moves.append(Move(source, target, True))
    not_moved = {str(move.source) for move in moves if not move.done}
    if not_moved:  # the manifest lists only what was moved, so restoring never touches the others
        write_table(manifest, COLUMNS, earlier + [row for row in planned if row["original"] not in not_moved])
    return moves


def restore(folder: str | os.PathLike) -> list[Move]:
    """Move every file listed in `folder`'s manifest back to where it was; the manifest keeps what could not go."""
    folder = Path(folder).expanduser().absolute()
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise UserError(f"'{folder}' has no {MANIFEST}: it is not a folder that --quarantine filled.")
    rows = read_table(manifest)
    moves, kept = [], []
    for row in rows:
        source, target = Path(row["moved_to"]), Path(row["original"])
        if not os.path.lexists(source):
            if os.path.lexists(target):
                continue  # never moved (an interrupted quarantine), or restored already
            moves.append(Move(source, target, False, "missing from the quarantine folder"))
            kept.append(row)
        elif os.path.lexists(target):
            moves.append(Move(source, target, False, "a file of that name is back in the data folder"))
            kept.append(row)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, target)
            moves.append(Move(source, target, True))
    if kept:
        write_table(manifest, COLUMNS, kept)
    else:
        manifest.unlink()
        _remove_empty_folders(folder)
    return moves


def _remove_empty_folders(folder: Path) -> None:
    """The folders quarantine made, now empty; anything else the user put there stays."""
    for path in sorted((p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()
