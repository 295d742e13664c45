"""Group level: subject-grouped K-fold training, the model bundle, out-of-fold evaluation.

Reads the participant derivatives in OUTPUT_DIR (and, for the group and genotype columns,
BIDS_DIR/participants.tsv). Folds with a complete checkpoint are reused, so ``--fold k`` jobs
followed by one plain ``group`` run give the same result as one run. With ``--model`` nothing
is trained: the given bundle is evaluated on every session with PET.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from ..io.tables import participants_table
from ..model.bundle import load_bundle, model_id_for, write_bundle_files
from .config import Config
from ..model.data import discover, loss_mask, prepare
from ..io.derivatives import write_json_atomic
from ..errors import InputDataError, MissingInputError
from ..evaluation.scoring import evaluate_sessions, oof_plan
from ..model.genotype import genotype_factors, neutralise
from ..model.infer import resolve_device
from ..model.network import UNetConfig
from .parallel import Failure
from ..model.splits import load_splits, make_splits
from .resources import check_training_memory
from ..evaluation.regions import write_region_tables
from ..evaluation.tables import write_metrics
from ..model.train import TrainSettings, distributed, few_steps_warning, is_complete, train_fold

LOG = logging.getLogger(__name__)


def _strata(paired, column: str) -> dict[str, str]:
    labels = {f.subject: f.group for f in paired}
    if all(v == "n/a" for v in labels.values()):
        LOG.warning("participants.tsv has no %r column: folds are not stratified", column)
    return labels


def _fold_items(items: dict, paired, subjects: list[str], contrast: dict[str, float]) -> list:
    """The prepared sessions of ``subjects``; ``suvr`` targets made genotype-neutral with the
    fold's contrast factors (see :mod:`bids_tspo.model.genotype`)."""
    chosen = []
    for f in paired:
        if f.subject in subjects:
            item = items[f.name]
            factor = contrast.get(f.genotype)
            if factor is not None:
                item = item | {"pet": neutralise(item["pet"], loss_mask(item), factor)}
            chosen.append(item)
    return chosen


def prepare_usable(paired, size: int, target: str, cache: Path, reference: str,
                   progress: dict) -> tuple[dict, list[Failure]]:
    """Model-ready arrays of each paired session, and the sessions left out: a session whose
    PET cannot give a target (field of view misses the brain, reference region cut off,
    transform missing) is logged and left out; the others are still trained on."""
    items, left_out = {}, []
    for files in tqdm(paired, **progress):
        try:
            items[files.name] = prepare(files, size, target, cache, reference)
        except (InputDataError, MissingInputError) as exc:
            LOG.error("%s: left out of the group level: %s", files.name, exc)
            left_out.append(Failure(files.name, str(exc), exc.exit_code))
    if not items:
        raise InputDataError(f"none of the {len(paired)} session(s) with PET is usable; the "
                             f"first: {left_out[0].message}")
    return items, left_out


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


def _splits(config: Config, bundle_dir: Path, labels: dict[str, str]) -> dict:
    existing = bundle_dir / "splits.json"
    if config.splits is not None:
        return load_splits(config.splits, set(labels))
    if existing.is_file():
        splits = load_splits(existing, set(labels))
        if splits["k"] != config.folds:
            raise InputDataError(f"{existing}: made for {splits['k']} folds, not --folds "
                                 f"{config.folds}; remove the bundle folder to start again")
        return splits
    return make_splits(labels, config.folds, config.seed, config.group_column)


def run_group_level(config: Config) -> tuple[list[str], list[Failure]]:
    """Train (or evaluate) on every session with T1w and PET; returns the sessions and those
    left out (for the run's summary)."""
    device = resolve_device(config.device)  # first: under torchrun it binds this rank's GPU
    rank, world = distributed()              # before NCCL creates its communicator
    table = participants_table(config.bids_dir)
    sessions = discover(config.output_dir, table, config.group_column, config.genotype_column)
    paired = [s for s in sessions if s.suv is not None]
    if not paired:
        raise MissingInputError(f"{config.output_dir}: no session with both a preprocessed T1w "
                                "and an SUV map; run the participant level first")
    LOG.info("%d session(s) of %d subject(s) with T1w and PET", len(paired),
             len({s.subject for s in paired}))
    cache = config.work_dir / "group" / "cache"

    progress = dict(desc="preparing volumes", disable=None if rank == 0 else True)
    if config.model is not None:  # evaluation of a given bundle: its full ensemble
        bundle = load_bundle(config.model)
        items, left_out = prepare_usable(paired, bundle.image_size, bundle.target, cache,
                                         bundle.suvr_reference, progress)
        names = [f.name for f in paired]
        paired = [f for f in paired if f.name in items]
        plan = [(sorted(bundle.folds), None, paired, [])]
        rows = evaluate_sessions(config.output_dir, bundle, plan, items, device, config.seed,
                                 compile=config.compile, precision=config.precision)
        _, tpl = write_region_tables(config.output_dir, paired, {}, bundle.target, config.seed,
                                     bundle.suvr_reference)
        write_metrics(config.output_dir, rows, tpl)
        return names, left_out

    cfg = UNetConfig()
    model_id = model_id_for(config)
    bundle_dir = config.output_dir / "models" / model_id
    if config.continue_training or any(
            not is_complete(bundle_dir / f"fold-{k}")
            for k in (range(config.folds) if config.fold is None else [config.fold])):
        check_training_memory(config.image_size, config.batch_size, device)
    items, left_out = prepare_usable(paired, config.image_size, config.target, cache,
                                     config.suvr_reference, progress)
    names, excluded = [f.name for f in paired], {f.name: f.message for f in left_out}
    paired = [f for f in paired if f.name in items]
    labels = _strata(paired, config.group_column)
    splits = _splits(config, bundle_dir, labels)
    if rank == 0:
        write_json_atomic(bundle_dir / "splits.json", splits)
    factors = genotype_factors(paired, splits, items)
    settings = TrainSettings(config.epochs, config.batch_size, config.lr, config.seed,
                             str(device), augment=True, progress=True)
    warned = False
    for fold in splits["folds"]:
        k = fold["fold"]
        if config.fold is not None and k != config.fold:
            continue
        fold_dir = bundle_dir / f"fold-{k}"
        if config.clean_workdir and fold_dir.exists() and rank == 0:
            shutil.rmtree(fold_dir)  # retrain from scratch, not from the finished checkpoint
        if is_complete(fold_dir) and not _continues(fold_dir, config):
            continue
        contrast = factors["contrast"].get(str(k), {}) if config.target == "suvr" else {}
        train = _fold_items(items, paired, fold["train"], contrast)
        val = _fold_items(items, paired, fold["val"], contrast)
        LOG.info("fold %d: training on %d session(s), validating on %d, testing %d subject(s)",
                 k, len(train), len(val), len(fold["test"]))
        warning = few_steps_warning(len(train), config.batch_size * world, config.epochs)
        if warning and rank == 0 and not warned:
            LOG.warning(warning)
            warned = True
        train_fold(fold_dir, train, val, cfg, settings)
    if rank != 0:
        return names, left_out
    done = [f["fold"] for f in splits["folds"] if is_complete(bundle_dir / f"fold-{f['fold']}")]
    write_bundle_files(bundle_dir, config, cfg, splits, done, paired, factors,
                       excluded=excluded)
    if config.fold is not None or len(done) < len(splits["folds"]):
        missing = sorted(set(range(len(splits["folds"]))) - set(done))
        LOG.info("folds trained: %s; still to train: %s; run the group level without --fold "
                 "to evaluate", done, missing or "none")
        return names, left_out
    bundle = load_bundle(bundle_dir)
    rows = evaluate_sessions(config.output_dir, bundle, oof_plan(splits, paired), items,
                             device, config.seed, compile=config.compile,
                             precision=config.precision)
    folds_of = {s: f["fold"] for f in splits["folds"] for s in f["test"]}
    _, tpl = write_region_tables(config.output_dir, paired, folds_of, config.target, config.seed,
                                 config.suvr_reference)
    summary = write_metrics(config.output_dir, rows, tpl)
    write_bundle_files(bundle_dir, config, cfg, splits, done, paired, factors, summary,
                       excluded)
    LOG.info("model bundle: %s (bids_tspo %s)", bundle_dir, __version__)
    return names, left_out
