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

# Fixed in advance (written before the first run; never tuned on these results).
# Second registration (2026-12-04), written before any run of it: the first recipe (patient
# effect 2, all three genotypes, results in controls_reg1_*.json) could not
# decide, since its truth showed no region at q < 0.05 (noise-free Hedges' g at most 1.8 with
# 4 controls and 7 patients; one LAB, whose images are flat). Changed, on the truth's power
# alone, never on a model's numbers: LABs excluded as [11C]PBR28 studies exclude them at
# screening, the patient effect doubled (expected truth g ~3.6, q ~0.003), and every
# patients-vs-controls test adjusted for genotype (the app's evaluation.beyond and this
# script). The training recipe is unchanged.
# Changed AFTER its first analysis (post hoc, stated as such in benchmarks/README.md): the
# app's patients-vs-controls values became ratios to the session's brain mean, since the
# first analysis (controls_reg2_before_brain_mean_fix.json) found 90 of 110 regions
# "differing" in the true maps, an artifact of the min-max target; models not retrained.
# Seventh registration (below): 24 subjects instead of 12 (the first to sixth had 12).
DATA = {"size": "small", "subjects": 24, "seed": 24, "noise": 1.0, "patient_effect": 4.0,
        "genotypes": ["HAB", "MAB"], "participant": "--sloppy"}
# Third registration (2026-12-05), written before any run of it. The second (2 folds x 20
# epochs at 48^3: 60 optimiser steps per fold; results controls_reg2.json) passed the negative
# control and failed the positive one with both models, whose positive and negative runs were
# alike (r 0.669 vs 0.667): the networks had learnt nothing from the T1w at all, so the
# budget, not the control, was what it tested. Changed: the training budget only, to
# 200 epochs (stated as ">= 200" in the second registration's closing note, before any
# run at that budget gave a number; the one exploration at 200 epochs was stopped at epoch 82
# of fold 0 and read nothing), at 32^3 so that four runs fit this machine's two cores in
# two hours (reason: CPU time, not results; 200 and 32 were chosen in the previous session,
# and a 2-epoch timing run, controls_reg3_explore_e2_positive_paper.json, measured ~7 s per
# epoch and fold on one thread and decided nothing else). Same phantoms and participant
# level as the second registration (DATA). The analysis adds the input side (g of the preprocessed T1w, see
# controls_analysis), which was not part of any verdict and does not enter one.
# Fourth registration (2026-12-05), written before any run of it. The third (200 epochs, 600
# optimiser steps per fold; controls_reg3_*.json) passed the negative control and failed the
# positive one with both models; the input side showed the T1w carrying the effect only at
# trace 0.5, and its closing note named the next step: the paper's budget. Changed: the
# training budget only, to 1,400 epochs, the smallest multiple of 100 giving both folds at
# least the paper's ~4,100 steps (fold 0 trains on 6 sessions: 3 steps per epoch, 4,200;
# fold 1 on 7: 5,600). "positive-strong" (trace 0.5) joins the registration with its verdict,
# chosen on the input side (T1w thalamus g -4.7, q 0.001 vs -2.3, q 0.42 at 0.15), not on a
# model's numbers. The paper's model only (the default): --learn-deviation lost every
# comparison at 20 and 200 epochs and trains 1.7x slower, and the CPU time is what limits
# this registration (~2 x 1.5 h per control on this machine's two cores). Each fold continues
# from the third registration's 200-epoch checkpoint (--continue-training): training re-seeds
# every epoch from (seed, epoch), so this reaches an uninterrupted 1,400-epoch run's weights
# (tests/test_train.py); 32^3, data, rate and seed unchanged.
# Fifth registration (2026-12-05), written before any run of it. The fourth (1,400 epochs;
# controls_reg4_*.json) passed the negative control and failed positive-strong (synthetic
# thalamus g 1.3 / 1.0 against the truth's 2.9 / 2.7, up from 1.2 / 0.9 at 200 epochs): the
# budget is not the cause. A model-free look at the training targets after those verdicts
# (post hoc; benchmarks/target_ceiling.py, results/target_ceiling_reg4_positive-strong.json)
# found the min-max target's ceiling inside the effect: its 99.5th percentile -> 1, clipped,
# falls in the patients' inflamed thalamus (in 11 of 13 patient sessions 29-49 of the 39-50
# voxels at the ceiling lie in the effect's core; 13-18 mm from the brain's centre) and in
# controls' periphery (57-72 mm), so a patient's target is dimmed everywhere else (brain
# mean 0.35-0.46 against the controls' 0.45-0.48) and capped where the effect is: the focal
# increase reaches the target as a global change that the network must infer from a focal
# T1w darkening. (Correction before any run, 2026-12-05: this comment first said the network
# is scored against an unclipped truth; the app's tables clip the truth alike, the
# noise-free reference z-scores it.) Changed: the target only, to --target suvr
# (SUV over the whole-brain mean, / 3: the brain's maximum SUVR on these phantoms is 2.2-2.9,
# nothing clips), an option the app already has; fresh training at the third registration's
# budget (200 epochs: 1,400 moved g by 0.1), 32^3, data, rate, seed and analysis unchanged;
# all three controls, the paper's network only. Pass or fail, the verdicts are read as
# registered; the app's default stays the paper's min-max (the contract), and a pass of both
# controls makes --target suvr the README's and model card's advice for group comparisons.
# Sixth registration (2026-12-05), written before any run of it. The fifth (--target suvr;
# controls_reg5_*.json) passed the negative control and failed both positive ones (synthetic
# thalamus g 0.7 / 0.8 at trace 0.15, 1.8 / 1.5 at 0.5; 0 of 11 subjects above the
# population baseline), and its closing note named what remains: the training patients per
# fold. With 2 folds each network learnt from 4-5 training subjects, 2-3 of them patients
# (fold 0: sub-05, sub-11), so the patient effect had at most three examples to be learnt
# from. Changed: the folds only, to 5 (the app's default and the paper's), which trains each
# fold on 7-8 subjects, 4-6 of them patients (11-15 sessions; splits.json, seed 42), and the
# epochs to 100 so that each fold takes about the fifth's optimiser steps (6-8 steps per
# epoch: 600-800 per fold, against 600 and 800 there): the number of training subjects, not
# the optimiser's budget (1,400 epochs moved g by 0.1), is the change. 100 also fits the
# fifteen folds in this machine's two cores in ~1.5 h (reason: CPU time and matched steps,
# not results; no run at 5 folds has been made). Target suvr, 32^3, data, rate, seed and
# analysis unchanged; all three controls, the paper's network, run in the order positive,
# negative, positive-strong (the registered pair first). Pass or fail, the verdicts are read
# as registered; a control whose folds do not all finish has no verdict.
# Seventh registration (2026-12-06), written before any run of it. The sixth (5 folds;
# controls_reg6_*.json) passed the negative control, failed the registered positive one
# (synthetic thalamus g 0.7 / 0.1, like the negative control's) and recovered the strong
# trace's left thalamus against the measured PET only (g 3.6, q 0.03; noise-free q 0.086),
# up from g 1.8 with half the training patients per fold: the data per fold was a cause.
# Its closing note named what remains: more subjects, and 96^3 (CPU-days here, no GPU).
# Changed: the subjects only, to 24 (DATA; make_cohort draws subject i from (seed, i), so
# sub-01..11 are drawn as in the sixth, sub-12 gains a PET, sub-13..23
# are new with PET and sub-24 is MRI only: 23 with PET, 8 controls and 15 patients, 37 PET
# sessions), which trains each of the 5 folds on ~18 subjects, ~12 of them patients (~30
# sessions), and the epochs to 45 so that each fold takes about the sixth's optimiser steps
# again (~15 steps per epoch: ~650-800 per fold, against 600-800): the number of training
# subjects is the change, not the budget. The group tests gain power too (23 subjects
# instead of 11), on the truth's side and the synthesis's alike; the negative control's
# verdict guards that. CPU time decides the rest (reason: CPU time, not results; no run
# at 24 subjects has been made): the participant level of 2 x 24 subjects and ten folds
# (~10-13 min each, two side by side) fit this session, so the registered pair runs first
# (positive, then negative) and positive-strong only if time is left; a control whose folds
# do not all finish has no verdict. Target suvr, 32^3, rate, seed and analysis unchanged;
# the paper's network only. Pass or fail, the verdicts are read as registered.
# Eighth registration (2026-12-06), written before any run of it. The seventh (24 subjects;
# controls_reg7_*.json) passed the negative control, failed the registered positive one
# (synthetic thalamus g 0.4 / 0.2 against the truth's 3.6 / 3.5, with the input T1w's right
# thalamus at g -2.4, q 0.002) and passed positive-strong (g 3.5 / 2.3). A diagnostic outside
# every registration (controls_insample.py, no verdict) found each fold fitting the effect
# on its own training patients (55-90 % of the truth's g) and carrying none of it out of
# fold at trace 0.15: the failure is one of generalisation, the network spending its
# capacity on each training subject's whole map. Changed: the model only, to
# --learn-deviation (the deliverable 5: the fold's population map as a second input
# channel and an additive prior in logit space, so the network fits only where a person
# departs from the population), which has never been run at 5 folds or 24 subjects (it lost
# at 2 folds with 4-5 training subjects, third registration). Everything else is the
# seventh's (DATA, TRAINING, analysis; the same phantoms, participant level and splits), so
# its paper-model results are the head-to-head comparison: out-of-fold r against the
# population baseline, deviation_r and effect_r, and the controls' verdicts. CPU time decides
# the order (reason: CPU time, not results): positive first, then negative, positive-strong
# only if time is left; a control whose folds do not all finish has no verdict. Adoption as
# the app's default (the model card says which): only if it passes both registered controls
# AND beats the paper's model on median out-of-fold r and deviation_r in both. Pass or fail,
# the verdicts are read as registered.
# Ninth registration (2026-12-06), written before any run of it. The eighth (--learn-deviation;
# controls_reg8_*.json) passed the negative control, failed the registered positive one
# (synthetic thalamus g 0.8 / 1.0, q >= 0.44, against the truth's 3.6 / 3.5) and passed
# positive-strong with a region the truth did not show; not adopted. Its closing note named what
# remains: the 96^3 grid (needs a GPU; none is lent to this task) or a loss that weights each
# subject's deviation from the fold's population map. Changed: the loss only, to
# --learn-deviation --deviation-loss 1 (0.5 BCE + 0.5 MSE + 1 x (1 - r), r the correlation in
# the brain of the prediction's and the target's deviations from the fold's population map, per
# session; model/train.py): the MSE is dominated by the population pattern, which the prior
# already gives, and a patient's thalamic excess is a few 6-mm voxels of it; r counts the
# departure whatever its amplitude. W = 1 chosen before any run (the term lies in [0, 2], the
# paper's loss's own order), never tuned. Everything else is the eighth's (DATA, TRAINING; the
# same phantoms, participant level and splits), so the seventh's (paper's model) and eighth's
# (--learn-deviation) results are the head-to-head comparisons. Added before any run, as the
# eighth's note proposed: the positive controls' verdicts report ``regions_false`` (synthetic
# regions at q < 0.05 that the reference does not show) beside ``pass``, which they do not
# change (comparable with earlier registrations). CPU time decides the order: positive, then
# negative, positive-strong only if time is left; a control whose folds do not all finish has
# no verdict. Adoption as the app's default (the model card says which): only if it passes both
# registered controls with no false region in the positive one AND beats the paper's model
# (seventh) on median out-of-fold r and deviation_r in both. Pass or fail, the verdicts are
# read as registered. Amended before any result (2026-12-06): the plain correlation's gradient
# is singular where the untrained network starts, at the prior (~10^8 times the paper loss's;
# found in review after the first fold jobs had started, six, none past two epochs; only
# their loss columns were read, and their outputs deleted): the prediction's deviation variance is
# now floored at 1 % of the target's (model/loss.py, tests/test_deviation.py); W, data,
# recipe and analysis unchanged, and the folds train afresh.
TRAINING = {"folds": 5, "epochs": 45, "image_size": 32, "lr": "1e-3",
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
REGISTERED_MODELS = ["devloss"]  # the ninth's; the eighth: ["deviation"]; 4th-7th: ["paper"]
REGISTRATION = 9  # earlier recipes' results: controls_reg1_*.json ... controls_reg8_*.json
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
