"""What a network expects of its input, declared per backbone and stored in every checkpoint (no torch import).

pre = Preprocessing(crop_size=224, resize_size=256, interpolation="bilinear")
pre.with_crop_size(112)      # Preprocessing(crop_size=112, resize_size=128, ...): same resize / crop ratio
Preprocessing.from_dict(pre.to_dict()) == pre
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

EVAL_MAX_ASPECT = 8  # at evaluation, the longer side is center-cropped to at most 8x the shorter one
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """What a network expects of its input; declared per backbone, stored in every checkpoint."""

    crop_size: int = 224
    """Side of the square the network sees, in pixels."""
    resize_size: int = 256
    """Shorter side after resizing, before the center crop (evaluation)."""
    interpolation: str = "bilinear"
    """Resampling filter: bilinear, bicubic or nearest."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def with_crop_size(self, crop_size: int | None) -> Preprocessing:
        """The same preprocessing for another input size, keeping the resize / crop ratio (256/224 = 1/0.875)."""
        if crop_size is None or crop_size == self.crop_size:
            return self
        resize_size = round(crop_size * self.resize_size / self.crop_size)
        return Preprocessing(crop_size, resize_size, self.interpolation, self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Preprocessing:
        return cls(
            crop_size=int(raw["crop_size"]),
            resize_size=int(raw["resize_size"]),
            interpolation=str(raw["interpolation"]),
            mean=tuple(float(v) for v in raw["mean"]),
            std=tuple(float(v) for v in raw["std"]),
        )


def limit_aspect(image, ratio: float = EVAL_MAX_ASPECT):
    """Center-crop a PIL image's longer side to at most `ratio` times its shorter side (strips, odd panoramas)."""
    width, height = image.size
    longest = int(ratio * min(width, height))
    if max(width, height) <= longest:
        return image
    left, top = max(0, (width - longest) // 2), max(0, (height - longest) // 2)
    return image.crop((left, top, left + min(width, longest), top + min(height, longest)))
