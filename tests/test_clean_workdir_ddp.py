"""--clean-workdir under torchrun: no rank reads a fold's old checkpoint as complete before
rank 0 has removed it (real gloo process group, 2 processes on CPU)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import torch.multiprocessing as mp

from bids_tspo.app.group_level import fresh_fold
from bids_tspo.model.train import is_complete


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fold_dir: str, seen: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        if rank == 0:
            time.sleep(2.0)  # rank 0 is slow to reach the fold (it writes the splits, ...)
        fresh_fold(Path(fold_dir), rank)
        with open(f"{seen}.{rank}", "w") as fh:  # what this rank then decides on
            json.dump({"complete": is_complete(fold_dir)}, fh)
    finally:
        dist.destroy_process_group()


def test_no_rank_sees_the_old_checkpoint(tmp_path):
    fold = tmp_path / "fold-0"
    fold.mkdir()
    (fold / "done.json").write_text("{}")
    (fold / "weights.pt").write_bytes(b"old")
    assert is_complete(fold)
    seen = tmp_path / "seen"
    mp.spawn(_worker, args=(2, _free_port(), str(fold), str(seen)), nprocs=2, join=True)
    decided = [json.loads((tmp_path / f"seen.{r}").read_text())["complete"] for r in (0, 1)]
    assert decided == [False, False]  # both ranks retrain the fold
    assert not fold.exists()


def test_single_process_needs_no_process_group(tmp_path):
    fold = tmp_path / "fold-1"
    fold.mkdir()
    (fold / "done.json").write_text("{}")
    fresh_fold(fold, 0)
    assert not fold.exists()
