"""Write a file so that a crash, a full disk or a kill never leaves it half-written; never write into user data.

    with atomic_open(path, "w", newline="") as handle:
        handle.write(...)
    # the old file (if any) stays until the new one is complete, flushed and renamed over it
    write_json(path, {"鱼": 1})                # UTF-8 JSON through atomic_open; read_json(path) reads it back
    is_inside(out, data_folder)                # True: refuse to write there

The temporary file sits beside the target (same file system, so the rename is atomic) and is removed on failure.
Text is UTF-8; names that are not valid Unicode are written with backslash escapes rather than crashing. A full
disk (or quota, or file-size limit) is a UserError naming the file, not a traceback: the old file is still there.
"""

from __future__ import annotations

import errno
import json
import os
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
