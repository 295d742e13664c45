"""Cross-validated synthesis quality on the phantom: U-Net vs the training-mean baseline.

    python benchmarks/cv_phantom.py WORKDIR [--size small] [--subjects 12] [--epochs 30]
        [--image-size 48] [--folds 5] [--device auto]

Builds the phantom, runs the participant level (``--sloppy``) and the group level, and writes
``benchmarks/results/cv_<name>.json`` with the mean out-of-fold voxel Pearson r (and other
metrics) of the U-Net and of the baseline (mean training PET warped to each subject).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import machine  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("workdir", type=Path)
    p.add_argument("--size", default="small")
    p.add_argument("--subjects", type=int, default=12)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--target", default="minmax")
    p.add_argument("--lr", default="1e-4")
    p.add_argument("--name", default=None)
    args = p.parse_args()
    from bids_tspo.app.cli import main as app
    from bids_tspo.phantom import make_phantom

    bids, out, work = args.workdir / "bids", args.workdir / "out", args.workdir / "work"
    timings = {}
    start = time.monotonic()
    if not (bids / "participants.tsv").is_file():
        make_phantom(bids, args.subjects, args.seed, args.size, progress=False)
    timings["phantom_s"] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    code = app([str(bids), str(out), "participant", "--sloppy", "-w", str(work)])
    timings["participant_s"] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    code = code or app([str(bids), str(out), "group", "-w", str(work), "--epochs",
                        str(args.epochs), "--image-size", str(args.image_size), "--folds",
                        str(args.folds), "--device", args.device, "--target", args.target,
                        "--lr", args.lr])
    timings["group_s"] = round(time.monotonic() - start, 1)
    table = pd.read_csv(out / "group_metrics.tsv", sep="\t")
    cols = [c for c in table.columns if c.startswith(("pearson", "mse", "ssim", "baseline_pearson",
                                                       "baseline_mse", "deviation_r",
                                                       "normdiff", "percdiff"))]
    subjects = table.groupby("participant_id")[cols].mean()  # subjects as units (#23)
    name = args.name or (f"{args.size}{args.subjects}_e{args.epochs}_s{args.image_size}_"
                         f"{args.target}_lr{args.lr}_k{args.folds}")
    result = {"benchmark": "out-of-fold synthesis on the phantom", "name": name,
              "exit_code": code, "settings": vars(args) | {"workdir": str(args.workdir)},
              "sessions": int(len(table)), "means": table[cols].mean().round(4).to_dict(),
              "unet_beats_baseline_sessions": int(
                  (table.pearson_r > table.baseline_pearson_r).sum()),
              "subjects": int(len(subjects)),
              "subject_means": subjects.mean().round(4).to_dict(),
              "subject_medians": subjects.median().round(4).to_dict(),
              "unet_beats_baseline_subjects": int(
                  (subjects.pearson_r > subjects.baseline_pearson_r).sum()),
              "timings": timings, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    dest = Path(__file__).parent / "results" / f"cv_{name}.json"
    dest.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["means"], indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
