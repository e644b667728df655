"""Rename one network's weights into another implementation's names, when both lay out the same layers in order.

    state = convert_by_position(torchvision_mobilenet_v2_state, timm.create_model("mobilenetv2_100"))
    save_file(state, "mobilenetv2_100-from-torchvision.safetensors")    # then: --model timm/mobilenetv2_100 --weights

torchvision's mobilenet_v2 and timm's mobilenetv2_100 hold the same 314 tensors in the same order with the same
shapes (stem, 17 inverted-residual blocks, 1x1 head convolution, classifier), under other names; so do many
re-implementations of one architecture. Pairing the tensors by position is exact there, and every pair must have
the same shape, so two networks that differ anywhere are refused rather than silently mixed.
`bench/convert_mobilenet_v2.py` writes the converted file and checks its ImageNet predictions on the sample.
"""

from __future__ import annotations

import torch
from torch import nn

from foldertune.errors import UserError


def convert_by_position(source: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """`source`'s tensors under `target`'s state_dict names, paired in order; a UserError where they differ."""
    names = list(target.state_dict().items())
    if len(names) != len(source):
        raise UserError(f"the weights hold {len(source)} tensors and {type(target).__name__} {len(names)}: the two "
                        "networks are not laid out alike, so they cannot be paired by position.")  # fmt: skip
    converted = {}
    for (name, expected), (source_name, tensor) in zip(names, source.items(), strict=True):
        if tensor.shape != expected.shape:
            raise UserError(f"{source_name} {tuple(tensor.shape)} would become {name} {tuple(expected.shape)}: "
                            "the two networks are not laid out alike.")  # fmt: skip
        converted[name] = tensor.detach().clone().contiguous()
    return converted
