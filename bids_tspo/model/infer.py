"""Synthesis with a model bundle: fold ensemble (+ left-right flips), mean and SD maps.

A bundle is self-describing (``model.json``: architecture, normalisation, folds); ensembling
swaps each fold's state dict into one network. Predictions live on the model box and are
mapped back onto the exact T1w grid and into template space (:mod:`bids_tspo.model.maps`).

>>> weights = TSPOUNet().state_dict()                 # bundles: load_bundle(OUTPUT_DIR/models/<id>)
>>> bundle = Bundle(Path("."), "example", {"normalisation": {"target": "minmax"}}, UNetConfig(),
...                 {0: weights, 1: weights})
>>> item = {"t1": np.zeros((1, 16, 16, 16), np.float32), "mask": np.ones((1, 16, 16, 16))}
>>> mean, sd = ensemble(bundle, item, torch.device("cpu"))
>>> mean.shape, float(sd.max())                      # two identical folds: no spread
((16, 16, 16), 0.0)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError, describe
from .bundle import Bundle, load_bundle
from .network import TSPOUNet, UNetConfig

LOG = logging.getLogger(__name__)


def resolve_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a usage error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA device is available "
                         "(use --device auto or cpu)")
    use_cuda = requested in ("auto", "cuda") and torch.cuda.is_available()
    device = torch.device("cpu")
    if use_cuda:  # under torchrun, one GPU per local rank (NCCL refuses two ranks on one GPU)
        ranks, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", "1")), torch.cuda.device_count()
        if ranks > gpus:
            raise UsageError(f"torchrun started {ranks} processes on this node but {gpus} GPU(s) "
                             f"are visible; use --nproc_per_node {gpus} (or --device cpu)")
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        device = torch.device("cuda", index)
        torch.backends.cudnn.benchmark = True  # fixed input shape: autotuned 3D conv kernels
    detail = (torch.cuda.get_device_name(device.index) if use_cuda
              else f"{torch.get_num_threads()} threads")
    LOG.info("device: %s (%s)", device, detail)
    return device


def memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last (NDHWC) on CPU, where the depthwise 3D convolutions run 2-3x faster in it;
    contiguous on CUDA, where cuDNN's are slower in it (H200, 96³: a float32 training step
    0.314 s channels-last vs 0.139 s contiguous, a forward 0.092 vs 0.062 s; benchmarks/).

    >>> memory_format(torch.device("cpu")) is torch.channels_last_3d
    True
    """
    return torch.contiguous_format if device.type == "cuda" else torch.channels_last_3d


def synthesis_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """bfloat16 autocast for synthesis, or None for float32. ``auto``: bfloat16 on CUDA and on
    CPUs with native bfloat16 (AVX512-BF16 or AMX: 2.2x faster per 96³ forward on 2 threads;
    maps differ from float32 by ~1e-3 of the 0-1 range), float32 elsewhere."""
    if precision == "fp32":
        return None
    if precision == "bf16" or device.type == "cuda":
        return torch.bfloat16
    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except AttributeError:  # older torch: no probe, stay exact
        native = False
    return torch.bfloat16 if native else None


@torch.no_grad()
def predict(net: Network, t1: np.ndarray | torch.Tensor, device: torch.device,
            flips: bool = True, batch_flips: bool | None = None) -> np.ndarray:
    """One network on one box (1,S,S,S) -> (S,S,S), averaged with its left-right flip, in the
    network's synthesis arithmetic. The flip pair runs as one batch of 2 on CUDA (fuller
    kernels) and as two passes on CPU (no faster batched there, benchmarks/README.md);
    ``batch_flips`` overrides."""
    return _forward(net, t1, device, flips, batch_flips).cpu().numpy()


def _forward(net: Network, t1: np.ndarray | torch.Tensor, device: torch.device,
             flips: bool = True, batch_flips: bool | None = None) -> torch.Tensor:
    """:func:`predict`, leaving the (S,S,S) float32 result on ``device``."""
    x = torch.as_tensor(t1, dtype=torch.float32, device=device)[None]
    if flips:
        x = torch.cat([x, torch.flip(x, dims=[2])])
    x = x.contiguous(memory_format=memory_format(device))
    batch_flips = device.type == "cuda" if batch_flips is None else batch_flips
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=net.dtype is not None):
        out = (net(x) if batch_flips else torch.cat([net(v[None]) for v in x])).float()
    if flips:
        out = 0.5 * (out[:1] + torch.flip(out[1:], dims=[2]))
    return out[0, 0]


class Network:
    """One evaluation network per run, into which fold state dicts are swapped; optionally
    ``torch.compile``-d once (loading a state dict copies into the same parameters, so the
    compiled graph is reused across folds and sessions).

    >>> net = Network(UNetConfig(), torch.device("cpu"))
    >>> net.load(TSPOUNet().state_dict()); net(torch.zeros(1, 1, 16, 16, 16)).shape
    torch.Size([1, 1, 16, 16, 16])
    """

    def __init__(self, cfg: UNetConfig, device: torch.device, compile: bool = False,
                 precision: str = "auto"):
        self.module = TSPOUNet(cfg).to(device).eval().to(memory_format=memory_format(device))
        self.call = self.module
        self.device = device
        self._on_device: dict[int, tuple[dict, dict]] = {}
        self.dtype = synthesis_dtype(device, precision)
        LOG.info("synthesis arithmetic: %s", self.precision)
        if compile and device.type == "cpu" and self.dtype is not None:
            LOG.info("--compile skipped: eager bfloat16 is faster on this CPU than compiled "
                     "code (benchmarks/README.md)")
            compile = False
        if compile:
            try:
                self.call = torch.compile(self.module)
                LOG.info("network compiled with torch.compile (first call builds it)")
            except Exception as exc:  # noqa: BLE001 - no toolchain / unsupported: stay eager
                LOG.warning("torch.compile unavailable (%s: %s); using eager mode",
                            type(exc).__name__, exc)

    @property
    def precision(self) -> str:
        return "bfloat16" if self.dtype is not None else "float32"

    def load(self, state: dict) -> None:
        """Copy a fold's weights in. Bundles load to the CPU; on a GPU each state dict is
        copied to the device once per run (kept with its source, so ``id`` stays unique), then
        swapped in device to device: no ~100 small host copies per fold and session."""
        if self.device.type != "cpu":
            source, on_device = self._on_device.get(id(state), (None, None))
            if source is not state:
                on_device = {k: v.to(self.device) for k, v in state.items()}
                self._on_device[id(state)] = (state, on_device)
            state = on_device
        self.module.load_state_dict(state)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.call is not self.module:
            try:
                return self.call(x)
            except Exception as exc:  # noqa: BLE001 - e.g. no C++ compiler on this machine
                LOG.warning("compiled network failed (%s); falling back to eager mode",
                            describe(exc))
                self.call = self.module
        return self.module(x)


@dataclass(frozen=True)
class Synthesis:
    """What a run needs to synthesise: the bundle, the device and one network."""

    bundle: Bundle
    device: torch.device
    net: Network

    @classmethod
    def load(cls, path: Path, device: str = "auto", compile: bool = False,
             precision: str = "auto") -> "Synthesis":
        bundle = load_bundle(path)
        torch_device = resolve_device(device)
        return cls(bundle, torch_device, Network(bundle.cfg, torch_device, compile, precision))


def ensemble(bundle: Bundle, item: dict, device: torch.device, folds: list[int] | None = None,
             flips: bool = True, genotype: str = "n/a", net: Network | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD (across fold models) of the predictions on ``item['t1']``, masked; each
    fold's output gets that fold's genotype factor when the bundle applies one. A
    ``--learn-deviation`` bundle takes each fold's prior from ``item['priors']``
    (:mod:`bids_tspo.model.prior`)."""
    from .genotype import restore

    net = net or Network(bundle.cfg, device)
    t1 = torch.as_tensor(item["t1"], dtype=torch.float32, device=device)  # uploaded once
    preds = []
    with torch.no_grad():
        for k in folds if folds is not None else sorted(bundle.folds):
            net.load(bundle.folds[k])
            x = t1
            if bundle.cfg.prior:
                x = torch.cat([t1[:1], torch.as_tensor(item["priors"][k], device=device)])
            pred = _forward(net, x, device, flips)
            preds.append(restore(pred, bundle.genotype_factor(k, genotype)))
        # on the device: one copy of two maps to the host (the stack on a GPU's host CPU
        # took 20-100 ms, as long as the whole ensemble is meant to take there)
        stack = torch.stack(preds) * torch.as_tensor(item["mask"][0], device=device)
        mean, sd = stack.mean(dim=0), stack.std(dim=0, correction=0)
    return mean.cpu().numpy(), sd.cpu().numpy()


def synthesize_session(out: Path, files, bundle: Bundle, device: torch.device,
                       cache_dir: Path | None = None, net: Network | None = None) -> list[Path]:
    """Fold-ensemble synthesis (mean + SD) for one preprocessed session."""
    import nibabel as nib

    from .data import prepare
    from .maps import native_maps, write_maps

    item = prepare(files, bundle.image_size, bundle.target, cache_dir, bundle.suvr_reference)
    if bundle.cfg.prior:
        from .prior import fold_priors

        item = fold_priors(files, item, bundle.populations())
    net = net or Network(bundle.cfg, device)
    mean, sd = ensemble(bundle, item, device, genotype=files.genotype, net=net)
    t1 = nib.load(files.t1w)
    brain = np.asarray(nib.load(files.mask).dataobj) > 0
    maps = native_maps(item, mean, sd, bundle.target, t1, brain)
    return write_maps(out, files, maps, t1, brain, bundle, sorted(bundle.folds),
                      precision=net.precision)
