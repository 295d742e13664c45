"""Training: masked loss, resume after a kill equals an uninterrupted run, gloo DDP."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from bids_tspo.model.network import UNetConfig
from bids_tspo.model.loss import masked_loss
from bids_tspo.model.train import TrainSettings, is_complete, train_fold

CFG = UNetConfig(channels=8, groups=4, out_groups=4)


def _items(n=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        t1 = rng.random((1, size, size, size)).astype(np.float32)
        mask = np.zeros((1, size, size, size), np.float32)
        mask[:, 3:-3, 3:-3, 3:-3] = 1
        items.append({"name": f"s{i}", "t1": t1 * mask, "pet": (0.5 * t1 + 0.2) * mask,
                      "mask": mask, "affine": np.eye(4)})
    return items


def test_loss_ignores_voxels_outside_the_mask():
    torch.manual_seed(0)
    pred, target = torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8)
    mask = torch.zeros_like(pred)
    mask[..., 2:6, 2:6, 2:6] = 1
    before = masked_loss(pred, target, mask)
    pred2 = pred.clone()
    pred2[mask == 0] = 0.999
    assert torch.isclose(masked_loss(pred2, target, mask), before)
    inside = masked_loss(pred[..., 2:6, 2:6, 2:6], target[..., 2:6, 2:6, 2:6],
                         torch.ones(1, 1, 4, 4, 4))
    assert torch.isclose(before, inside)
    assert float(masked_loss(target, target, mask)) < float(before)


class Killed(Exception):
    pass


def _weights(path):
    return torch.load(path / "weights.pt", weights_only=True)


def test_loss_leaves_autocast_for_binary_cross_entropy(monkeypatch):
    """CUDA autocast refuses F.binary_cross_entropy ("unsafe to autocast"); the CPU does not, so
    the refusal is modelled here: the loss must switch autocast off before calling it."""
    import torch.nn.functional as F

    real = F.binary_cross_entropy

    def refuse_under_autocast(*args, **kwargs):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("binary_cross_entropy is unsafe to autocast")
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "binary_cross_entropy", refuse_under_autocast)
    rng = torch.Generator().manual_seed(0)
    pred = torch.rand((2, 1, 8, 8, 8), generator=rng)
    target = torch.rand((2, 1, 8, 8, 8), generator=rng)
    mask = (torch.rand((2, 1, 8, 8, 8), generator=rng) > 0.3).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = masked_loss(pred.bfloat16(), target, mask)
    assert loss.dtype == torch.float32
    expected = masked_loss(pred.bfloat16().float(), target, mask)
    assert torch.allclose(loss, expected)


def test_each_local_rank_gets_its_own_gpu(monkeypatch):
    """Under torchrun every rank must use cuda:LOCAL_RANK (NCCL refuses two ranks on one GPU);
    CUDA itself is stood in for, the selection logic is what is checked."""
    from bids_tspo.errors import UsageError
    from bids_tspo.model.infer import resolve_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: f"GPU {index}")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert resolve_device("cuda") == torch.device("cuda", 2)
    assert chosen == [0, 2]
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # more ranks than GPUs: a clear usage error
    with pytest.raises(UsageError, match="--nproc_per_node 4"):
        resolve_device("auto")


def _full_and_resumed(tmp_path, items, settings, validation: int = 1):
    """The fold trained in one go into ``full``, and into ``resumed`` killed after the first
    epoch and resumed; returns the two folders."""
    train, val = items[:-validation], items[-validation:]
    train_fold(tmp_path / "full", train, val, CFG, settings)

    def kill_after_first(epoch):
        if epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        train_fold(tmp_path / "resumed", train, val, CFG, settings,
                   on_epoch_end=kill_after_first)
    assert not is_complete(tmp_path / "resumed")
    assert not list((tmp_path / "resumed").glob(".*.tmp"))
    train_fold(tmp_path / "resumed", train, val, CFG, settings)
    assert is_complete(tmp_path / "resumed")
    return tmp_path / "full", tmp_path / "resumed"


def test_resume_after_kill_reaches_same_weights(tmp_path):
    settings = TrainSettings(epochs=3, batch_size=2, lr=1e-3, seed=5, progress=False)
    _full_and_resumed(tmp_path, _items(), settings)
    history = (tmp_path / "resumed" / "history.tsv").read_text().splitlines()
    assert len(history) == 4  # header + 3 epochs, none repeated
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_bf16_augmented_and_resumable(tmp_path):
    """The CUDA path for real: pinned batches, augmentation on the GPU, bfloat16 autocast with
    the loss outside it; a resumed run still reaches the uninterrupted run's weights."""
    settings = TrainSettings(epochs=2, batch_size=2, lr=1e-3, seed=5, progress=False,
                             device="cuda")
    full, _ = _full_and_resumed(tmp_path, _items(n=5, size=24), settings)
    assert np.isfinite(json.loads((full / "done.json").read_text())["best_score"])
    assert len((tmp_path / "resumed" / "history.tsv").read_text().splitlines()) == 3
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    # cuDNN's backward is not bit-exact; Adam moves each weight by at most ~lr per step
    assert all(torch.allclose(a[k], b[k], atol=1e-2) for k in a)


def test_resume_with_a_new_learning_rate_uses_it(tmp_path):
    """A run extended with another --lr (a second, slower phase) trains at that rate; the
    optimiser state saved in the checkpoint would otherwise bring the old one back."""
    items = _items()
    first = TrainSettings(epochs=1, batch_size=2, lr=1e-3, seed=5, progress=False)
    train_fold(tmp_path, items[:3], items[3:], CFG, first)
    (tmp_path / "done.json").unlink()
    train_fold(tmp_path, items[:3], items[3:], CFG, replace(first, epochs=2, lr=1e-4))
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert [g["lr"] for g in ckpt["optimizer"]["param_groups"]] == [1e-4]
    rows = (tmp_path / "history.tsv").read_text().splitlines()
    assert rows[1].split("\t")[-1] == "0.001" and rows[2].split("\t")[-1] == "0.0001"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    settings = TrainSettings(epochs=2, batch_size=1, lr=1e-3, seed=1, progress=False)
    train_fold(out, _items(4)[:4], [], CFG, settings)
    import torch.distributed as dist

    dist.destroy_process_group()


def test_cpu_training_under_torchrun_gets_gloo_on_a_gpu_node(monkeypatch):
    """``--device cpu`` under torchrun on a machine with GPUs: the process group must be gloo
    (NCCL cannot reduce CPU tensors; on the lent H200 the two-process test below crashed in
    NCCL before this fix)."""
    import torch.distributed as dist

    from bids_tspo.model.train import distributed

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: chosen.append(backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed(torch.device("cpu")) == (1, 2)
    assert distributed(torch.device("cuda", 0)) == (1, 2)
    assert chosen == ["gloo", "nccl"]


def test_two_process_gloo_ddp_trains(tmp_path):
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    assert is_complete(out)
    done = (out / "done.json").read_text()
    assert '"world_size": 2' in done
    assert len((out / "history.tsv").read_text().splitlines()) == 3
