"""Can a fold's network fit the patient effect on its own training subjects? (issue #24)

    nice python benchmarks/controls_insample.py WORKDIR CONTROL FOLD [FOLD ...]

A diagnostic of a finished controls run (benchmarks/controls.py), outside every
registration and never part of a verdict: it asks why a positive control fails, not whether
it passes. Each fold's network alone (a copy of the bundle that lists only that fold) is
applied by the app's own evaluation mode (``group --model``) to every session of the
control, and the patients-vs-controls Hedges' g of the thalamus (genotype-adjusted, ratios
to the session's brain mean, as ``group_region_stats.tsv``) is computed separately over the
fold's training subjects (in-sample: the network has seen their T1w and PET), its validation
subjects and its test subjects (out-of-fold), beside the truth's g in the same subjects.

Reading: if the synthesis misses the effect even in the subjects it was trained on, the
network cannot fit the T1w-to-PET relation of the patients at this grid, loss and budget
(more subjects cannot help); if it shows the effect in-sample and not out-of-fold, it fits
the training patients without learning a rule that transfers (generalisation).
Results: ``benchmarks/results/controls_reg<R>_insample_<control>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from controls import REGISTRATION
from preprocess import machine

REGIONS = ("Thalamus",)


def _fold_bundle(bundle: Path, fold: int, dest: Path) -> Path:
    """A copy of ``bundle`` listing only ``fold`` (its weights and, if any, its population
    map), so that the app's evaluation mode applies that network alone."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(bundle / f"fold-{fold}", dest / f"fold-{fold}")
    shutil.copy2(bundle / "splits.json", dest / "splits.json")
    meta = json.loads((bundle / "model.json").read_text())
    meta["folds_trained"] = [fold]
    (dest / "model.json").write_text(json.dumps(meta, indent=1))
    return dest


def _effects(regions: pd.DataFrame, subjects: list[str]) -> dict:
    """Thalamus g (truth and synthesis) over ``subjects``, as the app's region statistics."""
    from bids_tspo.evaluation.beyond import group_effects

    ids = {f"sub-{s}" for s in subjects}
    chosen = regions[regions.participant_id.isin(ids)]
    out = {}
    for region, df in chosen[chosen.region.str.contains("|".join(REGIONS))].groupby("region"):
        effect = group_effects(df)
        out[region] = {k: None if pd.isna(effect[k]) else round(float(effect[k]), 3)
                       for k in ("n_patients", "n_controls", "g_true", "g_true_p", "g_synth",
                                 "g_synth_p")} if effect else {}  # NaN: one group too small
    return out


def main() -> int:
    from bids_tspo.app.cli import main as app

    p = argparse.ArgumentParser()
    p.add_argument("workdir", type=Path)
    p.add_argument("control")
    p.add_argument("folds", type=int, nargs="+")
    args = p.parse_args()
    control = args.workdir.resolve() / args.control
    trained = control / f"out_paper_reg{REGISTRATION}" / "models"
    bundle = next(p.parent for p in trained.glob("*/model.json"))
    splits = json.loads((bundle / "splits.json").read_text())["folds"]
    results_path = (Path(__file__).parent / "results" /
                    f"controls_reg{REGISTRATION}_insample_{args.control}.json")
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results |= {"benchmark": "in-sample fit of each fold's network (#24, diagnostic, no "
                "verdict)", "control": args.control, "bundle": bundle.name,
                "machine": machine()}
    results.setdefault("folds", {})
    for fold in args.folds:
        base = control / f"insample_reg{REGISTRATION}" / f"fold-{fold}"
        out = base / "out"
        if not (out / "group_regions.tsv").is_file():
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(control / "prep", out)
            model = _fold_bundle(bundle, fold, base / "bundle")
            code = app([str(a) for a in (control / "bids", out, "group", "--model", model,
                                         "-w", base / "work", "--omp-nthreads", 1)])
            if code:
                results["folds"][str(fold)] = {"error": f"group --model exit {code}"}
                continue
        regions = pd.read_csv(out / "group_regions.tsv", sep="\t")
        split = next(f for f in splits if f["fold"] == fold)
        results["folds"][str(fold)] = {
            part: {"subjects": len(split[part]), "thalamus": _effects(regions, split[part])}
            for part in ("train", "val", "test")}
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        print(fold, json.dumps(results["folds"][str(fold)]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
