"""--decode device's readers against the CPU readers: the same draws per (seed, epoch, index), upright pictures, and
other formats decoded on the CPU in their place. On the CPU device here; on a CUDA GPU only the device differs."""

import pytest
import torch
from helpers import SAMPLE, quadrants, save_with_orientation
from PIL import Image

from foldertune.data.dataset import ImageDataset
from foldertune.data.device_decode import EncodedImage, EncodedReader, pack_batch
from foldertune.data.readers import EvalReader, TrainReader
from foldertune.preprocessing import Preprocessing

PRE = Preprocessing(crop_size=64, resize_size=73)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str]:
    """Real sample photos as JPEGs of their own sizes, one of them stored turned for EXIF orientation 6 as a camera
    would, another 1600x1200 (the CPU reader then decodes it reduced), and one PNG."""
    folder = tmp_path_factory.mktemp("device_decode")
    sources = sorted(SAMPLE.glob("*/*.webp"))[::23][:6]
    paths = []
    for number, source in enumerate(sources):
        picture = Image.open(source).convert("RGB")
        path = folder / f"{number}.{'png' if number == 5 else 'jpg'}"
        if number == 1:
            save_with_orientation(picture, path, 6)
        elif number == 2:
            picture.resize((1600, 1200), Image.Resampling.BICUBIC).save(path, quality=90)
        else:
            picture.save(path, quality=90)
        paths.append(str(path))
    return paths


def mean_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


@pytest.mark.parametrize("epoch", [0, 3])
def test_device_crops_are_the_cpu_readers_crops_for_the_same_seed_epoch_and_index(photos, epoch):
    samples = [(path, 0) for path in photos] * 2  # each photo at two indices: two different draws
    on_cpu = ImageDataset(samples, TrainReader(PRE), seed=7, augment=True)
    on_device = ImageDataset(samples, EncodedReader(PRE, train=True), seed=7, augment=True)
    keys = [(index, epoch) for index in range(len(samples))]
    items = [on_device[key] for key in keys]
    assert [isinstance(item, EncodedImage) for item, _ in items] == [path.endswith(".jpg") for path, _ in samples]
    packed, labels = pack_batch(items)
    decoded = packed.decode(PRE, CPU)
    expected = torch.stack([on_cpu[key][0] for key in keys])
    assert decoded.shape == expected.shape == (len(samples), 3, 64, 64) and decoded.dtype == torch.uint8
    assert labels.tolist() == [0] * len(samples)
    for index, path in enumerate(photos * 2):
        if path.endswith(".png"):  # decoded on the CPU by the same TrainReader with the same draws
            assert torch.equal(decoded[index], expected[index])
        else:  # the same box and flip, resampled by torchvision rather than by PIL after a reduced decode: the bound
            # of test_readers' reduced-versus-full check; a crop from another draw is further off (asserted below)
            assert mean_difference(decoded[index], expected[index]) < 6, (path, index)
    shifted = torch.roll(expected, 1, dims=0)  # each image beside another draw's crop
    assert min(mean_difference(decoded[i], shifted[i]) for i in range(len(samples))) > 30


def test_validation_on_the_device_is_the_evaluation_transform(photos):
    on_device = ImageDataset([(path, 1) for path in photos], EncodedReader(PRE, train=False))
    packed, labels = pack_batch([on_device[index] for index in range(len(photos))])
    decoded = packed.decode(PRE, CPU)
    expected = torch.stack([EvalReader(PRE)(path) for path in photos])
    assert labels.tolist() == [1] * len(photos) and decoded.shape == expected.shape
    for index in range(len(photos)):
        assert mean_difference(decoded[index], expected[index]) < 6, photos[index]  # as for the training crops
    again, _ = pack_batch([on_device[index] for index in range(len(photos))])
    assert torch.equal(again.decode(PRE, CPU), decoded)  # deterministic


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_exif_turned_jpeg_comes_out_upright(tmp_path, orientation):
    path = tmp_path / f"turned{orientation}.jpg"
    save_with_orientation(quadrants(80, 40), path, orientation)  # red, green / blue, white as a viewer shows it
    pre = Preprocessing(crop_size=40, resize_size=40)
    packed, _ = pack_batch([(EncodedReader(pre, train=False)(str(path)), 0)])
    image = packed.decode(pre, CPU)[0]  # the center 40x40 of the upright 80x40: red over blue, green over white
    corners = [image[:, 5, 15], image[:, 5, 25], image[:, 35, 15], image[:, 35, 25]]
    assert [tuple(int(v) // 64 for v in corner) for corner in corners] == [(3, 0, 0), (0, 3, 0), (0, 0, 3), (3, 3, 3)]
