"""How fast the U-Net learns: one fold of a ``cv_phantom.py`` work folder, scored every few epochs.

    python benchmarks/learning_curve.py WORKDIR [--fold 0] [--epochs 60] [--lr 1e-3]
        [--schedule constant|cosine] [--warmup 0] [--every 10] [--threads 2] [--name NAME]

Trains the paper's network on the fold's training sessions (the group level's augmentation and
loss) and reports, every ``--every`` epochs, the mean Pearson r between prediction and target
inside the brain on the fold's test sessions in the model box (no resampling to the T1w grid)
and the validation loss. Writes ``benchmarks/results/learning_curve_<name>.json``. Needs the
participant derivatives and a bundle (its ``splits.json``; the first in WORKDIR/out/models) of
a finished ``cv_phantom.py`` run in WORKDIR.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import machine  # noqa: E402


def _scores(model, test: list[dict], val: list[dict]) -> tuple[float, float]:
    from bids_tspo.model.loss import masked_loss

    model.eval()
    rs, losses = [], []
    with torch.no_grad():
        for item in test:
            pred = model(torch.as_tensor(item["t1"])[None])[0, 0].numpy()
            inside = item["mask"][0] > 0
            rs.append(np.corrcoef(pred[inside], item["pet"][0][inside])[0, 1])
        for item in val:
            losses.append(float(masked_loss(model(torch.as_tensor(item["t1"])[None]),
                                            torch.as_tensor(item["pet"])[None],
                                            torch.as_tensor(item["mask"])[None])))
    return float(np.mean(rs)), float(np.mean(losses)) if losses else float("nan")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("workdir", type=Path)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--warmup", type=int, default=0, help="epochs of linear warm-up")
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--name", default=None)
    args = p.parse_args()
    from bids_tspo.app.parallel import limit_threads
    from bids_tspo.io.derivatives import discover
    from bids_tspo.model.augment import BatchAugment
    from bids_tspo.model.data import VolumeDataset, prepare
    from bids_tspo.model.network import TSPOUNet, UNetConfig
    from bids_tspo.model.loss import masked_loss
    from bids_tspo.model.train import epoch_seed

    limit_threads(args.threads)
    out = args.workdir / "out"
    bundle = next(out.glob("models/*/model.json")).parent
    size = json.loads((bundle / "model.json").read_text())["normalisation"]["image_size"]
    fold = json.loads((bundle / "splits.json").read_text())["folds"][args.fold]
    files = [f for f in discover(out) if f.suv is not None]
    items = {f.name: prepare(f, size, "minmax", args.workdir / "work" / "group" / "cache")
             for f in files}

    def part(key: str) -> list[dict]:
        return [items[f.name] for f in files if f.subject in fold.get(key, [])]

    train, val, test = part("train"), part("val"), part("test")
    torch.manual_seed(args.seed)
    model = TSPOUNet(UNetConfig()).to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    per_epoch = math.ceil(len(train) / 2)
    total, warm = per_epoch * args.epochs, per_epoch * args.warmup

    def lr_at(step: int) -> float:
        if step < warm:
            return args.lr * (step + 1) / warm
        if args.schedule == "cosine":
            return args.lr * 0.5 * (1 + math.cos(math.pi * step / total))
        return args.lr

    curve, step, start = [], 0, time.monotonic()
    for epoch in range(args.epochs):
        data, augment = VolumeDataset(train), BatchAugment(epoch_seed(args.seed, epoch))
        model.train()
        for batch in torch.utils.data.DataLoader(
                data, batch_size=2, shuffle=True,
                generator=torch.Generator().manual_seed(epoch)):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            t1, pet, mask = augment(batch["t1"], batch["pet"], batch["mask"])
            t1 = t1.contiguous(memory_format=torch.channels_last_3d)
            loss = masked_loss(model(t1), pet, mask)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        if (epoch + 1) % args.every == 0 or epoch + 1 == args.epochs:
            r, val_loss = _scores(model, test, val)
            curve.append({"epoch": epoch + 1, "steps": step, "test_r_box": round(r, 4),
                          "val_loss": round(val_loss, 5),
                          "seconds": round(time.monotonic() - start, 1)})
            print(json.dumps(curve[-1]), flush=True)
    name = args.name or f"{args.workdir.name}_f{args.fold}_{args.schedule}_lr{args.lr:g}"
    result = {"benchmark": "learning curve of one fold (box-level r on its test sessions)",
              "name": name, "settings": vars(args) | {"workdir": str(args.workdir)},
              "bundle": bundle.name, "image_size": size,
              "sessions": {"train": len(train), "val": len(val), "test": len(test)},
              "curve": curve, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    dest = Path(__file__).parent / "results" / f"learning_curve_{name}.json"
    dest.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
