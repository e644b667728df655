"""Open one image robustly: any format and mode becomes an upright 8-bit RGB picture, or a clear reason why not.

    image = open_image("photo.jpg", min_side=256)   # PIL.Image in RGB, EXIF-rotated, JPEG decoded at reduced size
    reason = check_image("maybe_broken.png")         # None when it decodes, else e.g. "truncated image data"
    info = inspect_image("photo.jpg", decode="header")  # ImageInfo(format='JPEG', mode='CMYK', width=..., ...)

Every mode PIL knows (1, L, LA, P, PA, RGBA, CMYK, YCbCr, I;16, I, F, ...) is mapped to RGB; transparent pixels are
composited onto white; 16-bit and 32-bit pixels are scaled to 8 bits rather than clipped; animated images give
their first frame. Nothing here ever writes to the file.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageOps, UnidentifiedImageError

from foldertune.data import DEFAULT_MAX_PIXELS

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# Our own pixel limit is checked before decoding (see `_open_checked`), so PIL's softer warning is noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

ORIENTATION = 0x0112  # the EXIF tag

BACKGROUND = (255, 255, 255)  # transparent pixels become white, as they look in most viewers


GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
DECODE_LEVELS = ("header", "draft", "full")


class ImageReadError(Exception):
    """An image file that cannot be used; the message is the reason, fit for a report."""


@dataclass(frozen=True)
class ImageInfo:
    """What one readable image file holds, as stored (before foldertune turns it into upright 8-bit RGB)."""

    format: str  # JPEG, PNG, WEBP, ... as PIL names it
    mode: str  # PIL's mode as stored: RGB, L, CMYK, P, RGBA, I;16, ...
    width: int  # upright, after the EXIF orientation
    height: int
    orientation: int  # the EXIF orientation tag; 1 (as stored) when absent
    bits: int  # bits per channel: 8, or 16 / 32 for deep PNG and TIFF files
    alpha: bool  # a transparent channel, or a palette with a transparent colour
    animated: bool  # more than one frame: the first is used
    grey: bool | None  # no colour: a grey mode, or (after a full decode) R == G == B everywhere; None when unknown
    file_bytes: int  # size of the file on disk
    mtime_ns: int  # its modification time, to notice a file changed under the same name


def open_image(
    path: str | os.PathLike,
    *,
    min_side: int | Callable[[int, int], int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
):
    """Read an image file as upright 8-bit RGB; raise ImageReadError with the reason when it cannot be used.

    With `min_side`, a JPEG is decoded at the smallest power-of-two reduction (1/2, 1/4, 1/8) whose shorter side is
    still at least `min_side` pixels: the DCT does the downscaling, several times faster than decode + resize.
    `min_side` may be a function of the upright full size (width, height), called before anything is decoded.
    Animated and multi-page files give their first frame (where PIL opens them).
    """
    image, _ = _open_checked(path, max_pixels)
    try:
        if callable(min_side):
            min_side = min_side(*upright_size(image))
        if min_side is not None and image.format == "JPEG":
            width, height = image.size
            scale = min_side / min(width, height)
            if scale < 1:
                image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        rgb = to_rgb(image)
    except Exception as error:  # damaged files make PIL raise nearly any type
        image.close()
        raise ImageReadError(_decode_reason(error)) from error
    if rgb is not image:
        image.close()
    return rgb


def check_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """Read the file exactly as training will, and return why it cannot be used, or None when it is fine.

    JPEGs are decoded at 1/8 scale: every byte of the compressed stream is still read, so truncation and corrupt
    data are found, at a fraction of the cost of a full decode.
    """
    try:
        inspect_image(path, decode="draft", max_pixels=max_pixels)
    except ImageReadError as error:
        return str(error)
    return None


def inspect_image(path: str | os.PathLike, *, decode: str = "draft", max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Describe an image file, or raise ImageReadError with the reason it cannot be used.

    `decode` says how far to go: "header" reads only the header (thousands of files a second, but a file cut short
    passes); "draft" decodes as `check_image` does (every compressed byte read, JPEGs at 1/8 scale); "full"
    decodes every pixel at full size and also finds colour files whose pixels are all grey.
    """
    if decode not in DECODE_LEVELS:
        raise ValueError(f"decode must be one of {DECODE_LEVELS}, not {decode!r}")
    image, stat = _open_checked(path, max_pixels)
    try:
        bits = _bits_per_channel(image)  # before anything is decoded: loading clears the decoder's raw mode
        stored_size = image.size  # a reduced JPEG decode changes image.size
        if decode == "draft" and image.format == "JPEG":
            image.draft("RGB", (max(1, image.size[0] // 8), max(1, image.size[1] // 8)))
        if decode != "header":
            image.load()  # first: reading a PNG's EXIF loads it too, and would swallow the decoding error
        orientation = _orientation(image, header_only=decode == "header")
        width, height = stored_size if orientation < 5 else stored_size[::-1]
        info = ImageInfo(
            format=image.format or "?",
            mode=image.mode,
            width=width,
            height=height,
            orientation=orientation,
            bits=bits,
            alpha=image.mode in ALPHA_MODES or (image.mode in ("P", "L", "RGB") and "transparency" in image.info),
            animated=bool(getattr(image, "is_animated", False)),
            grey=True if image.mode in GREY_MODES else None,
            file_bytes=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
        )
        if decode == "header":
            return info
        rgb = to_rgb(image)
        if decode == "full" and info.grey is None:
            info = replace(info, grey=_all_grey(rgb))
        if rgb is not image:
            rgb.close()
        return info
    except Exception as error:  # damaged files make PIL raise nearly any type
        raise ImageReadError(_decode_reason(error)) from error
    finally:
        image.close()


def _all_grey(rgb: Image.Image) -> bool:
    """R == G == B in every pixel; a sample of real pixels first, so that colour pictures answer at once."""
    sample = rgb.resize((min(64, rgb.width), min(64, rgb.height)), Image.Resampling.NEAREST)
    for picture in (sample, rgb):
        red, green, blue = picture.split()
        if ImageChops.difference(red, green).getbbox() or ImageChops.difference(green, blue).getbbox():
            return False
    return True


def _orientation(image: Image.Image, *, header_only: bool) -> int:
    if header_only and image.format == "PNG" and "exif" not in image.info:
        return 1  # PIL would decode the whole PNG to look for an eXIf chunk after the pixels (rare in practice)
    with contextlib.suppress(Exception):  # a damaged EXIF block counts as none, as in `to_rgb`
        value = int(image.getexif().get(ORIENTATION, 1))
        return value if 1 <= value <= 8 else 1
    return 1


def _bits_per_channel(image: Image.Image) -> int:
    """From the decoder's raw mode: PIL reads 16-bit RGB PNGs into 8-bit RGB, so the mode alone does not say."""
    if image.mode in ("I", "F"):
        return 32
    with contextlib.suppress(Exception):
        args = image.tile[0].args if hasattr(image.tile[0], "args") else image.tile[0][3]
        rawmode = args if isinstance(args, str) else args[0]
        if ";16" in rawmode:
            return 16
    return 16 if image.mode.startswith("I;16") else 8


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) after the EXIF orientation is applied, read from the header without decoding."""
    width, height = image.size
    with contextlib.suppress(Exception):  # a damaged EXIF block is ignored here as in `to_rgb`
        if image.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8):  # the four orientations that turn by 90 degrees
            return height, width
    return width, height


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as upright 8-bit RGB: EXIF orientation applied, alpha over white, deep pixels scaled."""
    with contextlib.suppress(Exception):  # a damaged EXIF block: keep the pixels as stored, not refuse the picture
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_deep_to_uint8(np.asarray(image), mode)).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _deep_to_uint8(pixels: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer or float pixels scaled to 0..255 (PIL's own convert would clip them at 255)."""
    pixels = np.nan_to_num(pixels.astype(np.float64))
    peak = pixels.max() if pixels.size else 0.0
    if mode.startswith("I;16") or (mode == "I" and peak > 255):
        pixels = pixels / 257.0  # the 16-bit range 0..65535 onto 0..255
    elif mode == "F" and peak <= 1.0:
        pixels = pixels * 255.0  # float images stored in 0..1
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


def _open_checked(path: str | os.PathLike, max_pixels: int) -> tuple[Image.Image, os.stat_result]:
    """Open lazily (header only) and refuse files that are missing, empty, not images or too large."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        reason = "broken symbolic link" if path.is_symlink() else "file not found"
        raise ImageReadError(reason) from None
    except OSError as error:
        raise ImageReadError(f"cannot read file ({error.strerror or error})") from None
    if stat.st_size == 0:
        raise ImageReadError("empty file (0 bytes)")
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as error:  # PIL's own ceiling, twice Image.MAX_IMAGE_PIXELS
        numbers = [int(n) for n in re.findall(r"\d+", str(error))]
        detail = f"{numbers[0]:,} > {numbers[1]:,}" if len(numbers) >= 2 else str(error)
        raise ImageReadError(f"too many pixels ({detail}): possibly a decompression bomb") from None
    except UnidentifiedImageError:
        raise ImageReadError("not an image (no known image format in the file)") from None
    except Exception as error:  # a damaged header can make PIL raise nearly any type
        raise ImageReadError(_decode_reason(error)) from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageReadError(
            f"too many pixels ({width}x{height} = {width * height:,} > {max_pixels:,}): possibly a decompression bomb"
        )
    if width == 0 or height == 0:
        image.close()
        raise ImageReadError(f"image has no pixels ({width}x{height})")
    return image, stat


def _decode_reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
    if "truncated" in text.lower():
        return "truncated image data (the file ends early)"
    if isinstance(error, OSError) and text:
        return f"corrupt image data ({text})"
    return f"corrupt image data ({type(error).__name__}{': ' + text if text else ''})"
