"""Reduced-size decoding for training and evaluation: same picture as full decode, upright, right colours and size."""

import numpy as np
import pytest
import torch
from helpers import SAMPLE, quadrants, save_with_orientation
from PIL import Image

from foldertune.data.images import open_image
from foldertune.data.readers import EvalReader, TrainReader, draw_crop_box
from foldertune.data.transforms import build_eval_transform, build_train_transform
from foldertune.preprocessing import Preprocessing

PRE = Preprocessing(crop_size=96, resize_size=110)


@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory):
    """A 3200x2400 JPEG made from a real sample photo, as a phone would store it."""
    path = tmp_path_factory.mktemp("phone") / "fish.jpg"
    photo = Image.open(SAMPLE / "fishes" / "fish9.webp").convert("RGB")
    photo.resize((3200, 2400), Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def mean_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


def test_train_reader_matches_full_decode_with_the_same_random_draws(phone_photo):
    reference = build_train_transform(PRE)  # torchvision's RandomResizedCrop + flip on the fully decoded image
    full = open_image(phone_photo)
    for seed in range(12):
        torch.manual_seed(seed)
        fast = TrainReader(PRE)(str(phone_photo))
        torch.manual_seed(seed)
        slow = reference(full)
        assert fast.shape == (3, 96, 96) and fast.dtype == torch.uint8
        assert mean_difference(fast, slow) < 6, seed  # the same crop, up to resampling differences
    torch.manual_seed(0)
    assert not torch.equal(TrainReader(PRE)(str(phone_photo)), TrainReader(PRE)(str(phone_photo)))  # it varies


def test_train_reader_decodes_less_but_never_below_the_crop_resolution(phone_photo, monkeypatch):
    decoded = []
    real_load = Image.Image.load

    def load(self):
        result = real_load(self)
        decoded.append(self.size)
        return result

    monkeypatch.setattr(Image.Image, "load", load)  # records the size each (real) decode produced
    pre = Preprocessing(crop_size=224, resize_size=256)
    reductions = []
    for seed in range(30):
        torch.manual_seed(seed)
        _, _, box_height, box_width = draw_crop_box(3200, 2400, (0.08, 1.0))  # the box the reader will draw
        decoded.clear()
        torch.manual_seed(seed)
        TrainReader(pre)(str(phone_photo))
        reduction = 3200 / decoded[0][0]
        reductions.append(reduction)
        assert min(box_height, box_width) / reduction >= 224  # the crop keeps at least 224 decoded pixels a side
        assert reduction == 8 or min(box_height, box_width) / (2 * reduction) < 224  # and no more than needed
    assert {2, 4, 8} <= set(reductions)  # small boxes decode at 1/2, large ones at 1/8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_reduced_decode_is_upright_with_the_right_colours(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    save_with_orientation(quadrants(1600, 1200), path, orientation)  # red, green / blue, white when upright
    evaluated = EvalReader(Preprocessing(crop_size=96, resize_size=96))(str(path))
    reference = build_eval_transform(Preprocessing(crop_size=96, resize_size=96))(open_image(path))
    assert evaluated.shape == (3, 96, 96) and mean_difference(evaluated, reference) < 4
    picture = evaluated.permute(1, 2, 0).numpy().astype(int)
    corners = {(10, 10): (255, 0, 0), (10, 85): (0, 255, 0), (85, 10): (0, 0, 255), (85, 85): (255, 255, 255)}
    for (row, column), colour in corners.items():
        assert np.abs(picture[row, column] - colour).max() < 40, (orientation, (row, column), picture[row, column])
    # training: a whole-picture box (scale 1 and the picture's own ratio) keeps the quadrants in place
    read = TrainReader(Preprocessing(crop_size=96, resize_size=96))
    read.scale = (1.0, 1.0)
    for seed in range(4):
        torch.manual_seed(seed)
        crop = read(str(path)).permute(1, 2, 0).numpy().astype(int)
        seen = [crop[10, 10], crop[10, 85], crop[85, 10], crop[85, 85]]  # top left, top right, bottom left, right
        flipped = np.abs(seen[0] - (0, 255, 0)).max() < 40  # random flips are left-right only
        expected = [(0, 255, 0), (255, 0, 0), (255, 255, 255), (0, 0, 255)] if flipped else list(corners.values())
        for got, colour in zip(seen, expected, strict=True):
            assert np.abs(got - colour).max() < 40, (orientation, seed, seen)


def test_png_and_small_images_are_read_unchanged_by_the_fast_path(tmp_path):
    small = tmp_path / "small.png"
    Image.open(SAMPLE / "tools" / sorted(p.name for p in (SAMPLE / "tools").iterdir())[0]).convert("RGB").save(small)
    reference = build_train_transform(PRE)
    for seed in range(5):
        torch.manual_seed(seed)
        fast = TrainReader(PRE)(str(small))
        torch.manual_seed(seed)
        slow = reference(open_image(small))
        assert mean_difference(fast, slow) < 2
