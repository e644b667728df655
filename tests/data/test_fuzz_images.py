"""Property-based test of the image-reading path: mutated image bytes give a valid RGB picture or ImageReadError."""

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from foldertune.data.images import ImageReadError, check_image, open_image
from foldertune.data.readers import EvalReader, TrainReader
from foldertune.preprocessing import Preprocessing

PRE = Preprocessing(crop_size=32, resize_size=37)
FORMATS = {"jpg": ("JPEG", {}), "png": ("PNG", {}), "gif": ("GIF", {}), "bmp": ("BMP", {}), "webp": ("WEBP", {}),
           "tif": ("TIFF", {"compression": "tiff_lzw"})}  # fmt: skip


def encoded(ext: str) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    name, options = FORMATS[ext]
    Image.fromarray(pixels).save(buffer, format=name, **options)
    return buffer.getvalue()


ORIGINALS = {ext: encoded(ext) for ext in FORMATS}

mutation = st.one_of(
    st.tuples(st.just("cut"), st.floats(0, 1)),  # truncate at this fraction of the file
    st.tuples(st.just("set"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
)


def mutate(data: bytes, change) -> bytes:
    damaged = bytearray(data)
    if change[0] == "cut":
        return bytes(damaged[: int(change[1] * len(damaged))])
    if change[0] == "set":
        for where, value in change[1]:
            damaged[min(int(where * len(damaged)), len(damaged) - 1)] = value
        return bytes(damaged)
    position = int(change[1] * len(damaged))
    return bytes(damaged[:position] + change[2] + damaged[position:])


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL describes some of the damage as it reads
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ext=st.sampled_from(sorted(FORMATS)), change=mutation)
def test_mutated_image_bytes_read_as_rgb_or_raise_our_error(ext, change):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"mutated.{ext}"
        path.write_bytes(mutate(ORIGINALS[ext], change))
        reason = check_image(path)
        for read in (lambda: open_image(path, min_side=16), lambda: EvalReader(PRE)(str(path)),
                     lambda: TrainReader(PRE)(str(path))):  # fmt: skip
            try:
                result = read()
            except ImageReadError:
                continue
            if isinstance(result, torch.Tensor):
                assert result.shape == (3, 32, 32) and result.dtype == torch.uint8
            else:
                assert result.mode == "RGB" and np.asarray(result).shape[2] == 3
        if reason is None:  # a file the scan accepts must open for training too
            open_image(path, min_side=16)
