"""The same out-of-fold maps scored the old way and the new way (issue #23): why the numbers moved.

    python benchmarks/rescore_metrics.py OUTPUT_DIR [--name NAME]

OUTPUT_DIR: a finished group level (``minmax`` target; e.g. ``cv_phantom.py``'s ``out``).
Old: truth min-max normalised to its extreme voxels on the T1w grid, the U-Net map taken as it
is, the baseline rescaled to its own extremes, NormDiff without a low-signal threshold. New
(the app now): the truth in the target's units with the session's own normalisation made on
the model box (``pet_scale``), U-Net map and baseline as they are, NormDiff on the signal
voxels. A "perfect" row scores the session's own box target mapped back to the T1w grid by
the app's own path (what a model that learnt the target exactly would write).
Writes ``benchmarks/results/rescore_<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_tspo.evaluation import metrics as M
from bids_tspo.evaluation.baseline import baseline_map, training_mean
from bids_tspo.evaluation.scoring import session_truth
from bids_tspo.io.derivatives import discover, pet_path
from bids_tspo.io.spaces import resolve_template
from bids_tspo.model.data import prepare
from bids_tspo.model.maps import native_maps
from bids_tspo.model.splits import oof_plan

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import save_result  # noqa: E402


def _old_normdiff(rec, true, mask):
    r, t = rec[mask], true[mask]
    ok = (r + t) > 1e-8
    return float(np.mean((r[ok] - t[ok]) / (r[ok] + t[ok])))


def _own_extremes(image, scored):
    inside = image[scored]
    return (image - inside.min()) / max(float(np.ptp(inside)), 1e-6) * scored


def _scores(rec, truth, scored, normdiff):
    return {"pearson_r": M.pearson(rec, truth, scored), "mse": M.mse(rec, truth, scored),
            "normdiff": normdiff(rec, truth, scored), "percdiff": M.percdiff(rec, truth, scored)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--name", default="phantom")
    args = p.parse_args()
    bundle = next(d for d in sorted((args.out / "models").iterdir()) if d.is_dir())
    splits = json.loads((bundle / "splits.json").read_text())
    size = json.loads((bundle / "model.json").read_text())["normalisation"]["image_size"]
    sessions = [s for s in discover(args.out) if s.suv is not None]
    items = {f.name: prepare(f, size, "minmax") for f in sessions}
    scales = {name: item["pet_scale"] for name, item in items.items()}
    tpl_mask = np.asarray(resolve_template(2).load()[1].dataobj) > 0.5
    rows = []
    for _, fold, test, train in oof_plan(splits, sessions):
        mean_old = training_mean(train, "minmax", tpl_mask)
        mean_new = training_mean(train, "minmax", tpl_mask, scales=scales)
        for f in test:
            synth_file = pet_path(args.out, f.record, desc="synth", space="T1w")
            if not synth_file.is_file():
                continue
            synth = np.asarray(nib.load(synth_file).dataobj, np.float32)
            t1, scored, _, truth = session_truth(f, "minmax", "wholebrain", scales[f.name])
            suv = np.asarray(nib.load(f.suv).dataobj, np.float32)
            old_truth = _own_extremes(suv, scored)
            brain = np.asarray(nib.load(f.mask).dataobj) > 0
            perfect = native_maps(items[f.name], items[f.name]["pet"][0], None, "minmax", t1,
                                  brain)["synth"]
            row = {"session": f.name, "fold": fold}
            for model, new, old in (
                    ("unet", synth, synth),
                    ("baseline", baseline_map(f, mean_new),
                     _own_extremes(baseline_map(f, mean_old), scored)),
                    ("perfect", perfect, perfect)):
                row[model] = {"old": _scores(old, old_truth, scored, _old_normdiff),
                              "new": _scores(new, truth, scored, M.normdiff)}
            rows.append(row)
    means = {model: {way: {k: float(np.mean([r[model][way][k] for r in rows]))
                           for k in rows[0][model][way]} for way in ("old", "new")}
             for model in ("unet", "baseline", "perfect")}
    result = {"benchmark": "old vs new evaluation units on the same maps", "name": args.name,
              "sessions": len(rows), "means": means, "per_session": rows}
    save_result(result, f"rescore_{args.name}.json", means)
    return 0


if __name__ == "__main__":
    sys.exit(main())
