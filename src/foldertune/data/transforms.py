"""Train and eval transforms built from a model's declared preprocessing; normalisation happens on the batch.

    pre = Preprocessing(crop_size=224, resize_size=256, interpolation="bilinear")
    train_tf = build_train_transform(pre)    # PIL -> RandomResizedCrop + flip -> uint8 tensor (3, 224, 224)
    build_train_transform(pre, augment="trivialwide")   # ... + TrivialAugmentWide (--augment)
    eval_tf = build_eval_transform(pre)      # PIL -> resize shorter side to 256 + center crop 224 -> uint8 tensor
    x = normalize_batch(batch_uint8, pre)    # (N, 3, H, W) uint8 on any device -> float, ImageNet-normalised

Transforms stop at uint8 so that DataLoader workers pass a quarter of the bytes, and the float conversion and
normalisation run once per batch on the training device.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode, v2

from foldertune.preprocessing import EVAL_MAX_ASPECT, Preprocessing, limit_aspect

MAX_ASPECT = EVAL_MAX_ASPECT

# RandomResizedCrop may take as little as 8% of the area: a side of sqrt(0.08) = 0.28 of the image's.
RANDOM_CROP_MIN_SCALE = 0.08


def build_train_transform(pre: Preprocessing, *, augment: str = "standard") -> v2.Compose:
    """The tutorial's training augmentation on a decoded picture: random resized crop and horizontal flip, then
    --augment's policy (`policy_augmentation`).

    Training reads through `readers.TrainReader`, which makes the same random draws but decodes only what the crop
    needs; this is the reference it is tested against.
    """
    policy = policy_augmentation(augment, pre)
    return v2.Compose(
        [
            v2.RandomResizedCrop(pre.crop_size, scale=(RANDOM_CROP_MIN_SCALE, 1.0), interpolation=_mode(pre)),
            v2.RandomHorizontalFlip(),
            *([policy] if policy is not None else []),
            v2.PILToTensor(),
        ]
    )


def policy_augmentation(augment: str, pre: Preprocessing) -> v2.Transform | None:
    """--augment's extra step on each training crop: None for standard; torchvision's TrivialAugmentWide (one random
    operation of random strength) or RandAugment (two operations, magnitude 9 of 31), as its ImageNet recipes use."""
    if augment == "standard":
        return None
    if augment == "trivialwide":
        return v2.TrivialAugmentWide(interpolation=_mode(pre))
    if augment == "randaugment":
        return v2.RandAugment(num_ops=2, magnitude=9, interpolation=_mode(pre))
    raise ValueError(f"unknown augmentation {augment!r}")


def build_eval_transform(pre: Preprocessing) -> v2.Compose:
    """Deterministic evaluation input: resize the shorter side, then crop the center."""
    return v2.Compose(
        [
            LimitAspect(MAX_ASPECT),  # a 20000x2 strip would otherwise become 2.5 million x 256 pixels
            v2.Resize(pre.resize_size, interpolation=_mode(pre)),
            v2.CenterCrop(pre.crop_size),
            v2.PILToTensor(),
        ]
    )


class LimitAspect:
    """Center-crop a PIL image's longer side to at most `ratio` times its shorter side (strips, odd panoramas)."""

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio

    def __call__(self, image):
        return limit_aspect(image, self.ratio)


def decode_min_side(pre: Preprocessing) -> int:
    """Smallest shorter side a JPEG may be decoded at for evaluation: the transform resizes it to resize_size.

    (Training decodes per random crop instead: see `foldertune.data.readers.TrainReader`.)
    """
    return pre.resize_size


def normalize_batch(images: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> float32 scaled to 0..1 and normalised with the model's mean and std."""
    mean = torch.tensor(pre.mean, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(pre.std, device=images.device).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std


def model_input(images: torch.Tensor, pre: Preprocessing, *, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A uint8 batch from the loader -> normalised float on `device`, in channels-last layout when asked: the same
    numbers as `normalize_batch`, with one new float tensor instead of four (a third less CPU time on the CPU)."""
    images = images.to(device, non_blocking=True)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    inputs = torch.empty(images.shape, dtype=torch.float32, device=device, memory_format=layout)
    inputs.copy_(images)  # to float and to the layout in one pass
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1) * 255
    return inputs.sub_(mean).div_(std)


def _mode(pre: Preprocessing) -> InterpolationMode:
    try:
        return InterpolationMode(pre.interpolation)
    except ValueError:
        raise ValueError(f"unknown interpolation {pre.interpolation!r} in preprocessing") from None


def tta_views(inputs: torch.Tensor) -> list[torch.Tensor]:
    """The views test-time augmentation averages over: the (N, 3, H, W) batch and its mirror image (crops measured
    no better on bench/trust_tta.py; see docs/design.md)."""
    return [inputs, inputs.flip(-1)]
