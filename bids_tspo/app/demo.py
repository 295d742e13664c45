"""``bids_tspo-demo OUT_DIR``: phantom dataset, participant and group levels, CPU-sized.

Layout of OUT_DIR: ``bids/`` (the phantom), ``derivatives/bids_tspo/`` (the app's outputs),
``work/``. Ends with a summary of what ran, what is pending, and where the report is.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .. import __version__
from ..phantom import make_phantom
from .cli import main as app_main
from .runlog import setup_logging
from .validators import Parser, nonnegative_int, positive_int

LOG = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="bids_tspo-demo", description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--subjects", type=positive_int, default=6)
    p.add_argument("--size", choices=["tiny", "small"], default="small")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--nprocs", type=positive_int, default=2)
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--image-size", type=positive_int, default=48)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    out = args.out_dir.expanduser().resolve()
    bids, derivs, work = out / "bids", out / "derivatives" / "bids_tspo", out / "work"
    start = time.monotonic()
    if not (bids / "participants.tsv").is_file():
        make_phantom(bids, args.subjects, args.seed, args.size, progress=sys.stderr.isatty())
    else:
        LOG.info("reusing the phantom dataset in %s", bids)
    common = [str(bids), str(derivs), "--sloppy", "-w", str(work), "--nprocs", str(args.nprocs),
              "--seed", str(args.seed)]  # threads: the CPUs shared out between the processes
    steps = [("participant level (ANTs preprocessing, SUV)",
              app_main(common[:2] + ["participant"] + common[2:]))]
    if steps[-1][1] == 0:
        steps.append(("group level (5-fold training, out-of-fold synthesis, metrics)",
                      app_main(common[:2] + ["group", "--epochs", str(args.epochs),
                                             "--image-size", str(args.image_size)] + common[2:])))
    lines = [f"bids_tspo {__version__} demo finished in {time.monotonic() - start:.0f} s",
             f"  phantom dataset : {bids}",
             f"  derivatives     : {derivs}"]
    for name, code in steps:
        lines.append(f"  {'ok    ' if code == 0 else f'FAILED ({code})'}  {name}")
    tables = sorted(p.name for p in derivs.glob("group_*.tsv"))
    if tables:
        lines.append(f"  tables          : {', '.join(tables)}")
    report = derivs / "group_report.html"
    shown = report if report.is_file() else "not written (see the errors above)"
    lines.append(f"  report          : {shown}")
    print("\n".join(lines))  # the demo's summary is its product: stdout, not the log
    return max(code for _, code in steps)
