"""The faster backward of depthwise convolutions (bf16 on the CPU) gives the gradients PyTorch's own does."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from foldertune.device import Runtime
from foldertune.models.build import apply_mode
from foldertune.models.depthwise import DepthwiseConv2d, use_fast_depthwise

BF16_CPU = Runtime(torch.device("cpu"), "bf16")


def _outputs(conv: nn.Conv2d, x: torch.Tensor, upstream: torch.Tensor, *, bf16: bool) -> list[torch.Tensor]:
    """The output and the gradients of input, weight and bias, as float32, for one backward of `upstream`."""
    conv.zero_grad(set_to_none=True)
    inputs = (x.to(torch.bfloat16) if bf16 else x).clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = conv(inputs)
    if bf16 and type(conv) is DepthwiseConv2d:
        assert type(y.grad_fn).__name__ == "_DepthwiseBackward"  # the faster backward, not PyTorch's
    (y.float() * upstream).sum().backward()
    found = [y.float(), inputs.grad.float(), conv.weight.grad.float()]
    return found + ([conv.bias.grad.float()] if conv.bias is not None else [])


@pytest.mark.parametrize(
    ("channels", "size", "kernel", "stride", "bias"),
    [(16, 28, 3, 2, False), (12, 15, 3, 2, True), (8, 14, 5, 2, True), (24, 14, 5, 1, False), (8, 9, 7, 1, True)],
)
def test_gradients_equal_pytorchs_own(channels, size, kernel, stride, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, channels, kernel, stride=stride, padding=kernel // 2, groups=channels, bias=bias)
    x = torch.randn(4, channels, size, size).contiguous(memory_format=torch.channels_last)
    side = (size + stride - 1) // stride
    upstream = torch.randn(4, channels, side, side)
    exact = _outputs(conv, x, upstream, bf16=False)  # fp32: the reference both bf16 paths round away from
    stock = _outputs(conv, x, upstream, bf16=True)
    assert use_fast_depthwise(conv, BF16_CPU) == 1 and type(conv) is DepthwiseConv2d
    fast = _outputs(conv, x, upstream, bf16=True)
    names = ("output", "input grad", "weight grad", "bias grad")[: len(exact)]
    for name, reference, theirs, ours in zip(names, exact, stock, fast, strict=True):
        theirs_error = _relative_error(theirs, reference)
        assert theirs_error < 0.01, name  # bf16 rounding, a few parts in a thousand
        assert _relative_error(ours, reference) <= 1.05 * theirs_error + 1e-6, name  # as close as PyTorch's own
        if kernel == 3 or name in ("output", "input grad"):  # the same sums in bf16 (a 5x5's weight: in fp32)
            assert _relative_error(ours, theirs) < 1e-3, name


def _relative_error(found: torch.Tensor, reference: torch.Tensor) -> float:
    return ((found - reference).norm() / reference.norm()).item()


def test_fp32_grad_free_calls_are_plain_convolutions():
    conv = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
    use_fast_depthwise(conv, BF16_CPU)
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    assert type(conv(x).grad_fn).__name__ == "ConvolutionBackward0"  # fp32: PyTorch's own backward is the faster
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).grad_fn is None


def test_swaps_the_slow_trainable_depthwise_layers_only_in_bf16_on_the_cpu():
    model = torchvision.models.mobilenet_v2(num_classes=5)
    keys = list(model.state_dict())
    assert use_fast_depthwise(model, Runtime(torch.device("cpu"), "fp32")) == 0
    assert use_fast_depthwise(model, Runtime(torch.device("cuda"), "bf16")) == 0
    assert use_fast_depthwise(model, BF16_CPU) == 4  # the four stride-2 blocks' 3x3 depthwise convolutions
    swapped = [m for m in model.modules() if type(m) is DepthwiseConv2d]
    assert all(m.stride == (2, 2) and m.groups == m.in_channels for m in swapped)  # stride-1 3x3: oneDNN is fast
    efficientnet = torchvision.models.efficientnet_b0(num_classes=5)
    fives = [m for m in efficientnet.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (5, 5)]
    strided = [m for m in efficientnet.modules() if isinstance(m, nn.Conv2d) and m.groups > 1 and m.stride == (2, 2)]
    assert use_fast_depthwise(efficientnet, BF16_CPU) == len(set(map(id, fives + strided))) == 11
    assert list(model.state_dict()) == keys  # checkpoints are unchanged
    frozen = torchvision.models.mobilenet_v2(num_classes=5)
    apply_mode(frozen, "mobilenet_v2", "linear")
    assert use_fast_depthwise(frozen, BF16_CPU) == 0  # a frozen backbone keeps nn.Conv2d, which torch.fx can fuse
