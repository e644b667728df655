"""Write a file so that a crash, a full disk or a kill never leaves it half-written; never write into user data.

    with atomic_open(path, "w", newline="") as handle:
        handle.write(...)
    # the old file (if any) stays until the new one is complete, flushed and renamed over it
    write_json(path, {"鱼": 1})                # UTF-8 JSON through atomic_open; read_json(path) reads it back
    is_inside(out, data_folder)                # True: refuse to write there
    check_output(out, "--out", force=False)    # before the slow work: refuse a path that cannot be or is written

The temporary file sits beside the target (same file system, so the rename is atomic) and is removed on failure.
Text is UTF-8; names that are not valid Unicode are written with backslash escapes rather than crashing. A full
disk (or quota, or file-size limit) is a UserError naming the file, not a traceback: the old file is still there.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from foldertune.errors import UserError

FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # no space, over quota, over the file-size limit


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
        kwargs.setdefault("errors", "backslashreplace")
    try:
        with open(temporary, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in FULL:
            raise disk_full(path, error) from None
        raise


def disk_full(path: Path, error: OSError) -> UserError:
    """The one-sentence error for a write that ran out of space."""
    return UserError(
        f"cannot write '{path}': {error.strerror or 'no space left'}; the previous version of the file is unchanged. "
        "Free some space and run the command again (a training run continues with --resume)."
    )


def write_json(path: str | os.PathLike, data: Any) -> None:
    """UTF-8 JSON (Chinese stays readable), indented, written atomically."""
    with atomic_open(path) as handle:
        handle.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when path is folder or lies below it, links and '..' resolved (for refusing writes into user data)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def check_output(
    path: str | os.PathLike, option: str, *, force: bool = False, folder: bool = False, inputs: tuple = ()
) -> Path:
    """Refuse, in one sentence and before any slow work, an output that is one of the command's `inputs` (even with
    `force`), that exists (unless `force`; for a `folder`, one that is not empty) or that cannot be written: a file
    where a folder must be, no permission, a read-only or virtual file system. `option` names the flag that chose the
    path. Creates nothing: the test file it writes has no name and vanishes when closed."""
    path = Path(path).expanduser()
    for given in inputs:
        if path.exists() and Path(given).expanduser().exists() and os.path.samefile(path, os.path.expanduser(given)):
            raise UserError(f"{option} '{path}' is the input '{given}' itself; write to another file: foldertune "
                            "never replaces what it reads.")  # fmt: skip
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{option} '{path}' is a file, not a folder; pass another {option}.")
    if not folder and path.is_dir():
        raise UserError(f"{option} '{path}' is a folder; name a file.")
    if not force and (path.is_dir() and any(path.iterdir()) if folder else path.exists()):
        raise UserError(f"{option} '{path}' already exists; pass another {option}, or --force to replace it.")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} '{path}' cannot be created: '{existing}' is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise UserError(
            f"{option} '{path}' cannot be written ({reason} in '{existing}'); pass another {option}."
        ) from None
    return path


def describe_os_error(error: OSError) -> str:
    """One sentence for a file-system error about a user's path: which path, and what went wrong."""
    name = Path(os.fsdecode(error.filename))
    if name.name.startswith(".") and name.name.endswith(".tmp"):  # atomic_open's temporary file: name the target
        name = name.with_name(name.name[1:-4])
    reason = (error.strerror or str(error)).rstrip(".").lower()
    return f"cannot use '{name}': {reason}; check the path and its permissions."
