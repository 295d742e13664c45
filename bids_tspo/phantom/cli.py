"""``bids_tspo-phantom OUT_BIDS_DIR [--subjects N] [--seed S] [--size {tiny,small,full}]
[--t1w-trace X] [--noise SCALE] [--patient-effect SIZE] [--genotypes G [G ...]]``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..app.runlog import setup_logging
from ..app.validators import Parser, bounded, nonnegative_int, positive_int
from ..errors import EXIT_CANTCREAT, EXIT_USAGE
from .anatomy import T1W_TRACE
from .dynamic import NOISE_SD_2MM
from .subjects import GENOTYPE_P
from .writer import SIZES, make_phantom

nonnegative_float = bounded(float, 0, False, "a number", "cannot be negative")

LOG = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="bids_tspo-phantom",
                description="Write a realistic synthetic BIDS dataset (T1w + 4D [11C]PBR28 PET). "
                            "Ground truth goes to OUT_BIDS_DIR/derivatives/phantom-truth/.")
    p.add_argument("out_bids_dir", type=Path)
    p.add_argument("--subjects", type=positive_int, default=None, metavar="N",
                   help="number of subjects (default: 6 for small/tiny, 24 for full)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S")
    p.add_argument("--size", choices=sorted(SIZES), default="small",
                   help="tiny: 4 mm, for tests; small: 2 mm, seconds; full: 1 mm T1w")
    p.add_argument("--no-sessions", dest="with_sessions", action="store_false",
                   help="no session level (one visit per subject)")
    p.add_argument("--t1w-trace", type=nonnegative_float, default=T1W_TRACE, metavar="X",
                   help="fractional T1w darkening per unit of fractional SUV increase in the "
                        "patients' affected regions; 0 leaves no trace of the inflammation in "
                        f"the T1w (negative control) (default: {T1W_TRACE})")
    p.add_argument("--noise", type=nonnegative_float, default=1.0, metavar="SCALE",
                   help="PET noise scale: 1 gives a realistic 60-90 min average (voxel SD "
                        f"{NOISE_SD_2MM * 100:.0f} %% at 2 mm in grey matter), 0 none (default: 1)")
    p.add_argument("--patient-effect", type=nonnegative_float, default=1.0, metavar="SIZE",
                   help="scale of the patients' regional increases of specific binding "
                        "(1: CLBP thalamus +20 %%, ...; 0: patients like controls) (default: 1)")
    p.add_argument("--genotypes", nargs="+", choices=list(GENOTYPE_P), default=list(GENOTYPE_P),
                   metavar="G", help="rs6971 genotypes to draw from (HAB MAB LAB; e.g. HAB MAB: "
                                     "LABs excluded at screening, as [11C]PBR28 studies do) "
                                     "(default: all three)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    out = args.out_bids_dir.expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not (out / "dataset_description.json").is_file():
        LOG.error("%s exists and is not empty; choose a new folder", out)
        return EXIT_USAGE
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        LOG.error("cannot create %s: %s", out, exc.strerror)
        return EXIT_CANTCREAT
    make_phantom(out, args.subjects, args.seed, args.size, args.with_sessions,
                 progress=sys.stderr.isatty(), t1w_trace=args.t1w_trace, noise=args.noise,
                 patient_effect=args.patient_effect, genotypes=tuple(args.genotypes))
    LOG.info("phantom dataset written to %s", out)
    return 0
