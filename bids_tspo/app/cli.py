"""Command line of the BIDS-App: ``bids_tspo BIDS_DIR OUTPUT_DIR {participant,group} [options]``.

The parser validates what it can on its own (types, ranges, label syntax) through the
parser-bound validators of :mod:`bids_tspo.app.validators`; :func:`build_config` checks the
relations between options and the file system.
Exit codes follow ``shared/CONTRACT.md`` (see :mod:`bids_tspo.errors`): usage errors exit 64,
never argparse's 2, and a user error prints one line, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .. import __version__
from ..errors import (
    EXIT_CODES,
    EXIT_FAILURE,
    BidsTspoError,
    MissingInputError,
    OutputError,
    UsageError,
)
from ..io.filters import read_filters
from .config import Config
from .scratch import default_work_dir, drop_if_empty, private_caches
from .validators import (
    Parser,
    expand_label_files,
    image_size,
    minutes,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)

LOG = logging.getLogger("bids_tspo")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="bids_tspo",
        description="Synthetic TSPO ([11C]PBR28) PET from T1-weighted MRI with a 3D U-Net "
        "(Ferrante et al. 2025), as a BIDS-App.",
        epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()),
    )
    p.add_argument("bids_dir", type=Path, help="root of the input BIDS dataset")
    p.add_argument("output_dir", type=Path, help="where BIDS-Derivatives are written")
    p.add_argument("analysis_level", choices=["participant", "group"],
                   help="participant: preprocess (and synthesise with --model); "
                        "group: train/evaluate on OUTPUT_DIR")
    p.add_argument("--version", action="version", version=f"bids_tspo {__version__}")

    g = p.add_argument_group("Selection of the input data")
    g.add_argument("--participant-label", "--participant_label", dest="participant_label",
                   nargs="+", metavar="L", default=[],
                   help="participant labels (with or without 'sub-'), or a file with one per line")
    g.add_argument("--session-label", "--session_label", dest="session_label", nargs="+",
                   metavar="L", default=[],
                   help="session labels (with or without 'ses-'), or a file with one per line")
    g.add_argument("--bids-filter-file", "--bids_filter_file", dest="bids_filter_file",
                   type=Path, metavar="FILE",
                   help="JSON choosing the T1w and PET of each session by BIDS entities, e.g. "
                        '{"pet": {"tracer": "PBR28"}, "t1w": {"acquisition": "mprage"}}; '
                        'null: the entity must be absent, "*": any value')
    g.add_argument("--skip-bids-validation", "--skip_bids_validation", action="store_true",
                   help="index the dataset without BIDS validation")

    g = p.add_argument_group("Model and cross-validation")
    g.add_argument("--model", type=Path, metavar="DIR",
                   help="trained model bundle; participant: synthesise; group: evaluate only")
    g.add_argument("--folds", type=positive_int, default=5, metavar="K", help="CV folds (5)")
    g.add_argument("--fold", type=nonnegative_int, metavar="k",
                   help="train only fold k (0-based): one job per fold on a cluster")
    g.add_argument("--splits", type=Path, metavar="FILE",
                   help="a splits.json to use instead of computing the folds")

    g = p.add_argument_group("Training")
    g.add_argument("--epochs", type=positive_int, default=50, metavar="N",
                   help="training epochs per fold (50); with few sessions the run warns when "
                        "the folds make far fewer optimiser steps than the paper's ~4,100")
    g.add_argument("--batch-size", "--batch_size", dest="batch_size", type=positive_int,
                   default=2, metavar="B", help="volumes per optimiser step (2)")
    g.add_argument("--lr", type=positive_float, default=1e-4, help="Adam learning rate (1e-4)")
    g.add_argument("--image-size", "--image_size", dest="image_size", type=image_size,
                   default=96, metavar="S", help="model input edge in voxels (96)")
    g.add_argument("--seed", type=nonnegative_int, default=42, help="random seed (42)")
    g.add_argument("--continue-training", "--continue_training", dest="continue_training",
                   action="store_true",
                   help="train complete folds that made fewer than --epochs on to --epochs "
                        "from their checkpoints (at --lr); without it they are reused")
    g.add_argument("--learn-deviation", action="store_true", help="population map as prior")
    g.add_argument("--deviation-loss", type=nonnegative_float, default=0.0, metavar="W",
                   help="with --learn-deviation: add W x (1 - r of the prediction's and the "
                        "target's deviations from the population map) to the loss (0: the "
                        "paper's loss)")

    g = p.add_argument_group("PET quantification")
    g.add_argument("--target", choices=["minmax", "suvr"], default="minmax",
                   help="PET target: per-volume min-max in the brain (paper) or SUVR")
    g.add_argument("--suvr-reference", "--suvr_reference", dest="suvr_reference",
                   choices=["wholebrain", "cerebellum"], default="wholebrain",
                   help="SUVR denominator with --target suvr: whole brain (default) or "
                        "cerebellar grey matter (AAL hemispheres, warped to each subject)")
    g.add_argument("--suv-window", "--suv_window", dest="suv_window", nargs=2, type=minutes,
                   default=[60.0, 90.0], metavar=("START", "END"),
                   help="minutes after injection averaged for SUV (60 90)")
    g.add_argument("--group-column", "--group_column", dest="group_column", default="group",
                   metavar="NAME", help="participants.tsv column used to stratify (group)")
    g.add_argument("--genotype-column", "--genotype_column", dest="genotype_column",
                   default="tspo_genotype", metavar="NAME",
                   help="participants.tsv column with HAB/MAB/LAB (tspo_genotype)")

    g = p.add_argument_group("Resources")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto picks CUDA when present and logs what it used")
    g.add_argument("--compile", dest="compile", action="store_true",
                   help="torch.compile the network for synthesis: a one-off cost (~40 s on "
                        "CPU) that pays off over many sessions; falls back to eager on failure")
    g.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="synthesis arithmetic: auto = bfloat16 on CUDA and on CPUs with native "
                        "bfloat16 (AVX512-BF16/AMX; ~2x faster, maps within ~1e-3 of float32), "
                        "else float32; fp32 forces float32 (recorded in the map sidecars)")
    g.add_argument("--nprocs", "--n_cpus", "--n-cpus", dest="nprocs", type=positive_int,
                   default=os.cpu_count() or 1, metavar="N",
                   help="sessions preprocessed at once, in separate processes (CPU count)")
    g.add_argument("--omp-nthreads", "--omp_nthreads", dest="omp_nthreads", type=positive_int,
                   default=None, metavar="N",
                   help="threads per process (ANTs, torch); default: CPUs / processes, <= 8")
    g.add_argument("-w", "--work-dir", "--work_dir", dest="work_dir", type=Path, metavar="DIR",
                   help="intermediate files and caches (never inside BIDS_DIR)")

    g = p.add_argument_group("Other")
    g.add_argument("--sloppy", action="store_true",
                   help="fast ANTs presets and small settings, for tests and demos only")
    g.add_argument("--reports-only", "--reports_only", dest="reports_only", action="store_true",
                   help="only regenerate the reports from existing outputs")
    g.add_argument("--clean-workdir", "--clean_workdir", dest="clean_workdir",
                   action="store_true", help="ignore finished work and recompute")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="more logging; tracebacks go to the log file")
    return p


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def build_config(args: argparse.Namespace, argv: list[str]) -> Config:
    """Check relations between options and the file system; return the frozen Config."""
    bids_dir = args.bids_dir.expanduser().resolve()
    output_dir = args.output_dir.expanduser().resolve()
    if not bids_dir.is_dir():
        raise MissingInputError(f"BIDS_DIR {args.bids_dir} does not exist or is not a folder")
    if output_dir == bids_dir:
        raise UsageError(f"OUTPUT_DIR must differ from BIDS_DIR ({bids_dir})")
    if _inside(bids_dir, output_dir):
        raise UsageError(f"OUTPUT_DIR {output_dir} contains BIDS_DIR; choose another folder")
    work_dir = (args.work_dir.expanduser().resolve() if args.work_dir
                else default_work_dir(output_dir))
    if _inside(work_dir, bids_dir):
        raise UsageError(f"--work-dir {work_dir} is inside BIDS_DIR; choose another folder")
    if args.fold is not None and args.fold >= args.folds:
        raise UsageError(f"--fold {args.fold} is out of range for --folds {args.folds} (0-based)")
    start, end = args.suv_window
    if end <= start:
        raise UsageError(f"--suv-window END ({end}) must be after START ({start})")
    if args.suvr_reference != "wholebrain" and args.target != "suvr":
        raise UsageError(f"--suvr-reference {args.suvr_reference} needs --target suvr")
    if args.model is not None and not args.model.expanduser().is_dir():
        raise MissingInputError(f"--model {args.model}: no such model folder")
    if args.splits is not None and not args.splits.is_file():
        raise MissingInputError(f"--splits {args.splits}: no such file")
    if args.analysis_level == "group":
        _check_group_options(args)
    if args.bids_filter_file is not None and not args.bids_filter_file.is_file():
        raise MissingInputError(f"--bids-filter-file {args.bids_filter_file}: no such file")
    filters = read_filters(args.bids_filter_file) if args.bids_filter_file else {}
    for folder, what in ((output_dir, "OUTPUT_DIR"), (work_dir, "work directory")):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {what} {folder}: {exc.strerror}") from None
        if not os.access(folder, os.W_OK):
            raise OutputError(f"{what} {folder} is not writable")
    return Config(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=args.analysis_level,
        work_dir=work_dir,
        participant_label=expand_label_files(args.participant_label, "sub-"),
        session_label=expand_label_files(args.session_label, "ses-"),
        bids_filters=filters,
        model=args.model.expanduser().resolve() if args.model else None,
        folds=args.folds,
        fold=args.fold,
        splits=args.splits.resolve() if args.splits else None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        image_size=args.image_size,
        seed=args.seed,
        continue_training=args.continue_training, learn_deviation=args.learn_deviation,
        deviation_loss=args.deviation_loss if args.learn_deviation else 0.0,  # needs a prior
        target=args.target,
        suvr_reference=args.suvr_reference,
        suv_window=(float(start), float(end)),
        group_column=args.group_column,
        genotype_column=args.genotype_column,
        device=args.device,
        compile=args.compile,
        precision=args.precision,
        nprocs=args.nprocs,
        omp_nthreads=args.omp_nthreads,
        sloppy=args.sloppy,
        skip_bids_validation=args.skip_bids_validation,
        reports_only=args.reports_only,
        clean_workdir=args.clean_workdir,
        verbose=args.verbose,
        command_line=tuple(argv),
    )


def _check_group_options(args: argparse.Namespace) -> None:
    """Input selection is refused at the group level (exit 64); ``--splits`` matches ``--folds``;
    ``--deviation-loss`` needs the prior of ``--learn-deviation``."""
    if args.deviation_loss and not args.learn_deviation and args.model is None:
        raise UsageError(f"--deviation-loss {args.deviation_loss:g}: the deviation is taken from "
                         "the population map, which only a --learn-deviation network has; add "
                         "--learn-deviation")
    given = [opt for opt, value in (("--participant-label", args.participant_label),
                                    ("--session-label", args.session_label),
                                    ("--bids-filter-file", args.bids_filter_file)) if value]
    if given:
        raise UsageError(f"{', '.join(given)}: not available at the group level, which uses every "
                         "session preprocessed in OUTPUT_DIR; select subjects, sessions and "
                         "PETs at the participant level (into another OUTPUT_DIR for a subset)")
    if args.splits is not None and args.model is None:
        from ..model.splits import read_splits

        if (k := read_splits(args.splits)["k"]) != args.folds:
            raise UsageError(f"--splits {args.splits} has {k} folds but --folds is "
                             f"{args.folds}; pass --folds {k}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) a documented exit code."""
    from .runlog import setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    private_caches()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help/--version (0) and usage errors (64)
        return int(exc.code or 0)
    setup_logging(verbose=args.verbose)
    config = None
    try:
        config = build_config(args, ["bids_tspo", *argv])
        setup_logging(verbose=config.verbose, config=config)
        LOG.info("work directory %s", config.work_dir)
        from .workflow import run

        code = run(config)
    except BidsTspoError as exc:
        # The console handler never renders tracebacks; the log file keeps them.
        LOG.error("%s", exc, exc_info=args.verbose > 0)
        code = exc.exit_code
    except KeyboardInterrupt:
        LOG.error("interrupted")
        code = 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback on screen
        LOG.error("unexpected failure: %s: %s (traceback in OUTPUT_DIR/logs)",
                  type(exc).__name__, exc, exc_info=True)
        code = EXIT_FAILURE
    if config is not None and args.work_dir is None:  # no empty default work dir left behind
        drop_if_empty(config.work_dir)
    return code
