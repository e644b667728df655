"""Builders shared by the tests: real-photo subsets, odd and broken image files, a CLI runner."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from foldertune.data import sample_data_path

SAMPLE = sample_data_path()


def copy_subset(destination: Path, per_class: int, classes: dict[str, str] | None = None) -> Path:
    """`per_class` sample photos of each class (or of `classes`: sample name -> new folder name)."""
    classes = classes or {d.name: d.name for d in sorted(SAMPLE.iterdir()) if d.is_dir()}
    for source_name, target_name in classes.items():
        target = destination / target_name
        target.mkdir(parents=True, exist_ok=True)
        for photo in sorted((SAMPLE / source_name).iterdir())[:per_class]:
            shutil.copy(photo, target / photo.name)
    return destination


def tree_fingerprint(root: Path) -> dict[str, tuple]:
    """Every path under root with its kind, size, mtime and content hash: to prove nothing was changed."""
    result = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            result[rel] = ("link", os.readlink(path))
        elif path.is_file():
            stat = path.stat()
            result[rel] = ("file", stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            result[rel] = ("dir",)
    return result


def quadrants(width: int = 40, height: int = 20) -> Image.Image:
    """An asymmetric test picture: red, green / blue, white quadrants."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    for box, color in (
        ((0, 0, half_w, half_h), (255, 0, 0)),
        ((half_w, 0, width, half_h), (0, 255, 0)),
        ((0, half_h, half_w, height), (0, 0, 255)),
        ((half_w, half_h, width, height), (255, 255, 255)),
    ):
        image.paste(color, box)
    return image


def save_with_orientation(image: Image.Image, path: Path, orientation: int) -> None:
    """Store `image` the way a camera would for EXIF `orientation`, so that a viewer shows `image` upright."""
    inverse = {
        1: None,
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }[orientation]
    stored = image if inverse is None else image.transpose(inverse)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, quality=95, exif=exif)


def write_good_images(folder: Path) -> dict[str, Path]:
    """One file per readable oddity, each named after what it tests."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}

    def keep(name: str, image: Image.Image, **options) -> None:
        files[name] = folder / name
        image.save(files[name], **options)

    keep("rgb.jpg", Image.new("RGB", (32, 24), (200, 30, 30)))
    keep("UPPER.JPG", Image.new("RGB", (32, 24), (30, 200, 30)))
    keep("Mixed.Png", Image.new("RGB", (32, 24), (30, 30, 200)))
    keep("gray.png", Image.new("L", (32, 24), 77))
    keep("bilevel.png", Image.new("1", (32, 24), 1))
    la = Image.new("LA", (32, 24), (0, 255))
    la.paste((0, 0), (0, 0, 16, 24))  # left half fully transparent
    keep("la.png", la)
    rgba = Image.new("RGBA", (32, 24), (255, 0, 0, 128))  # half-transparent red over white: pink
    keep("rgba.png", rgba)
    palette = Image.new("P", (32, 24), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(0, (0, 0, 16, 24))
    keep("palette_transparent.png", palette, transparency=0)  # left half: transparent index 0
    keep("palette.gif", Image.new("P", (32, 24), 0))
    keep("cmyk.jpg", Image.new("CMYK", (32, 24), (255, 0, 0, 0)))  # pure cyan
    sixteen = np.full((24, 32), 32768, dtype=np.uint16)
    keep("gray16.png", Image.fromarray(sixteen))
    red, blue = Image.new("RGB", (32, 24), (255, 0, 0)), Image.new("RGB", (32, 24), (0, 0, 255))
    files["animated.gif"] = folder / "animated.gif"
    red.save(files["animated.gif"], save_all=True, append_images=[blue], duration=100, loop=0)
    keep("photo.webp", Image.new("RGB", (32, 24), (10, 120, 200)))
    keep("photo.bmp", Image.new("RGB", (32, 24), (10, 120, 200)))
    keep("photo.tiff", Image.new("RGB", (32, 24), (10, 120, 200)))
    keep("photo.tif", Image.new("RGBA", (32, 24), (10, 120, 200, 255)))
    files["exif6.jpg"] = folder / "exif6.jpg"
    save_with_orientation(quadrants(), files["exif6.jpg"], 6)
    return files


def write_bad_images(folder: Path) -> dict[str, str]:
    """Files named as images that cannot be used, each mapped to a word its reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    buffer = folder / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, quality=90)
    (folder / "truncated.jpg").write_bytes(buffer.read_bytes()[: buffer.stat().st_size // 2])
    buffer.unlink()
    (folder / "random.png").write_bytes(np.random.default_rng(1).bytes(2048))
    (folder / "text.jpg").write_text("this is not a picture\n")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 M pixels in 48 kB
    os.symlink(folder / "does-not-exist.jpg", folder / "dangling.jpg")
    return {
        "zero.jpg": "empty",
        "truncated.jpg": "truncated",
        "random.png": "not an image",
        "text.jpg": "not an image",
        "bomb.png": "decompression bomb",
        "dangling.jpg": "broken symbolic link",
    }


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`foldertune ARGS...` as a real subprocess of this Python."""
    return subprocess.run(
        [sys.executable, "-m", "foldertune", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


class Exploit:
    """Pickles into a call of os.system: what a malicious checkpoint does when loaded without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
