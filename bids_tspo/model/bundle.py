"""The self-describing model bundle ``models/<model-id>/``: written after training, loaded and
checked for synthesis.

``model.json`` (architecture, normalisation, training configuration, data summary, versions,
metrics summary), ``splits.json``, ``fold-<k>/weights.pt`` + ``history.tsv`` and a
``README.md`` model card.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import CITATION, __version__
from ..app.config import Config
from ..errors import InputDataError, describe
from ..io.atomic import write_json_atomic, write_text_atomic
from ..io.tables import read_tsv
from .augment import describe as augmentation
from .data import FOV_MM
from .loss import loss_text
from .network import TSPOUNet, UNetConfig, count_parameters
from .targets import SUVR_SCALE, target_units

BUNDLE_FORMAT = 1


@dataclass(frozen=True)
class Bundle:
    path: Path
    model_id: str
    meta: dict
    cfg: UNetConfig
    folds: dict[int, dict] = field(repr=False)  # fold -> state dict

    @property
    def target(self) -> str:
        return self.meta["normalisation"]["target"]

    @property
    def image_size(self) -> int:
        return int(self.meta["normalisation"]["image_size"])

    @property
    def suvr_reference(self) -> str:
        return self.meta["normalisation"].get("suvr_reference") or "wholebrain"

    @property
    def warning(self) -> str | None:
        """Why this bundle should not be used for synthesis: it lost to the population
        (training-mean) baseline in its own out-of-fold evaluation (None: it did not, or it
        was not evaluated)."""
        verdict = (self.meta.get("metrics_summary") or {}).get("verdict") or {}
        if verdict.get("status") != "worse":
            return None
        return (f"model {self.model_id} lost to its training-mean baseline in its "
                f"out-of-fold evaluation: {verdict['text']}")

    def populations(self) -> dict:
        """Each fold's population map (``--learn-deviation`` bundles)."""
        from .prior import load_population

        return {k: load_population(self.path / f"fold-{k}") for k in sorted(self.folds)}

    def genotype_factor(self, fold: int, genotype: str) -> float | None:
        """Contrast factor restoring ``genotype`` on fold ``fold``'s output (None: none)."""
        from .genotype import fold_factor

        return fold_factor(self.meta.get("genotype_adjustment", {}), fold, genotype)


def load_bundle(path: Path, folds: list[int] | None = None) -> Bundle:
    """Load and check a model bundle; every problem names the file."""
    path = Path(path)
    meta_path = path / "model.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        inside = sorted(p.parent for p in path.glob("*/model.json"))
        hint = (f"; it holds the bundle(s) {', '.join(str(p) for p in inside)}: pass one of them"
                if inside else "")
        raise InputDataError(f"{meta_path}: missing; not a bids_tspo model bundle{hint}") from None
    except ValueError as exc:
        raise InputDataError(f"{meta_path}: not valid JSON ({exc})") from None
    if meta.get("bundle_format") != BUNDLE_FORMAT:
        raise InputDataError(f"{meta_path}: bundle format {meta.get('bundle_format')!r} is not "
                             f"supported by bids_tspo {__version__} (expects {BUNDLE_FORMAT})")
    cfg = UNetConfig.from_dict(meta["architecture"])
    wanted = folds if folds is not None else meta["folds_trained"]
    states = {}
    for k in wanted:
        weights = path / f"fold-{k}" / "weights.pt"
        if not weights.is_file():
            raise InputDataError(f"{weights}: missing; the bundle is incomplete")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            TSPOUNet(cfg).load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - corrupted or mismatched weights
            raise InputDataError(f"{weights}: cannot be loaded ({describe(exc)})") from None
        states[int(k)] = state
    if not states:
        raise InputDataError(f"{meta_path}: lists no trained folds")
    return Bundle(path, meta.get("model_id", path.name), meta, cfg, states)


def model_id_for(config: Config) -> str:
    """``tspo-unet_<target>_<image size>_k<folds>_s<seed>``: settings that change the weights
    (``suvr-cerebellum`` as the target for the cerebellar SUVR reference; ``tspo-unetdev`` for
    ``--learn-deviation``, ``tspo-unetdev-dloss<W>`` with ``--deviation-loss W``)."""
    target = config.target
    if target == "suvr" and config.suvr_reference != "wholebrain":
        target = f"suvr-{config.suvr_reference}"
    name = "tspo-unetdev" if config.learn_deviation else "tspo-unet"
    if config.deviation_loss:
        name += f"-dloss{config.deviation_loss:g}"
    return f"{name}_{target}_{config.image_size}_k{config.folds}_s{config.seed}"


def write_bundle_files(bundle_dir: Path, config: Config, cfg: UNetConfig, splits: dict,
                       done: list[int], paired, factors: dict,
                       metrics: dict | None = None,
                       excluded: dict[str, str] | None = None) -> None:
    meta = {
        "bundle_format": BUNDLE_FORMAT,
        "model_id": bundle_dir.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "architecture": cfg.to_dict(),
        "network": {"name": "TSPOUNet (Ferrante et al. 2025)",
                    "parameters": count_parameters(TSPOUNet(cfg)),
                    "learn_deviation": cfg.prior},
        "normalisation": {"target": config.target, "units": target_units(config.target),
                          "image_size": config.image_size, "fov_mm": FOV_MM,
                          "spacing_mm": FOV_MM / config.image_size,
                          "suvr_scale": SUVR_SCALE if config.target == "suvr" else None,
                          "suvr_reference": (config.suvr_reference if config.target == "suvr"
                                             else None),
                          "t1w": "1st-99th percentile in brain -> [0, 1], brain-masked",
                          "suv_window_min": list(config.suv_window)},
        "training": {"epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
                     "optimizer": "Adam",
                     "loss": loss_text(config.deviation_loss),
                     "seed": config.seed, "folds": splits["k"],
                     "splits": "subject-grouped, stratified by " + splits["stratified_by"],
                     "augmentation": augmentation(),
                     "per_fold": fold_records(bundle_dir, done)},
        "folds_trained": done,
        "genotype_adjustment": {
            "column": config.genotype_column,
            "applied_to_target": config.target == "suvr",
            "contrast_factors_per_fold": factors["contrast"],
            "uptake_factors_per_fold": factors["uptake"],
            "note": "per fold, from its training subjects only: contrast = SD of whole-brain "
                    "SUVR, uptake = mean whole-brain SUV, each relative to HAB (else the most "
                    "common genotype). suvr targets are made genotype-neutral with the contrast "
                    "factor and synthesis restores it when the genotype is known; minmax "
                    "rescales each volume, so the factors are recorded only"},
        "data": {"sessions": len(paired), "subjects": len({f.subject for f in paired}),
                 "groups": dict(Counter(f.group for f in paired)),
                 "genotypes": dict(Counter(f.genotype for f in paired)),
                 "excluded_sessions": excluded or {}},
        "versions": {"bids_tspo": __version__, "torch": torch.__version__,
                     "cuda": torch.version.cuda, "python": platform.python_version()},
        "metrics_summary": metrics or {},
        "citation": CITATION,
    }
    write_json_atomic(bundle_dir / "model.json", meta)
    write_text_atomic(bundle_dir / "README.md", model_card(meta))


def fold_records(bundle_dir: Path, done: list[int]) -> dict[str, dict]:
    """How each trained fold was trained: device, processes, epochs, optimiser steps and wall
    time (from its ``done.json`` and ``history.tsv``; a fold resumed or continued sums all its
    epochs)."""
    records = {}
    for k in done:
        fold = Path(bundle_dir) / f"fold-{k}"
        try:
            summary = json.loads((fold / "done.json").read_text())
            seconds = read_tsv(fold / "history.tsv")["seconds"]
        except (OSError, ValueError, KeyError):
            continue
        world = summary.get("world_size", 1)
        batch = summary.get("settings", {}).get("batch_size")
        sessions = summary.get("train_subjects_sessions")
        records[str(k)] = {"device": summary.get("settings", {}).get("device"),
                           "world_size": world,
                           "epochs": len(seconds), "seconds": round(float(seconds.sum()), 1),
                           "best_score": summary.get("best_score"),
                           "steps": (-(-sessions // (batch * world)) * len(seconds)
                                     if sessions and batch else None)}
    return records


def _augmentation_text(aug: dict | None) -> str:
    """One sentence for the model card (bundles written before it was recorded: none)."""
    if not aug:
        return "Augmentation: not recorded."
    degrees = math.degrees(aug["rotate_rad"])
    return (f"Augmentation per sample: left-right flips (p {aug['p_flip']}); rotations up to "
            f"±{aug['rotate_rad']} rad (~{degrees:.0f}°) and scaling by ±{aug['scale']:.0%} "
            f"(p {aug['p_affine']}); T1w intensity ±{aug['t1w_intensity']:.0%} "
            f"(p {aug['p_t1w_intensity']}) and gamma {aug['t1w_gamma'][0]}–{aug['t1w_gamma'][1]} "
            f"(p {aug['p_t1w_gamma']}).")


def model_card(meta: dict) -> str:
    data, train, norm = meta["data"], meta["training"], meta["normalisation"]
    metrics = "\n".join(f"| {k} | {v:.4g} |" for k, v in meta["metrics_summary"].items()
                        if isinstance(v, float)) or "| (not evaluated yet) | |"
    reference = (f", reference region: {norm['suvr_reference']}"
                 if norm.get("suvr_reference") else "")
    genotype = ("SUVR contrast made genotype-neutral in training and restored at synthesis when "
                "the subject's genotype is known (contrast factors per fold in model.json)"
                if meta["genotype_adjustment"]["applied_to_target"] else
                "factors recorded in model.json, not applied (per-volume min-max target)")
    verdict = (meta["metrics_summary"].get("verdict") or {}).get(
        "text", "Not evaluated yet: run the group level to compare the model with the "
                "population baseline.")
    deviation = ("\n\n**--learn-deviation**: the fold's population map (mean normalised PET "
                 "of its training subjects, template space, `fold-<k>/population.nii.gz`) is a "
                 "second input channel and an additive prior on the output (logit space); the "
                 "network learns the deviation from it. The paper's model (T1w only) stays the "
                 "default: in the phantom's controls (2 folds x 20 and x 200 epochs on 11 "
                 "subjects; 5 folds x 45 epochs on 23, head to head) neither won, both passing "
                 "the negative control and failing the positive one at a realistic T1w trace; "
                 "this one had the better out-of-fold r (0.82 vs 0.79, the population "
                 "baseline's 0.84) but the worse deviation_r (0.12 vs 0.17), and at a strong "
                 "trace its synthesis showed a region the truth did not (benchmarks/README.md). "
                 "With --deviation-loss (a term on the correlation of the prediction's and the "
                 "target's deviations from that map) the deviations were followed better "
                 "(deviation_r 0.23-0.32 vs at most 0.21), the realistic trace still not "
                 "recovered, and at the strong trace five false regions appeared: not adopted."
                 if meta["network"].get("learn_deviation") else "")
    return f"""# Model card: {meta['model_id']}

3D U-Net (Ferrante et al. 2025; {meta['network']['parameters']:,} parameters) mapping a
skull-stripped, percentile-scaled T1w to a synthetic TSPO ([11C]PBR28) PET map.{deviation}

## Verdict against the population baseline
**{verdict}**

## Training data
{data['sessions']} sessions of {data['subjects']} subjects; groups {data['groups']};
genotypes {data['genotypes']}.

## Training
{train['folds']}-fold cross-validation, {train['splits']}; {train['epochs']} epochs, batch
{train['batch_size']}, Adam lr {train['lr']}, loss {train['loss']}, seed {train['seed']}.
{_augmentation_text(train.get('augmentation'))}
Folds trained: {meta['folds_trained']}.

## Output
Target `{norm['target']}` ({norm['units']}{reference}), {norm['image_size']}³ box of
{norm['fov_mm']:g} mm, SUV window {norm['suv_window_min']} min after injection.
Genotype: {genotype}.

## Out-of-fold performance
| metric | value |
|---|---|
{metrics}

## Intended use and limits
Research only; not for diagnosis or treatment decisions. Trained on one cohort: scanners,
protocols, tracers and populations outside it are out of distribution. The map follows
statistical relations between anatomy and PET; it is not a measurement of TSPO binding.
Normalised targets remove absolute (and genotype-driven) differences in uptake. On the
phantom's controls (benchmarks/README.md, 32³ CPU runs) the synthesis claimed no patient
effect where the T1w carried none. At a realistic T1w trace it recovered none with 9-11
training patients per fold; with 20-23 it recovered the thalamic increase that the T1w
carried, at a third of the true effect size (Hedges' g 1.1-1.25 against 3.3-3.6), and none
of the increases the T1w did not carry. Do not read its group differences, or their absence,
as TSPO differences.

## Citation
{meta['citation']}
"""
