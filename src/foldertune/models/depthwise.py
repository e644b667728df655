"""A faster backward pass for stride-2 depthwise convolutions trained in bf16 on the CPU.

    swapped = use_fast_depthwise(model, runtime)   # how many layers take the faster path (0 unless CPU and bf16)

oneDNN, which runs PyTorch's convolutions on x86 CPUs, computes the input gradient of a stride-2 depthwise
convolution in bf16 several times slower than it computes the whole stride-1 convolution: on a 2-core EPYC with
AVX512-BF16 (PyTorch 2.14, batch 32, channels_last), mobilenet_v2's four such layers took 330 of a step's 990 ms.
That gradient is also a stride-1 depthwise convolution: spread the output gradient onto the input's grid (zeros
between its rows and columns) and correlate it with the kernel turned by 180 degrees. The same products are summed,
so the results equal oneDNN's own (bit for bit on mobilenet_v2's four layers; tests/models/test_depthwise.py holds
them to it and to fp32), with each layer's backward taking a half to a twentieth of the time; the weight gradient
still comes from PyTorch's convolution backward. A training step of mobilenet_v2 then runs about 1.4x faster
(bench/speed.py --peer prints the bare step with and without).

Only that case changes: in fp32 oneDNN's own backward is the faster one, GPUs keep cuDNN's, and without
gradients (evaluation, prediction, export) the layer is an ordinary nn.Conv2d. The layer's class is swapped in
place, so its parameters, state dict and checkpoints are those of nn.Conv2d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foldertune.device import Runtime


def use_fast_depthwise(model: nn.Module, runtime: Runtime) -> int:
    """Give every trainable stride-2 depthwise convolution of `model` the faster backward when training runs in bf16
    on the CPU; the number of layers swapped. Frozen layers (linear mode) stay nn.Conv2d, which torch.fx can fuse."""
    if runtime.device.type != "cpu" or runtime.precision != "bf16":
        return 0
    layers = [module for module in model.modules()
              if type(module) is nn.Conv2d and module.weight.requires_grad and _strided_depthwise(module)]  # fmt: skip
    for layer in layers:
        layer.__class__ = StridedDepthwiseConv2d
    return len(layers)


def _strided_depthwise(conv: nn.Conv2d) -> bool:
    """A depthwise convolution with stride 2, an odd square kernel and the padding that centres it."""
    size = conv.kernel_size[0]
    return (conv.groups == conv.in_channels == conv.out_channels and conv.stride == (2, 2)
            and conv.kernel_size == (size, size) and size % 2 == 1 and conv.padding == (size // 2, size // 2)
            and conv.dilation == (1, 1) and conv.padding_mode == "zeros")  # fmt: skip


class StridedDepthwiseConv2d(nn.Conv2d):
    """nn.Conv2d whose backward, in bf16 with gradients on, is _StridedDepthwise's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        if not (torch.is_grad_enabled() and x.device.type == "cpu" and (x.dtype == torch.bfloat16 or autocast)):
            return super().forward(x)
        x = x.to(torch.bfloat16)  # what autocast would do; the casts of the parameters carry their gradients back
        bias = None if self.bias is None else self.bias.to(torch.bfloat16)
        return _StridedDepthwise.apply(x, self.weight.to(torch.bfloat16), bias, self.padding)


class _StridedDepthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.conv2d(x, weight, bias, stride=2, padding=padding, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        channels = x.shape[1]
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            spread = torch.zeros_like(x, dtype=grad.dtype)  # (N, C, H, W) in x's layout (channels_last)
            spread[:, :, ::2, ::2] = grad  # output (i, j) came from the window centred on input (2i, 2j)
            grad_input = F.conv2d(spread, weight.flip(2, 3), padding=ctx.padding, groups=channels)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            _, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad, x, weight, [channels] if ctx.has_bias else None, [2, 2], list(ctx.padding), [1, 1], False,
                [0, 0], channels, [False, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]],
            )  # fmt: skip
        return grad_input, grad_weight, grad_bias, None
