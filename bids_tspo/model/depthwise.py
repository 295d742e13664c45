"""The depthwise 3³ convolution of the separable blocks, with a faster CPU backward pass.

Forward passes are the library's ``Conv3d(groups=C)`` everywhere. Its CPU backward (oneDNN,
PyTorch 2.13) is what made CPU training slow: profiled at 64³, batch 2, it took 30x its
forward for the 64-channel stages, and the depthwise backward passes over half of a whole
training step. The same gradients are cheaper as three plain operations (a training step
1.9-2.1x faster; ``benchmarks/README.md``, "The depthwise backward"):

* input: the same depthwise convolution of the output gradient with the kernel flipped
  (~6x faster than the library's input gradient);
* bias: a sum over batch and voxels;
* weight: for every sample and channel, the correlation of the padded input with the output
  gradient: a grouped convolution with the gradient as a kernel the size of the volume and a
  3³ output, run per sample on 32 channels at a time (1.5-2x faster).

On CUDA, under autocast or ``torch.compile`` the library's own backward is used.

>>> conv = DepthwiseConv3d(4)
>>> x = torch.randn(2, 4, 8, 8, 8, requires_grad=True)
>>> conv(x).square().sum().backward()
>>> reference = torch.nn.Conv3d(4, 4, 3, padding=1, groups=4)
>>> _ = reference.load_state_dict(conv.state_dict())
>>> x2 = x.detach().clone().requires_grad_()
>>> reference(x2).square().sum().backward()
>>> torch.allclose(conv.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)
True
>>> torch.allclose(x.grad, x2.grad, atol=1e-5)
True
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

CHUNK = 32  # channels per weight-gradient convolution (32-64 groups ran fastest at 64³)


class DepthwiseConv3d(nn.Conv3d):
    """``nn.Conv3d(channels, channels, 3, padding=1, groups=channels)`` (same parameters and
    state-dict keys) whose CPU training backward is :class:`_DepthwiseGrad`."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, padding=1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and torch.is_grad_enabled() and self.bias is not None
                and not torch.is_autocast_enabled("cpu")
                and not torch.compiler.is_compiling()):
            return _DepthwiseGrad.apply(x, self.weight, self.bias)
        return super().forward(x)


class _DepthwiseGrad(torch.autograd.Function):
    """Depthwise 3³ convolution (padding 1) with the backward pass of the module docstring."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.conv3d(x, weight, bias, padding=1, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv3d(grad, weight.flip(2, 3, 4), None, padding=1,
                              groups=weight.shape[0])
        if ctx.needs_input_grad[1]:
            grad_w = weight_gradient(x, grad)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 2, 3, 4))
        return grad_x, grad_w, grad_b


def weight_gradient(x: torch.Tensor, grad: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """d(loss)/d(weight) (C, 1, 3, 3, 3) of a depthwise 3³ convolution with padding 1, from
    its input ``x`` and output gradient ``grad`` (both (N, C, D, H, W)), one sample and
    ``chunk`` channels at a time (the padded input and the gradient kernel are copies: in
    pieces they add ~0.25 GB at 96³ to the training peak, not ~1 GB)."""
    n, c = x.shape[:2]
    total = torch.zeros(c, 3, 3, 3, dtype=x.dtype, device=x.device)
    for i in range(n):
        for a in range(0, c, chunk):
            part = slice(a, min(a + chunk, c))
            padded = F.pad(x[i:i + 1, part], (1, 1, 1, 1, 1, 1))
            kernel = grad[i, part].unsqueeze(1).contiguous()      # (chunk, 1, D, H, W)
            total[part] += F.conv3d(padded, kernel, groups=len(kernel))[0]
    return total.unsqueeze(1)
