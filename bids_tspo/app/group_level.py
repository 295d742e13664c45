"""Group level: subject-grouped K-fold training, the model bundle, out-of-fold evaluation.

Reads the participant derivatives in OUTPUT_DIR (and, for the group and genotype columns,
BIDS_DIR/participants.tsv). :func:`run_group_level` reads as its stages: find the paired
sessions, prepare them, split, train the folds, synthesise out of fold and evaluate. Folds with
a complete checkpoint are reused, so ``--fold k`` jobs followed by one plain ``group`` run give
the same result as one run. With ``--model`` nothing is trained: the given bundle is evaluated
on every session with PET.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm import tqdm

from .. import __version__
from ..errors import InputDataError, MissingInputError
from ..evaluation.baseline import training_mean
from ..evaluation.metrics_table import write_metrics
from ..evaluation.regions import write_region_tables
from ..evaluation.scoring import score_session
from ..evaluation.verdict import steps_per_fold
from ..io.atomic import write_json_atomic
from ..io.derivatives import SessionFiles, discover
from ..io.spaces import resolve_template
from ..io.tables import participants_table
from ..model.bundle import Bundle, fold_records, load_bundle, model_id_for, write_bundle_files
from ..model.data import loss_mask, prepare
from ..model.genotype import genotype_factors, neutralise
from ..model.infer import Network, ensemble, resolve_device
from ..model.maps import native_maps, write_maps
from ..model.network import UNetConfig
from ..model.prior import fold_populations, fold_priors, prior_box, with_prior
from ..model.splits import load_splits, make_splits, oof_plan
from ..model.train import (
    TrainSettings,
    barrier,
    distributed,
    few_steps_warning,
    is_complete,
    train_fold,
)
from .config import Config
from .parallel import Failure
from .resources import check_training_memory

LOG = logging.getLogger(__name__)


@dataclass
class Cohort:
    """The sessions of a group run: every paired one (``names``), the usable ones with their
    model-ready arrays, and those left out (with why)."""

    names: list[str]
    paired: list[SessionFiles]
    items: dict[str, dict]
    left_out: list[Failure]

    @property
    def excluded(self) -> dict[str, str]:
        return {f.name: f.message for f in self.left_out}


def run_group_level(config: Config) -> tuple[list[str], list[Failure]]:
    """Train (or evaluate) on every session with T1w and PET; returns the sessions and those
    left out (for the run's summary)."""
    device = resolve_device(config.device)  # first: under torchrun it binds this rank's GPU
    rank, world = distributed(device)        # before NCCL creates its communicator
    paired = paired_sessions(config)
    if config.model is not None:
        bundle = load_bundle(config.model)
        cohort = prepare_cohort(paired, bundle.image_size, bundle.target,
                                bundle.suvr_reference, config, rank)
        plan = [(sorted(bundle.folds), None, cohort.paired, [])]
        steps = steps_per_fold(bundle.meta.get("training", {}).get("per_fold"))
        evaluate(config, bundle, plan, cohort, device, folds_of={}, steps=steps)
        return cohort.names, cohort.left_out

    bundle_dir = config.output_dir / "models" / model_id_for(config)
    if config.continue_training or any(not is_complete(bundle_dir / f"fold-{k}")
                                       for k in _folds_requested(config)):
        check_training_memory(config.image_size, config.batch_size, device)
    cohort = prepare_cohort(paired, config.image_size, config.target, config.suvr_reference,
                            config, rank)
    splits = split(config, bundle_dir, cohort, rank)
    factors = genotype_factors(cohort.paired, splits, cohort.items)
    cfg = UNetConfig(in_channels=2, prior=True) if config.learn_deviation else UNetConfig()
    populations = (fold_populations(bundle_dir, splits, cohort.paired, config.target,
                                    config.suvr_reference, write=rank == 0)
                   if config.learn_deviation else {})
    train_folds(config, bundle_dir, splits, cohort, factors, cfg, device, world, rank,
                populations)
    if rank != 0:
        return cohort.names, cohort.left_out
    done = [f["fold"] for f in splits["folds"] if is_complete(bundle_dir / f"fold-{f['fold']}")]
    write_bundle_files(bundle_dir, config, cfg, splits, done, cohort.paired, factors,
                       excluded=cohort.excluded)
    if config.fold is not None or len(done) < len(splits["folds"]):
        missing = sorted(set(range(len(splits["folds"]))) - set(done))
        LOG.info("folds trained: %s; still to train: %s; run the group level without --fold "
                 "to evaluate", done, missing or "none")
        return cohort.names, cohort.left_out
    folds_of = {s: f["fold"] for f in splits["folds"] for s in f["test"]}
    summary = evaluate(config, load_bundle(bundle_dir), oof_plan(splits, cohort.paired), cohort,
                       device, folds_of, steps_per_fold(fold_records(bundle_dir, done)))
    if (summary.get("verdict") or {}).get("status") == "worse":
        LOG.warning("%s", summary["verdict"]["text"])
    write_bundle_files(bundle_dir, config, cfg, splits, done, cohort.paired, factors, summary,
                       cohort.excluded)
    LOG.info("model bundle: %s (bids_tspo %s)", bundle_dir, __version__)
    return cohort.names, cohort.left_out


def paired_sessions(config: Config) -> list[SessionFiles]:
    """Stage 1: the sessions in OUTPUT_DIR with a preprocessed T1w and an SUV map."""
    table = participants_table(config.bids_dir)
    sessions = discover(config.output_dir, table, config.group_column, config.genotype_column)
    paired = [s for s in sessions if s.suv is not None]
    if not paired:
        raise MissingInputError(f"{config.output_dir}: no session with both a preprocessed T1w "
                                "and an SUV map; run the participant level first")
    LOG.info("%d session(s) of %d subject(s) with T1w and PET", len(paired),
             len({s.subject for s in paired}))
    return paired


def prepare_cohort(paired: list[SessionFiles], size: int, target: str, reference: str,
                   config: Config, rank: int = 0) -> Cohort:
    """Stage 2: model-ready arrays of each paired session, cached in the work folder. A
    session whose PET cannot give a target (field of view misses the brain, reference region
    cut off, transform missing) is logged and left out; the others go on."""
    cache = config.work_dir / "group" / "cache"
    items, left_out = {}, []
    for files in tqdm(paired, desc="preparing volumes", disable=None if rank == 0 else True):
        try:
            items[files.name] = prepare(files, size, target, cache, reference)
        except (InputDataError, MissingInputError) as exc:
            LOG.error("%s: left out of the group level: %s", files.name, exc)
            left_out.append(Failure(files.name, str(exc), exc.exit_code))
    if not items:
        raise InputDataError(f"none of the {len(paired)} session(s) with PET is usable; the "
                             f"first: {left_out[0].message}")
    return Cohort([f.name for f in paired], [f for f in paired if f.name in items], items,
                  left_out)


def split(config: Config, bundle_dir: Path, cohort: Cohort, rank: int = 0) -> dict:
    """Stage 3: the subject-grouped, stratified folds: ``--splits``, the bundle's own
    ``splits.json`` when it has one, else new ones (written to the bundle)."""
    labels = {f.subject: f.group for f in cohort.paired}
    if all(v == "n/a" for v in labels.values()):
        LOG.warning("participants.tsv has no %r column: folds are not stratified",
                    config.group_column)
    existing = bundle_dir / "splits.json"
    if config.splits is not None:
        splits = load_splits(config.splits, set(labels))
    elif existing.is_file():
        splits = load_splits(existing, set(labels))
        if splits["k"] != config.folds:
            raise InputDataError(f"{existing}: made for {splits['k']} folds, not --folds "
                                 f"{config.folds}; remove the bundle folder to start again")
    else:
        splits = make_splits(labels, config.folds, config.seed, config.group_column)
    if rank == 0:
        write_json_atomic(existing, splits)
    return splits


def train_folds(config: Config, bundle_dir: Path, splits: dict, cohort: Cohort, factors: dict,
                cfg: UNetConfig, device, world: int, rank: int,
                populations: dict | None = None) -> None:
    """Stage 4: train each requested fold that has no complete checkpoint (or continues);
    ``populations``: each fold's population map (``--learn-deviation``)."""
    settings = TrainSettings(config.epochs, config.batch_size, config.lr, config.seed,
                             str(device), augment=True, progress=True,
                             deviation_loss=config.deviation_loss)
    warned = False
    for fold in splits["folds"]:
        k = fold["fold"]
        if k not in _folds_requested(config):
            continue
        fold_dir = bundle_dir / f"fold-{k}"
        if config.clean_workdir:
            fresh_fold(fold_dir, rank)
        if is_complete(fold_dir) and not _continues(fold_dir, config):
            continue
        contrast = factors["contrast"].get(str(k), {}) if config.target == "suvr" else {}
        population = (populations or {}).get(k)
        train = _fold_items(cohort, fold["train"], contrast, population)
        val = _fold_items(cohort, fold["val"], contrast, population)
        LOG.info("fold %d: training on %d session(s), validating on %d, testing %d subject(s)",
                 k, len(train), len(val), len(fold["test"]))
        warning = few_steps_warning(len(train), config.batch_size * world, config.epochs)
        if warning and rank == 0 and not warned:
            LOG.warning(warning)
            warned = True
        train_fold(fold_dir, train, val, cfg, settings)


def fresh_fold(fold_dir: Path, rank: int) -> None:
    """``--clean-workdir``: rank 0 removes the fold's checkpoint (retrain from scratch), and
    every rank waits until it is gone before reading :func:`is_complete` (else a rank that saw
    the old checkpoint would skip the fold while the others train it)."""
    if rank == 0 and fold_dir.exists():
        shutil.rmtree(fold_dir)
    barrier()


def evaluate(config: Config, bundle: Bundle, plan: list[tuple], cohort: Cohort, device,
             folds_of: dict[str, int], steps: int | None = None) -> dict:
    """Stage 5: synthesise each session of ``plan`` (written as ``desc-synth``), score it
    against its PET beside the fold's training-mean baseline, and write the group tables;
    returns the metrics summary for the bundle (with the verdict against the baseline;
    ``steps``: optimiser steps per fold, for its advice)."""
    tpl_mask = np.asarray(resolve_template(2).load()[1].dataobj) > 0.5
    net = Network(bundle.cfg, device, config.compile, config.precision)
    populations = bundle.populations() if bundle.cfg.prior else {}
    rows, baselines = [], {}
    scales = {name: item.get("pet_scale") for name, item in cohort.items.items()}
    for model_folds, cv_fold, test, train in plan:
        mean_train = (training_mean(train, bundle.target, tpl_mask, bundle.suvr_reference,
                                    scales) if train else None)
        label = f"fold {cv_fold}" if cv_fold is not None else "ensemble"
        for files in tqdm(test, desc=f"synthesis ({label})"):
            item = cohort.items[files.name]
            if mean_train is not None:
                baselines[files.subject] = mean_train
            if populations:
                item = fold_priors(files, item, {k: populations[k] for k in model_folds})
            mean, sd = ensemble(bundle, item, device, model_folds, genotype=files.genotype,
                                net=net)
            t1 = nib.load(files.t1w)
            brain = np.asarray(nib.load(files.mask).dataobj) > 0
            maps = native_maps(item, mean, sd if len(model_folds) > 1 else None,
                               bundle.target, t1, brain)
            write_maps(config.output_dir, files, maps, t1, brain, bundle, model_folds,
                       oof_fold=cv_fold, precision=net.precision)
            factor = (bundle.genotype_factor(cv_fold, files.genotype)
                      if cv_fold is not None and bundle.target == "suvr" else None)
            rows += score_session(files, maps["synth"],
                                  cv_fold if cv_fold is not None else "all", bundle.target,
                                  bundle.suvr_reference, mean_train, config.seed, factor,
                                  scales.get(files.name))
    _, tpl = write_region_tables(config.output_dir, cohort.paired, folds_of, bundle.target,
                                 config.seed, bundle.suvr_reference, baselines, scales)
    return write_metrics(config.output_dir, rows, tpl, steps)


def _folds_requested(config: Config) -> list[int]:
    return list(range(config.folds)) if config.fold is None else [config.fold]


def _fold_items(cohort: Cohort, subjects: list[str], contrast: dict[str, float],
                population=None) -> list:
    """The prepared sessions of ``subjects``; ``suvr`` targets made genotype-neutral with the
    fold's contrast factors (see :mod:`bids_tspo.model.genotype`); with the fold's
    ``population`` map as a second channel (``--learn-deviation``)."""
    chosen = []
    for f in cohort.paired:
        if f.subject in subjects:
            item = cohort.items[f.name]
            factor = contrast.get(f.genotype)
            if factor is not None:
                item = item | {"pet": neutralise(item["pet"], loss_mask(item), factor)}
            if population is not None:
                item = with_prior(item, prior_box(f, item, population))
            chosen.append(item)
    return chosen


def _continues(fold_dir: Path, config: Config) -> bool:
    """Whether a complete fold trains on: only with --continue-training, a checkpoint and fewer
    epochs than --epochs behind it; otherwise it is reused (with a warning when its epochs
    differ from --epochs)."""
    trained = json.loads((fold_dir / "done.json").read_text()).get("epochs")
    if (config.continue_training and isinstance(trained, int) and trained < config.epochs
            and (fold_dir / "checkpoint.pt").is_file()):
        LOG.info("%s: trained for %d epochs; continuing to %d (lr %g)", fold_dir.name, trained,
                 config.epochs, config.lr)
        return True
    if trained != config.epochs:
        LOG.warning("%s was trained for %s epochs, not --epochs %d; reused (--continue-training "
                    "trains on from its checkpoint, --clean-workdir retrains)", fold_dir.name,
                    trained, config.epochs)
    LOG.info("%s: complete checkpoint found, reused", fold_dir.name)
    return False
