"""A faster backward pass for depthwise convolutions trained in bf16 on the CPU.

    swapped = use_fast_depthwise(model, runtime)   # how many layers take the faster path (0 unless CPU and bf16)

oneDNN, which runs PyTorch's convolutions on x86 CPUs, differentiates two kinds of depthwise convolution slowly in
bf16 (measured on a 2-core EPYC with AVX512-BF16, PyTorch 2.14, batch 32, channels_last):
- stride 2: the input gradient, 3-60x slower than in fp32; mobilenet_v2's four such layers took 330 of a step's
  990 ms. That gradient is also a stride-1 depthwise convolution: spread the output gradient onto the input's grid
  (zeros between its rows and columns) and correlate it with the kernel turned by 180 degrees. The same products
  are summed, so the results equal oneDNN's own (bit for bit on mobilenet_v2's four layers), in a half to a
  twentieth of the time.
- kernels of 5x5 and more: the weight gradient, 2.4-5x slower than in fp32 even counting the casts, so it is
  computed in fp32 (and is then nearer the exact value than bf16's).
Everything else is PyTorch's own. Training steps then run 1.3x (mobilenet_v2) to 1.9x (mobilenet_v3_small) faster;
tests/models/test_depthwise.py holds the gradients to PyTorch's and to fp32's, bench/speed.py --peer prints the
bare step with and without.

Only these cases change: in fp32 oneDNN's own backward is the faster one, GPUs keep cuDNN's, and without gradients
(evaluation, prediction, export) the layer is an ordinary nn.Conv2d. The layer's class is swapped in place, so its
parameters, state dict and checkpoints are those of nn.Conv2d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from foldertune.device import Runtime


def use_fast_depthwise(model: nn.Module, runtime: Runtime) -> int:
    """Give every trainable depthwise convolution of `model` that oneDNN differentiates slowly in bf16 (`_slow_in_bf16`)
    the faster backward, when training runs in bf16 on the CPU; the number of layers swapped. Frozen layers (linear
    mode) stay nn.Conv2d, which torch.fx can fuse."""
    if runtime.device.type != "cpu" or runtime.precision != "bf16":
        return 0
    layers = [module for module in model.modules()
              if type(module) is nn.Conv2d and module.weight.requires_grad and _slow_in_bf16(module)]  # fmt: skip
    for layer in layers:
        layer.__class__ = DepthwiseConv2d
    return len(layers)


def _slow_in_bf16(conv: nn.Conv2d) -> bool:
    """A depthwise convolution (odd square kernel, centred padding, stride 1 or 2) with stride 2 (oneDNN's slow input
    gradient) or a kernel of 5 or more (its slow weight gradient)."""
    size = conv.kernel_size[0]
    depthwise = (conv.groups == conv.in_channels == conv.out_channels and conv.kernel_size == (size, size)
                 and size % 2 == 1 and conv.padding == (size // 2, size // 2) and conv.dilation == (1, 1)
                 and conv.padding_mode == "zeros")  # fmt: skip
    return depthwise and (conv.stride == (2, 2) or (conv.stride == (1, 1) and size >= 5))


class DepthwiseConv2d(nn.Conv2d):
    """nn.Conv2d whose backward, in bf16 with gradients on, is _Depthwise's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        if not (torch.is_grad_enabled() and x.device.type == "cpu" and (x.dtype == torch.bfloat16 or autocast)):
            return super().forward(x)
        x = x.to(torch.bfloat16)  # what autocast would do; the casts of the parameters carry their gradients back
        bias = None if self.bias is None else self.bias.to(torch.bfloat16)
        return _Depthwise.apply(x, self.weight.to(torch.bfloat16), bias, self.stride[0], self.padding)


class _Depthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        channels, stride, padding = x.shape[1], ctx.stride, list(ctx.padding)

        def pytorchs(grad, x, weight, mask):  # PyTorch's own convolution backward, for the outputs in `mask`
            sizes = [channels] if ctx.has_bias else None
            return torch.ops.aten.convolution_backward(grad, x, weight, sizes, [stride] * 2, padding, [1, 1], False,
                                                       [0, 0], channels, mask)  # fmt: skip

        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0] and stride == 2:
            spread = torch.zeros_like(x, dtype=grad.dtype)  # (N, C, H, W) in x's layout (channels_last)
            spread[:, :, ::2, ::2] = grad  # output (i, j) came from the window centred on input (2i, 2j)
            grad_input = F.conv2d(spread, weight.flip(2, 3), padding=ctx.padding, groups=channels)
        elif ctx.needs_input_grad[0]:  # stride 1: oneDNN's is fast
            grad_input = pytorchs(grad, x, weight, [True, False, False])[0]
        mask = [False, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        if any(mask) and weight.shape[-1] >= 5:  # in fp32, casts included, 2.4-5x faster than oneDNN's bf16
            _, grad_weight, grad_bias = pytorchs(grad.float(), x.float(), weight.float(), mask)
            grad_weight = None if grad_weight is None else grad_weight.to(weight.dtype)
            grad_bias = None if grad_bias is None else grad_bias.to(weight.dtype)
        elif any(mask):
            _, grad_weight, grad_bias = pytorchs(grad, x, weight, mask)
        return grad_input, grad_weight, grad_bias, None, None
