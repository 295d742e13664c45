"""Diagnostic outside every registration (#24): the app's patients-vs-controls Hedges' g in
the thalami, recomputed on subsets of a controls run's subjects, so that a registration with
more subjects can be compared with an earlier one on the earlier one's own subjects.

    python benchmarks/controls_subset.py OUT NAME [--split 23]

OUT is a controls group output (``out_<model>_reg<R>``); subjects 1..split and split+1..
are the subsets. Uses :func:`bids_tspo.evaluation.beyond.group_effects` on the app's
``group_regions.tsv`` (genotype-adjusted, ratios to the brain mean, as the app's tables).
Results: ``benchmarks/results/controls_subset_<NAME>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bids_tspo.evaluation.beyond import group_effects
from bids_tspo.io.tables import read_tsv

KEYS = ("n_patients", "n_controls", "g_true", "g_synth", "g_synth_p")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("name")
    p.add_argument("--split", type=int, default=23)
    args = p.parse_args()
    df = read_tsv(args.out / "group_regions.tsv")
    number = df.participant_id.str[4:].astype(int)
    subsets = {"all": number > 0, f"sub-01..{args.split}": number <= args.split,
               f"sub-{args.split + 1}..": number > args.split}
    result = {"out": str(args.out), "subsets": {}}
    for name, keep in subsets.items():
        for region in ("Left_Thalamus", "Right_Thalamus"):
            effects = group_effects(df[keep & (df.region == region)])
            result["subsets"].setdefault(name, {})[region] = {k: round(float(effects[k]), 4)
                                                               for k in KEYS}
    target = Path(__file__).parent / "results" / f"controls_subset_{args.name}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["subsets"], indent=1))


if __name__ == "__main__":
    main()
