"""The cache folder: arrays computed from image files (backbone features, decoded images), named by content.

    root = cache_root(None)                    # $FOLDERTUNE_CACHE_DIR, else $XDG_CACHE_HOME/foldertune, ~/.cache/...
    digest = file_digest("photos/cat/1.jpg")   # 32 hex digits of BLAKE2b over the file's bytes
    store = ArrayStore(root / "features" / key)
    store.save(digest, array); store.load(digest)   # -> the array, or None (never stored, or damaged)

Entries are named by what the file contains, not where it is: an edited file is a miss, a moved one a hit. Nothing
in the cache is precious: an entry that cannot be read is a miss, and deleting the folder at any time is safe.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np

CHUNK = 1 << 20  # bytes read at a time while hashing


def cache_root(configured: str | os.PathLike | None = None) -> Path:
    """The cache folder: the one configured, else $FOLDERTUNE_CACHE_DIR, else the platform's user cache."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("FOLDERTUNE_CACHE_DIR"):
        return Path(os.environ["FOLDERTUNE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "foldertune"


def file_digest(path: str | os.PathLike) -> str:
    """BLAKE2b-128 of the file's bytes, as hex (a fraction of the time a decode takes)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class ArrayStore:
    """A folder of .npy files, one per name; written atomically, read back as None when missing or damaged."""

    def __init__(self, folder: str | os.PathLike, *, writable: bool = True) -> None:
        self.folder = Path(folder)
        self.writable = writable

    def path(self, name: str) -> Path:
        return self.folder / name[:2] / f"{name}.npy"  # 256 sub-folders: no directory holds 100,000 files

    def load(self, name: str, *, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        try:
            array = np.load(self.path(name), allow_pickle=False)
        except (OSError, ValueError, EOFError):  # absent, or cut short by a crash: compute it again
            return None
        return array if shape is None or array.shape == shape else None

    def save(self, name: str, array: np.ndarray) -> None:
        """Store `array` under `name` (temporary file + rename: readers never see half of it). No-op if read-only."""
        if not self.writable:
            return
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp")  # unique: several processes
        try:
            with open(temporary, "wb") as handle:
                np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
