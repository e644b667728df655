import io
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import SAMPLE, quadrants, save_with_orientation, write_bad_images, write_good_images
from PIL import Image

from foldertune.data.images import ImageReadError, check_image, open_image


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_good_images(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    return folder, write_bad_images(folder)


def pixel(image: Image.Image, x: int, y: int) -> np.ndarray:
    return np.asarray(image, dtype=int)[y, x]


def test_every_readable_oddity_becomes_8bit_rgb(good):
    for name, path in good.items():
        assert check_image(path) is None, name
        image = open_image(path)
        assert image.mode == "RGB", name
        assert np.asarray(image).dtype == np.uint8, name


def test_transparent_pixels_are_composited_on_white(good):
    la = open_image(good["la.png"])
    assert pixel(la, 2, 2).tolist() == [255, 255, 255]  # transparent half
    assert pixel(la, 30, 2).tolist() == [0, 0, 0]  # opaque black half
    palette = open_image(good["palette_transparent.png"])
    assert pixel(palette, 2, 2).tolist() == [255, 255, 255]
    assert pixel(palette, 30, 2).tolist() == [255, 0, 0]
    pink = pixel(open_image(good["rgba.png"]), 5, 5)  # 50% red over white
    assert pink[0] == 255 and 120 <= pink[1] <= 135 and 120 <= pink[2] <= 135


def test_cmyk_16bit_and_animated_gif_colors(good):
    cyan = pixel(open_image(good["cmyk.jpg"]), 5, 5)
    assert cyan[0] < 20 and cyan[1] > 235 and cyan[2] > 235
    # 32768 of 65535 is mid-grey; PIL's own convert would clip it to 255
    assert abs(pixel(open_image(good["gray16.png"]), 5, 5) - 128).max() <= 1
    assert pixel(open_image(good["animated.gif"]), 5, 5).tolist() == [255, 0, 0]  # first frame, not the blue one


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    save_with_orientation(quadrants(40, 20), path, orientation)
    image = open_image(path)
    assert image.size == (40, 20)
    expected = {(10, 5): (255, 0, 0), (30, 5): (0, 255, 0), (10, 15): (0, 0, 255), (30, 15): (255, 255, 255)}
    for (x, y), color in expected.items():
        assert np.abs(pixel(image, x, y) - color).max() < 40, (orientation, (x, y), pixel(image, x, y))


def test_unusable_files_are_named_with_a_reason(bad):
    folder, expected = bad
    for name, word in expected.items():
        reason = check_image(folder / name)
        assert reason is not None and word in reason, (name, reason)
        with pytest.raises(ImageReadError, match=word):
            open_image(folder / name)


def test_decompression_bomb_is_refused_without_decoding(bad):
    folder, _ = bad
    assert "400,000,000" in check_image(folder / "bomb.png")
    # a lower limit of our own applies to ordinary images too
    reason = check_image(SAMPLE / "fishes" / "fish1.webp", max_pixels=1000)
    assert reason is not None and "decompression bomb" in reason


def test_reduced_jpeg_decode_keeps_enough_resolution_and_content(tmp_path):
    big = Image.open(SAMPLE / "fishes" / "fish9.webp").convert("RGB").resize((1600, 1200), Image.Resampling.LANCZOS)
    path = tmp_path / "big.jpg"
    big.save(path, quality=95)
    reduced = open_image(path, min_side=256)
    assert min(reduced.size) >= 256 and reduced.size[0] < 1600  # decoded at a reduced scale, still >= 256
    full = open_image(path).resize(reduced.size, Image.Resampling.BILINEAR)
    difference = np.abs(np.asarray(reduced, dtype=float) - np.asarray(full, dtype=float)).mean()
    assert difference < 6, difference  # same picture, up to resampling differences


def test_reading_never_writes(good):
    before = {name: (os.stat(path).st_mtime_ns, path.read_bytes()) for name, path in good.items()}
    for path in good.values():
        open_image(path, min_side=8)
        check_image(path)
    assert before == {name: (os.stat(path).st_mtime_ns, path.read_bytes()) for name, path in good.items()}


def damaged_copies(folder, count_per_format: int = 25):
    """Deterministically damaged files of every format: cut short, or with bytes flipped in the header or EXIF."""
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera"
    formats = {"jpg": ("JPEG", {"exif": exif}), "png": ("PNG", {}), "gif": ("GIF", {}), "bmp": ("BMP", {}),
               "webp": ("WEBP", {}), "tif": ("TIFF", {"compression": "tiff_lzw"})}  # fmt: skip
    for ext, (name, options) in formats.items():
        buffer = io.BytesIO()
        base.save(buffer, format=name, **options)
        data = buffer.getvalue()
        for trial in range(count_per_format):
            damaged = bytearray(data)
            if trial % 3 == 0:
                damaged = damaged[: int(rng.integers(8, len(damaged)))]
            else:
                span = 120 if trial % 3 == 1 else len(damaged)
                for _ in range(int(rng.integers(1, 5))):
                    damaged[int(rng.integers(0, min(span, len(damaged))))] = int(rng.integers(0, 256))
            path = folder / f"{ext}_{trial}.{ext}"
            path.write_bytes(bytes(damaged))
            yield path


KNOWN_DAMAGED = sorted((Path(__file__).parent / "damaged").glob("*.[jt]*[gf]"))


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL describes some of the damage as it reads
def test_damaged_files_never_raise_anything_but_a_read_error_and_a_passed_check_means_it_opens(tmp_path):
    assert len(KNOWN_DAMAGED) == 3
    for path in [*KNOWN_DAMAGED, *damaged_copies(tmp_path)]:
        reason = check_image(path)  # must not raise
        if reason is None:
            image = open_image(path, min_side=16)
            assert np.asarray(image).shape[2] == 3, path  # usable, not a closed or half-read image
        else:
            with pytest.raises(ImageReadError):
                open_image(path, min_side=16)
