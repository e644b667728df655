"""`--cache ram|disk`: decode every image once, downsized, and read later epochs from that copy.

    cache = ImageCache("ram", side=448)            # or ImageCache("disk", side=448, root=cache_root(None))
    cache.fill(paths, progress=True)               # decodes each file once (in threads), before the loaders start
    read = TrainReader(pre, opener=cache.open)      # the readers take their pictures from the cache

What is kept: the upright RGB picture with its shorter side at `side` (never enlarged). Training keeps 2x the crop
size (448 px for 224): random crops down to a quarter of the picture's side still get full detail, smaller ones
are enlarged from the copy (the smallest, 8% of the area, by up to 2x) where reading the file would have decoded
more pixels. Evaluation keeps resize_size (256 px for 224), exactly what its transform starts from, so its inputs
are the same as without the cache up to the JPEG decoder's scaling.

ram: a dict in this process, filled before the loader workers start, which share it (copy-on-write on Linux).
About 0.6 MB per training image at 224 px. disk: .npy files in `<cache folder>/images/<side>/`, named by the
digest of the file's bytes (an edited photo is decoded again); loading one takes about a millisecond.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from foldertune.data import DEFAULT_MAX_PIXELS
from foldertune.data.images import ImageReadError, open_image
from foldertune.errors import UserError
from foldertune.notebook import tqdm
from foldertune.runs.cache import ArrayStore, file_digest

MEMORY_SHARE = 0.8  # --cache ram may use at most this share of the memory available when it starts


class ImageCache:
    """Downsized decoded pictures, in memory or on disk, handed out as PIL images by `open`."""

    def __init__(self, kind: str, *, side: int, root: Path | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.kind = kind
        self.side = side
        self.max_pixels = max_pixels
        self.memory: dict[str, np.ndarray] = {}  # ram: path -> (H, W, 3) uint8
        self.digests: dict[str, str] = {}  # disk: path -> digest of the file's bytes
        self.store = ArrayStore(root / "images" / str(side)) if kind == "disk" and root else None

    def fill(self, paths: Sequence[str], *, progress: bool = True, desc: str = "caching images") -> int:
        """Decode and keep every readable file not kept yet; returns how many were decoded."""
        if self.kind == "ram":
            self._check_memory(len(paths))
        todo = [path for path in paths if path not in self.memory]
        bar = tqdm(total=len(todo), desc=desc, unit="img", leave=False, disable=None if progress else True)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
            decoded = sum(pool.map(lambda path: self._keep(path, bar), todo))
        bar.close()
        return decoded

    def open(self, path: str, *, min_side: int | Callable[[int, int], int] | None = None, max_pixels=None):
        """The kept picture as a PIL image (a `min_side` function is called on its size); the file if not kept."""
        pixels = self._load(path)
        if pixels is None:  # unreadable during `fill`: read it now, to report it as the loader reports it
            return open_image(path, min_side=min_side, max_pixels=max_pixels or self.max_pixels)
        if callable(min_side):
            min_side(pixels.shape[1], pixels.shape[0])
        return Image.fromarray(pixels)

    def _keep(self, path: str, bar) -> bool:
        try:
            if self.kind == "disk":
                digest = self.digests[path] = file_digest(path)
                if self.store.load(digest) is not None:
                    return False
            image = open_image(path, min_side=self.side, max_pixels=self.max_pixels)
        except (ImageReadError, OSError):
            return False  # the loader will meet it again and report it
        finally:
            bar.update(1)
        scale = self.side / min(image.size)
        if scale < 1:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
        if self.kind == "ram":
            self.memory[path] = pixels
        else:
            self.store.save(self.digests[path], pixels)
        return True

    def _load(self, path: str) -> np.ndarray | None:
        if self.kind == "ram":
            return self.memory.get(path)
        digest = self.digests.get(path)
        pixels = self.store.load(digest) if digest else None
        return pixels if pixels is not None and pixels.ndim == 3 and pixels.shape[2] == 3 else None

    def _check_memory(self, count: int) -> None:
        needed = count * self.side * self.side * 4 // 3 * 3  # a 4:3 picture with its shorter side at `side`
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # not on this platform: trust the user
            return
        if needed > MEMORY_SHARE * available:
            raise UserError(
                f"--cache ram needs about {needed / 2**30:.1f} GiB for {count} images but {available / 2**30:.1f} GiB "
                "of memory is free; use --cache disk or no --cache."
            )
