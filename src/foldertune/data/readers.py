"""From an image file to the uint8 tensor the network sees: decode no more pixels than the transform will use.

    read = TrainReader(pre)            # random resized crop + flip, (3, 224, 224) uint8; seed torch first
    read = TrainReader(pre, augment="randaugment")   # ... then RandAugment on the crop (--augment)
    read = EvalReader(pre)             # resize the shorter side to 256, center crop 224
    tensor = read("photo.jpg")
    read = TrainReader(pre, opener=image_cache.open)   # pictures from an ImageCache (--cache) instead of the file

A 4000x3000 phone photo holds 12 million pixels and the network looks at 50 thousand. TrainReader draws the random
crop's box on the size the file's header declares, before decoding, then lets the JPEG decoder shrink the picture
by 1/2, 1/4 or 1/8 (DCT scaling) as far as that box keeps at least crop_size pixels a side; the box is then cropped
and resized in one step. The result matches full decode + RandomResizedCrop + flip with the same random draws, up
to resampling differences: the crop is never taken from fewer pixels than the network input has.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from foldertune.data import DEFAULT_MAX_PIXELS
from foldertune.data.images import open_image
from foldertune.data.transforms import RANDOM_CROP_MIN_SCALE, build_eval_transform, policy_augmentation
from foldertune.preprocessing import Preprocessing

Opener = Callable[..., Image.Image]  # open_image's signature: (path, *, min_side, max_pixels) -> upright RGB

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default range of box aspect ratios
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "nearest": Image.Resampling.NEAREST}  # fmt: skip


class EvalReader:
    """Deterministic input: the JPEG decoded at the smallest size with a shorter side >= resize_size, then resized
    and center-cropped by the evaluation transform."""

    def __init__(self, pre: Preprocessing, *, max_pixels: int = DEFAULT_MAX_PIXELS, opener: Opener = open_image):
        self.transform = build_eval_transform(pre)
        self.min_side = pre.resize_size
        self.max_pixels = max_pixels
        self.opener = opener

    def __call__(self, path: str) -> torch.Tensor:
        return self.transform(self.opener(path, min_side=self.min_side, max_pixels=self.max_pixels))


class TrainReader:
    """Augmented input (random resized crop, horizontal flip) decoded only as large as the drawn crop needs.

    Draws from torch's global generator, in the same order as torchvision's RandomResizedCrop and then
    RandomHorizontalFlip: the caller seeds it per sample.
    """

    def __init__(
        self,
        pre: Preprocessing,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        opener: Opener = open_image,
        augment: str = "standard",
    ):
        self.opener = opener
        self.policy = policy_augmentation(augment, pre)  # --augment: applied to the crop, after the flip
        self.size = pre.crop_size
        self.resample = RESAMPLING[pre.interpolation]
        self.max_pixels = max_pixels
        self.scale = (RANDOM_CROP_MIN_SCALE, 1.0)

    def __call__(self, path: str) -> torch.Tensor:
        drawn = {}

        def min_side(width: int, height: int) -> int:
            """Draw the box on the full upright size; the shorter side the decode needs for it to keep its pixels."""
            drawn["full"] = (width, height)
            drawn["box"] = draw_crop_box(width, height, self.scale)  # top, left, height, width
            _, _, box_height, box_width = drawn["box"]
            return -(-self.size * min(width, height) // min(box_height, box_width))  # ceiling division

        image = self.opener(path, min_side=min_side, max_pixels=self.max_pixels)
        top, left, box_height, box_width = drawn["box"]
        full_width, full_height = drawn["full"]
        fx, fy = image.width / full_width, image.height / full_height
        if abs(fx - fy) > 0.1 * max(fx, fy):  # the header's orientation was not the one applied: redraw on the pixels
            top, left, box_height, box_width = draw_crop_box(image.width, image.height, self.scale)
            fx = fy = 1.0
        box = (left * fx, top * fy, (left + box_width) * fx, (top + box_height) * fy)
        crop = image.resize((self.size, self.size), self.resample, box=box)
        if torch.rand(1) < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.policy is not None:
            crop = self.policy(crop)
        return TF.pil_to_tensor(crop)


def draw_crop_box(width: int, height: int, scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, height, width) for an image of this size, drawn as torchvision draws it."""
    shape_only = torch.empty(()).expand(1, height, width)  # the size without the pixels: no memory
    return tuple(int(v) for v in RandomResizedCrop.get_params(shape_only, list(scale), list(RATIO)))
