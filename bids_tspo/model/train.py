"""Training of one fold: masked 0.5·BCE + 0.5·MSE, Adam, checkpoints, resume, DDP.

The losses are :mod:`bids_tspo.model.loss` (``--deviation-loss W`` adds W times the
deviation term to the paper's).

Every epoch re-seeds torch, the data order and the augmentation from ``(seed, epoch)``, so a
run resumed from its last complete epoch reaches the same weights as an uninterrupted one.
Checkpoints are written atomically after every epoch; ``weights.pt`` (a plain state dict,
loadable with ``weights_only=True``) holds the model with the best validation loss (the last
epoch when there is no validation part) and ``done.json`` marks a complete fold.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the batches are sharded with a DistributedSampler and the
model wrapped in DistributedDataParallel (gloo on CPU, NCCL on CUDA); rank 0 writes the files.

"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..evaluation.verdict import PAPER_STEPS  # the paper's ~4,100 steps per fold
from ..io.atomic import atomic_path, write_json_atomic, write_text_atomic
from .augment import BatchAugment
from .data import VolumeDataset
from .infer import memory_format
from .loss import deviation_loss, masked_loss
from .network import TSPOUNet, UNetConfig

LOG = logging.getLogger(__name__)
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "seconds", "lr")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 50
    batch_size: int = 2
    lr: float = 1e-4
    seed: int = 42
    device: str = "cpu"
    augment: bool = True
    progress: bool = True
    deviation_loss: float = 0.0  # W of W·(1 - r) (deviation_loss); 0: the paper's loss




def few_steps_warning(sessions: int, batch_size: int, epochs: int) -> str | None:
    """A warning when a fold makes under a quarter of the paper's optimiser steps: with few
    training sessions, ``--epochs 50`` leaves the network far from converged (on the phantom,
    the out-of-fold correlation still rose steeply after 360 steps; benchmarks/README).

    >>> few_steps_warning(163, 2, 50) is None
    True
    >>> few_steps_warning(11, 2, 60)[:41]
    '360 optimiser steps per fold (11 training'
    """
    per_epoch = -(-sessions // batch_size)
    steps = per_epoch * epochs
    if steps >= PAPER_STEPS // 4:
        return None
    more = -(-(PAPER_STEPS // 2) // (10 * per_epoch)) * 10  # half the paper's, in tens
    return (f"{steps} optimiser steps per fold ({sessions} training session(s), batch "
            f"{batch_size}, {epochs} epochs), the paper made ~{PAPER_STEPS}: the network may "
            f"stay undertrained; consider --epochs {more} or more")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def backend(device: torch.device) -> str:
    """The process group's backend for tensors on ``device``: NCCL for CUDA, gloo for the CPU
    (also on a GPU node: ``--device cpu`` under torchrun must not get NCCL, which cannot
    reduce CPU tensors).

    >>> backend(torch.device("cpu")), backend(torch.device("cuda", 0))
    ('gloo', 'nccl')
    """
    return "nccl" if device.type == "cuda" else "gloo"


def distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1); initialises the process group once,
    for tensors on ``device`` (:func:`backend`)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend(device))
    return dist.get_rank(), world


def barrier() -> None:
    """Wait for every rank under torchrun (nothing in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl":  # this rank's GPU (resolve_device set it)
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def _loader(dataset, settings: TrainSettings, epoch: int, rank: int, world: int, shuffle: bool):
    """Batches of in-memory arrays (no worker processes: augmentation runs on the device)."""
    generator = torch.Generator().manual_seed(settings.seed * 1000 + epoch)
    sampler = None
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                     seed=settings.seed, drop_last=False)
        sampler.set_epoch(epoch)
    return torch.utils.data.DataLoader(dataset, batch_size=settings.batch_size,
                                       shuffle=shuffle and sampler is None, sampler=sampler,
                                       generator=generator,
                                       pin_memory=settings.device.startswith("cuda"))


def _run_epoch(model, loader, device, optimizer=None, augment: BatchAugment | None = None,
               deviation_weight: float = 0.0) -> float:
    training = optimizer is not None
    model.train(training)
    total, count = torch.zeros((), device=device), 0  # summed on the device: no sync per step
    use_bf16 = device.type == "cuda"
    for batch in loader:
        t1, pet, mask = (batch[k].to(device, non_blocking=True) for k in ("t1", "pet", "mask"))
        if augment is not None:
            t1, pet, mask = augment(t1, pet, mask)
        t1 = t1.contiguous(memory_format=memory_format(device))
        with torch.set_grad_enabled(training), \
                torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            pred = model(t1)
            loss = masked_loss(pred, pet, mask)
            if deviation_weight:  # the prior is the input's last channel (--learn-deviation)
                loss = loss + deviation_weight * deviation_loss(pred, pet, t1[:, -1:], mask)
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total += loss.detach().float() * len(t1)
        count += len(t1)
    return float(total) / max(count, 1)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The augmentation seed of one epoch on one rank: a resumed run draws what an
    uninterrupted one would have drawn, and DDP ranks draw differently.

    >>> epoch_seed(42, 0), epoch_seed(42, 1), epoch_seed(42, 0, rank=1)
    (43008000, 43009024, 43008001)
    """
    return (seed * 1000 + epoch) * 1024 + rank


def is_complete(fold_dir: Path) -> bool:
    return (Path(fold_dir) / "done.json").is_file() and (Path(fold_dir) / "weights.pt").is_file()


def train_fold(fold_dir: Path, train_items: list[dict], val_items: list[dict],
               cfg: UNetConfig, settings: TrainSettings,
               on_epoch_end: Callable[[int], None] | None = None) -> dict:
    """Train (or resume) one fold into ``fold_dir``; returns the summary in done.json."""
    fold_dir = Path(fold_dir)
    fold_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(settings.device)
    rank, world = distributed(device)
    seed_everything(settings.seed)
    model = TSPOUNet(cfg).to(device).to(memory_format=memory_format(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    ckpt_path = fold_dir / "checkpoint.pt"
    start_epoch, best, history = 0, float("inf"), []
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # the saved state carries the old run's rate
            group["lr"] = settings.lr
        start_epoch, best, history = ckpt["epoch"] + 1, ckpt["best"], ckpt["history"]
        LOG.info("%s: resuming after epoch %d", fold_dir.name, ckpt["epoch"] + 1)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    train_set, val_set = VolumeDataset(train_items), VolumeDataset(val_items)
    bar = tqdm(range(start_epoch, settings.epochs), desc=f"{fold_dir.name}", unit="epoch",
               disable=True if not settings.progress or rank != 0 else None,  # None: TTY only
               initial=start_epoch,
               total=settings.epochs)
    for epoch in bar:
        seed_everything(settings.seed * 1000 + epoch)
        augment = (BatchAugment(epoch_seed(settings.seed, epoch, rank)) if settings.augment
                   else None)
        start = time.monotonic()
        train_loss = _run_epoch(net, _loader(train_set, settings, epoch, rank, world, True),
                                device, optimizer, augment, settings.deviation_loss)
        val_loss = (_run_epoch(model, _loader(val_set, settings, epoch, 0, 1, False), device,
                               deviation_weight=settings.deviation_loss)
                    if len(val_set) else float("nan"))
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                        "seconds": round(time.monotonic() - start, 2), "lr": settings.lr})
        score = val_loss if len(val_set) else train_loss
        if rank == 0:
            if score <= best or not len(val_set):
                best = score
                _save({k: v.detach().cpu() for k, v in model.state_dict().items()},
                             fold_dir / "weights.pt")
            _save({"epoch": epoch, "model": model.state_dict(),
                          "optimizer": optimizer.state_dict(), "best": best,
                          "history": history}, ckpt_path)
            _write_history(fold_dir / "history.tsv", history)
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        LOG.debug("%s epoch %d: train %.5f val %.5f", fold_dir.name, epoch + 1, train_loss,
                  val_loss)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    summary = {"epochs": settings.epochs, "best_score": best, "train_subjects_sessions":
               len(train_items), "val_sessions": len(val_items), "settings": asdict(settings),
               "world_size": world}
    if rank == 0:
        write_json_atomic(fold_dir / "done.json", summary)
    return summary


def _save(obj, path: Path) -> None:
    """``torch.save`` through the one atomic writer."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _write_history(path: Path, history: list[dict]) -> None:
    lines = ["\t".join(HISTORY_COLUMNS)]
    lines += ["\t".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c])
                        for c in HISTORY_COLUMNS) for row in history]
    write_text_atomic(path, "\n".join(lines) + "\n")
