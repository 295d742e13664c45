"""Formulations of the model's depthwise 3³ convolution, forward + backward, side by side.

Depthwise 3D convolutions (one 3³ filter per channel) run in stock kernels far from the
hardware's limit on CPU and on GPU (cuDNN has no fast 3D depthwise path in every version). This
times the same operation, with the same weights, four ways, at the shapes the network uses
(batch 2, 32 and 64 channels, full resolution):

* ``conv3d``: ``nn.Conv3d(groups=C)`` on a contiguous (NCDHW) tensor;
* ``conv3d_channels_last``: the same on a channels-last (NDHWC) tensor, as the app runs it;
* ``conv3d_channels_last_own_backward``: the same forward with the app's own backward
  (``bids_tspo.model.depthwise``: flipped-kernel input gradient, grouped-convolution weight
  gradient; the app uses it for CPU training);
* ``shifted_sum``: the sum of 27 shifted copies of the zero-padded input, each times its
  per-channel weight (plain tensor arithmetic, 27 passes over memory in eager mode);
* ``shifted_sum_compiled``: the same under ``torch.compile``, which can fuse the 27 terms into
  one stencil kernel (a Triton kernel on CUDA).

Every variant is checked against ``conv3d`` before it is timed. The whole network's eager
float32 training step is timed with the library's depthwise backward and with the app's own
(``network_eager_fp32``). The whole network is then compiled both ways
(``network_compiled``: the depthwise convolutions left to the convolution library, or written
as the shifted sum while compiling) and timed for a forward pass and a training step at batch
2, since inductor fuses a stencil with the GroupNorm + Swish before it and may recompute
those per tap. Writes ``results/depthwise_<device>_<size>.json``.

    python benchmarks/depthwise.py [--device cuda] [--size 96] [--threads 2] [--no-network]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from model_speed import sync, timed  # noqa: E402
from preprocess import machine  # noqa: E402

from bids_tspo.app.resources import reuse_freed_memory  # noqa: E402
from bids_tspo.model.depthwise import DepthwiseConv3d, _DepthwiseGrad  # noqa: E402
from bids_tspo.model.network import SeparableConv3d, TSPOUNet  # noqa: E402
from bids_tspo.model.loss import masked_loss  # noqa: E402


def shifted_sum(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Depthwise 3³ convolution (padding 1) as 27 shifted multiply-adds: the same result as
    ``F.conv3d(x, weight, bias, padding=1, groups=C)`` for ``weight`` of shape (C, 1, 3, 3, 3)."""
    if torch.is_autocast_enabled(x.device.type):  # elementwise ops are not autocast
        x = x.to(torch.get_autocast_dtype(x.device.type))
    d, h, w = x.shape[2:]
    padded = F.pad(x, (1, 1, 1, 1, 1, 1))
    out = bias.view(1, -1, 1, 1, 1).to(x.dtype).expand_as(x)
    for i in range(3):
        for j in range(3):
            for k in range(3):
                tap = weight[:, 0, i, j, k].view(1, -1, 1, 1, 1).to(x.dtype)  # (1, C, 1, 1, 1)
                out = out + padded[:, :, i:i + d, j:j + h, k:k + w] * tap
    return out


def variants(channels: int):
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1, groups=channels)
    compiled = torch.compile(shifted_sum, dynamic=False)
    return conv, {
        "conv3d": lambda x: conv(x.contiguous()),
        "conv3d_channels_last": lambda x: conv(x.contiguous(memory_format=torch.channels_last_3d)),
        "conv3d_channels_last_own_backward": lambda x: _DepthwiseGrad.apply(
            x.contiguous(memory_format=torch.channels_last_3d), conv.weight, conv.bias),
        "shifted_sum": lambda x: shifted_sum(x, conv.weight, conv.bias),
        "shifted_sum_compiled": lambda x: compiled(x, conv.weight, conv.bias),
    }


def measure(device, size: int, channels: int, dtype, repeats: int) -> dict:
    conv, fns = variants(channels)
    conv.to(device)
    x = torch.randn(2, channels, size, size, size, device=device, requires_grad=True)
    autocast = dict(device_type=device.type, dtype=torch.bfloat16,
                    enabled=dtype == torch.bfloat16)
    with torch.autocast(**autocast):
        reference = conv(x).float()
    out = {}
    for name, fn in fns.items():
        try:
            with torch.autocast(**autocast):
                y = fn(x).float()
            error = float((y - reference).detach().abs().max())

            def step(fn=fn):
                with torch.autocast(**autocast):
                    fn(x).float().sum().backward()

            seconds = timed(step, device, repeats)
            out[name] = {"ms_forward_backward": round(seconds * 1000, 2),
                         "max_abs_diff_vs_conv3d": error}
        except Exception as exc:  # noqa: BLE001 - a variant that fails is recorded, not fatal
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        x.grad = None
        sync(device)
    return out


@contextlib.contextmanager
def patched_forward(cls, forward):
    """``cls.forward`` replaced by ``forward`` inside the block."""
    original = cls.forward
    cls.forward = forward
    try:
        yield original
    finally:
        cls.forward = original


def depthwise_as_shifted_sum():
    """``SeparableConv3d`` computes its depthwise part as the shifted sum while compiling."""
    library = SeparableConv3d.forward

    def forward(self, x):
        if torch.compiler.is_compiling():
            dw = self.depthwise
            return self.pointwise(shifted_sum(x, dw.weight, dw.bias))
        return library(self, x)

    return patched_forward(SeparableConv3d, forward)


def network(device, size: int, repeats: int):
    """The compiled network, depthwise convolutions as the library's or as the shifted sum:
    one forward (batch 2, the flip pair) and one training step (batch 2, Adam), bfloat16
    autocast on CUDA, float32 on CPU (the app's training settings). Yields (name, timings)."""
    autocast = dict(device_type=device.type, dtype=torch.bfloat16,
                    enabled=device.type == "cuda")
    x = torch.rand(2, 1, size, size, size, device=device).contiguous(
        memory_format=torch.channels_last_3d)
    target = torch.rand_like(x)
    mask = torch.ones_like(x)
    for name, patch in (("conv3d", contextlib.nullcontext), ("shifted_sum",
                                                              depthwise_as_shifted_sum)):
        torch.manual_seed(0)
        model = TSPOUNet().to(device).to(memory_format=torch.channels_last_3d)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        torch._dynamo.reset()
        with patch():
            compiled = torch.compile(model)

            def forward():
                with torch.no_grad(), torch.autocast(**autocast):
                    return compiled.eval()(x)

            def train_step():
                compiled.train()
                with torch.autocast(**autocast):
                    loss = masked_loss(compiled(x), target, mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            start = time.perf_counter()
            forward()
            train_step()
            sync(device)
            yield name, {"compile_s": round(time.perf_counter() - start, 1),
                         "forward_ms": round(timed(forward, device, repeats) * 1000, 1),
                         "train_step_ms": round(timed(train_step, device, repeats) * 1000, 1)}


def depthwise_backward(own: bool):
    """Every ``DepthwiseConv3d`` with the app's own backward (``own``, on any device) or the
    library's."""

    def forward(self, x):
        if own and torch.is_grad_enabled():
            return _DepthwiseGrad.apply(x, self.weight, self.bias)
        return torch.nn.Conv3d.forward(self, x)

    return patched_forward(DepthwiseConv3d, forward)


def eager_training(device, size: int, repeats: int):
    """Eager float32 channels-last training steps (batch 2, Adam) of the whole network with
    the library's depthwise backward and with the app's own; yields (name, timings)."""
    x = torch.rand(2, 1, size, size, size, device=device).contiguous(
        memory_format=torch.channels_last_3d)
    target, mask = torch.rand_like(x), torch.ones_like(x)
    for own in (False, True):
        torch.manual_seed(0)
        model = TSPOUNet().to(device).to(memory_format=torch.channels_last_3d)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def train_step():
            loss = masked_loss(model(x), target, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        with depthwise_backward(own):
            seconds = timed(train_step, device, repeats)
        yield ("own_backward" if own else "library_backward"), {
            "train_step_ms": round(seconds * 1000, 1)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=None, help="3 on CPU, 20 on CUDA")
    p.add_argument("--no-network", action="store_true",
                   help="no compiled networks (the single convolutions and eager steps only)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results_heap_reuse = reuse_freed_memory()   # as the app (benchmarks/README: the allocator)
    device = torch.device(args.device)
    repeats = args.repeats or (20 if device.type == "cuda" else 3)
    results = {"machine": machine(), "device": str(device), "size": args.size,
               "batch": 2, "repeats": repeats, "heap_reuse": results_heap_reuse, "timings": {}}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name(device)
    out = Path(__file__).parent / "results" / f"depthwise_{device.type}_{args.size}.json"

    def write(complete: bool) -> None:  # after each part: a run cut off keeps what it has
        results["complete"] = complete
        out.write_text(json.dumps(results, indent=2) + "\n")

    for dtype in (torch.float32, torch.bfloat16):
        for channels in (32, 64):
            key = f"{str(dtype).split('.')[-1]}_{channels}ch"
            results["timings"][key] = measure(device, args.size, channels, dtype, repeats)
            print(key, json.dumps(results["timings"][key]), flush=True)
            write(False)
    results["network_eager_fp32"] = {}
    for name, timings in eager_training(device, args.size, repeats):
        results["network_eager_fp32"][name] = timings
        print("eager network", name, json.dumps(timings), flush=True)
        write(False)
    if not args.no_network:
        results["network_compiled"] = {}
        for name, timings in network(device, args.size, repeats):
            results["network_compiled"][name] = timings
            print("network", name, json.dumps(timings), flush=True)
            write(False)
    write(True)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
