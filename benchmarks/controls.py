"""Negative and positive controls on the phantom: can the evaluation say "no"? (issue #24)

    nice python benchmarks/controls.py WORKDIR [--controls negative positive positive-strong]
        [--models paper deviation devloss] [--fold K] [--omp-nthreads N]

The recipe below (RECIPE: the phantoms and participant level, DATA, and the group level's
TRAINING) is registered before the first run of it and never tuned on its results
(``positive-strong`` was added post hoc after the third registration and is part of the
fourth, see CONTROLS). For each control a phantom is made (same seed, same cohort and PET;
only the T1w differs), the participant level runs once, and the group level trains each
model on copies of its outputs:

* negative control, ``--t1w-trace 0``: the T1w carries no trace of the inflammation, so the
  synthesis cannot know who is a patient. Pass: no region survives FDR (q < 0.05) for
  patients vs controls in the synthetic maps while the truth shows at least one, and the
  synthetic deviation from the population does not follow the true inflammation
  (``effect_r`` near zero).
* positive control, ``--t1w-trace 0.15`` (default): the synthesis should recover the patient
  effect: Hedges' g and q in the affected regions, against the truth's.

Every metric is reported against the measured PET (the app's tables: ``group_metrics.tsv``,
``group_region_stats.tsv``) and against the noise-free truth (``desc-truesmooth`` of
``derivatives/phantom-truth``, warped to the template with the participant level's
transform). ``effect_r``: per patient session, r over the template brain of the synthetic
deviation from the fold's population map with the true inflammation (the truth minus the
truth of the same phantom made with ``--patient-effect 0``). Genotype: Hedges' g of HAB vs
MAB in the brain-mean noise-free SUV and in the synthetic map (normalised targets cannot
carry it). The paper's model and ``--learn-deviation`` are compared head to head.
Results: ``benchmarks/results/controls_reg<REGISTRATION>[_<part>].json`` (rewritten after
each run, so a partial run leaves what it finished). The workdir keeps ``recipe.json`` (the
DATA part) and refuses other data; group outputs are ``out_<model>_reg<REGISTRATION>``, so
no registration reuses another's models except by a stated continuation (``CONTINUES``:
its complete folds train on to this registration's epochs). ``--fold K`` jobs train one
fold each, side by side; a run without ``--fold`` then analyses (its ``timings`` are that
run's; the folds' own are in their ``history.tsv``). The analysis is
:mod:`controls_analysis`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from controls_analysis import Truth, analyse, verdicts
from preprocess import machine

# Fixed in advance (written before the first run; never tuned on these results). The first
# to ninth registrations, verbatim: benchmarks/controls_registrations.md.
# Tenth registration (2026-12-06), written before any run of it. The ninth (--learn-deviation
# --deviation-loss 1; controls_reg9_*.json) passed the negative control, failed the registered
# positive one (synthetic thalamus g 0.9 / 0.8, q >= 0.44, against the truth's 3.6 / 3.5) and
# passed positive-strong with five regions the truth does not show; not adopted. The notes
# since the seventh name what remains: the 96^3 grid (needs a GPU; none is lent to this task)
# or, on the CPU, more training patients per fold, since the seventh's in-sample diagnostic
# (controls_insample.py) found each fold fitting the registered trace on its own 9-11
# training patients and carrying none of it to unseen subjects. Changed from the seventh (the
# paper's model at 24 subjects, controls_reg7_*.json, the head-to-head comparison): the
# subjects only, to 48 (make_cohort draws subject i from (seed, i), so sub-01..23 are drawn
# as in the seventh, sub-24 gains a PET, sub-25..47 are new with PET and sub-48 is MRI only:
# 47 with PET, 16 controls and 31 patients, 78 PET sessions), which trains each of the 5 folds
# on ~31 subjects, ~20 of them patients, plus ~6 for validation (the seventh: 15-16, 9-11 and
# 3), and the epochs to 23 so that each fold takes about the seventh's optimiser steps
# (~26 steps per epoch: ~600 per fold, against 540-630; counted from history.tsv after the
# runs): the number of training subjects is the change, not the budget, as from the sixth to
# the seventh. The group tests gain power too (47 subjects instead of 23), on the truth's side
# and the synthesis's alike; the negative control's verdict guards that. The paper's model
# (the app's default); target suvr, 32^3, rate, batch, seed and analysis unchanged, with the
# ninth's regions_false reported beside the positive verdicts (not changing them). CPU time
# decides the order (reason: CPU time, not results; no run at 48 subjects has been made): the
# positive control first (the one that has failed), then the negative, positive-strong only
# if time is left; a control whose folds do not all finish has no verdict, and a positive
# pass without the negative control's verdict at 48 subjects resolves nothing. Pass or fail,
# the verdicts are read as registered.
DATA = {"size": "small", "subjects": 48, "seed": 24, "noise": 1.0, "patient_effect": 4.0,
        "genotypes": ["HAB", "MAB"], "participant": "--sloppy"}
TRAINING = {"folds": 5, "epochs": 23, "image_size": 32, "lr": "1e-3",
            "batch_size": 2, "model_seed": 42, "target": "suvr"}
CONTINUES = None  # the registration whose complete folds this one trains on from (None: fresh)
RECIPE = DATA | TRAINING
# --t1w-trace of each control. "positive-strong" is outside the first three registrations: a
# post-hoc sensitivity check added on 2026-12-05 after the third registration's positive
# control failed with both models (seen), run with the third's recipe unchanged; it is part
# of the fourth to eighth registrations (above), whose verdicts it has. Its
# reason is the input side of that control: the preprocessed T1w's right-thalamus g was -2.3
# (q 0.42), the noise-free truth's 5.6, so the registered control cannot say whether the
# app misses a signal or the T1w holds too little of one. At 0.5 a severity-1 CLBP thalamus
# is 40 % darker in the T1w (a lesion, not a trace): if the app misses that too, the
# failure is the training's. Its third-registration verdict never replaces a registered one.
CONTROLS = {"negative": 0.0, "positive": 0.15, "positive-strong": 0.5}
MODELS = {"paper": [], "deviation": ["--learn-deviation"],
          "devloss": ["--learn-deviation", "--deviation-loss", "1"]}
REGISTERED_MODELS = ["paper"]  # the tenth's and 4th-7th; the ninth: ["devloss"]; 8th: ["deviation"]
REGISTRATION = 10  # earlier recipes' results: controls_reg1_*.json ... controls_reg9_*.json
RESULTS = Path(__file__).parent / "results" / f"controls_reg{REGISTRATION}.json"


def _same_data(work: Path) -> None:
    """Record the recipe's DATA part (phantoms, participant level) in the workdir, or stop if
    the workdir was made with other data. Group outputs are named by registration, so no
    training recipe reuses another's."""
    data = {key: RECIPE[key] for key in DATA}
    record = work / "recipe.json"
    if record.is_file() and json.loads(record.read_text()) != data:
        sys.exit(f"{work} was made with other data ({record}); use a new workdir")
    work.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(data, indent=1) + "\n")


def _app(argv: list[str]) -> int:
    from bids_tspo.app.cli import main as app

    return app([str(a) for a in argv])


def _phantom(bids: Path, trace: float, effect: float) -> None:
    from bids_tspo.phantom import make_phantom

    if not (bids / "participants.tsv").is_file():
        make_phantom(bids, RECIPE["subjects"], RECIPE["seed"], RECIPE["size"], progress=False,
                     t1w_trace=trace, noise=RECIPE["noise"], patient_effect=effect,
                     genotypes=tuple(RECIPE["genotypes"]))


def _output_dir(control: Path, model: str, suffix: str, continues: int | None) -> Path:
    """``out_<model><suffix>``: a copy of the participant level's outputs and, when this
    registration continues another, of that one's trained folds (``models/``). Made under a
    temporary name and renamed, so fold jobs started side by side make it once."""
    out = control / f"out_{model}{suffix}"
    if out.exists():
        return out
    tmp = control / f".{out.name}.{os.getpid()}"
    shutil.copytree(control / "prep", tmp)
    earlier = control / f"out_{model}_reg{continues}" / "models"
    if continues and earlier.is_dir():
        shutil.rmtree(tmp / "models", ignore_errors=True)
        shutil.copytree(earlier, tmp / "models")
    try:
        tmp.rename(out)
    except OSError:  # another fold job made it first
        shutil.rmtree(tmp)
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("workdir", type=Path)
    p.add_argument("--controls", nargs="+", default=list(CONTROLS), choices=list(CONTROLS))
    p.add_argument("--models", nargs="*", default=REGISTERED_MODELS, choices=list(MODELS),
                   help="none: only the phantoms and the participant level")
    p.add_argument("--fold", type=int, default=None, metavar="K",
                   help="train only fold K of each control (one job per core); a later run "
                        "without --fold reuses the complete folds and analyses")
    p.add_argument("--smoke", action="store_true",
                   help="check the script end to end on a tiny phantom (1 epoch); its results "
                        "go to controls_smoke*.json and say nothing about the app")
    p.add_argument("--explore-epochs", type=int, default=None, metavar="N",
                   help="exploratory, NOT the registered recipe: train N epochs instead "
                        "(outputs out_<model>_reg<R>_e<N>, results "
                        "controls_reg<R>_explore_e<N>*.json)")
    p.add_argument("--omp-nthreads", type=int, default=None, metavar="N",
                   help="threads of each group level (two parts side by side: 1 each)")
    args = p.parse_args()
    global RESULTS
    suffix, stem = f"_reg{REGISTRATION}", RESULTS.stem
    work = args.workdir.resolve()
    if args.explore_epochs:
        RECIPE["epochs"] = args.explore_epochs
        suffix += f"_e{args.explore_epochs}"
        stem += f"_explore_e{args.explore_epochs}"
    elif args.smoke:
        RECIPE.update(size="tiny", subjects=6, epochs=1, image_size=32)
        stem = "controls_smoke"
    continues = None if args.explore_epochs or args.smoke else CONTINUES
    _same_data(work)
    threads = ["--omp-nthreads", args.omp_nthreads] if args.omp_nthreads else []
    if args.controls != list(CONTROLS) or args.models != REGISTERED_MODELS:  # a part
        stem += f"_{'-'.join(args.controls)}_{'-'.join(args.models) or 'prep'}"
    RESULTS = RESULTS.with_name(f"{stem}.json")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results |= {"benchmark": "negative and positive controls on the phantom (#24)",
                "recipe": RECIPE, "controls": CONTROLS, "machine": machine()}
    results.setdefault("runs", {})
    bids_pe0 = work / "bids_pe0"  # the same phantom without the patient effect: the truth
    _phantom(bids_pe0, 0.0, 0.0)  # minus its truth is the inflammation (T1w not used)
    for control in args.controls:
        start = time.monotonic()
        bids, prep = work / control / "bids", work / control / "prep"
        _phantom(bids, CONTROLS[control], RECIPE["patient_effect"])
        done = work / control / "participant.done"  # not the dataset description: written
        if not done.is_file():                        # when the participant level starts
            code = _app([bids, prep, "participant", RECIPE["participant"], "-w",
                         work / control / "work_p"])
            if code:
                results["runs"][control] = {"error": f"participant level exit {code}"}
                continue
            done.touch()
        participant_s = round(time.monotonic() - start, 1)
        truth = Truth(bids, bids_pe0, prep)
        for model in args.models:
            start = time.monotonic()
            out = _output_dir(work / control, model, suffix, continues)
            fold = ["--fold", args.fold] if args.fold is not None else []
            code = _app([bids, out, "group", "-w", work / control / f"work_{model}{suffix}",
                         "--folds", RECIPE["folds"], "--epochs", RECIPE["epochs"],
                         "--image-size", RECIPE["image_size"], "--lr", RECIPE["lr"],
                         "--batch-size", RECIPE["batch_size"], "--seed", RECIPE["model_seed"],
                         "--target", RECIPE["target"], *MODELS[model], *threads, *fold,
                         *(["--continue-training"] if continues else [])])
            key = f"{control}/{model}"
            if not code and fold:
                continue  # training only: the run without --fold analyses
            if code:
                results["runs"][key] = {"error": f"group level exit {code}"}
            else:
                result = analyse(out, truth)
                result["verdict"] = verdicts(result, control)
                result["timings"] = {"participant_s": participant_s,
                                     "group_and_analysis_s": round(time.monotonic() - start, 1)}
                results["runs"][key] = result
                print(key, json.dumps(result["verdict"]), flush=True)
            results["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
            RESULTS.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
