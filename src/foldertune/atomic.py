"""Write a file so that a crash, a full disk or a kill never leaves it half-written.

    with atomic_open(run / "epochs.csv", "w", newline="") as handle:
        handle.write(...)
    # the old file (if any) stays until the new one is complete, flushed and renamed over it

The temporary file sits beside the target (same file system, so the rename is atomic) and is removed on failure.
Text is UTF-8; names that are not valid Unicode are written with backslash escapes rather than crashing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


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
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
