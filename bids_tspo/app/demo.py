"""``bids_tspo-demo OUT_DIR``: phantom dataset, participant and group levels, then synthesis
for the MRI-only subject with the bundle just trained; CPU-sized.

Layout of OUT_DIR: ``bids/`` (the phantom), ``derivatives/bids_tspo/`` (the app's outputs),
``work/``. Ends with a summary of what ran, where the reports and the model bundle are, and the
command that applies the bundle to new MRI-only data.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .. import __version__
from ..io.derivatives import discover, report_path
from ..phantom import make_phantom
from .cli import main as app_main
from .runlog import setup_logging
from .validators import Parser, nonnegative_int, positive_int

LOG = logging.getLogger(__name__)
DESCRIPTION = ("Run bids_tspo end to end on a synthetic phantom dataset, CPU-sized: the "
               "participant level (ANTs preprocessing, SUV), the group level (subject-grouped "
               "cross-validated training, out-of-fold synthesis, metrics, reports), then "
               "synthesis for the phantom's MRI-only subject with the model bundle it trained.")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="bids_tspo-demo", description=DESCRIPTION,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR",
                   help="folder for the phantom (bids/), the outputs and the work files")
    p.add_argument("--subjects", type=positive_int, default=6,
                   help="phantom subjects (the last has no PET: the MRI-only case)")
    p.add_argument("--size", choices=["tiny", "small"], default="small",
                   help="phantom image size (tiny: for tests)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="phantom and training seed")
    p.add_argument("--nprocs", type=positive_int, default=2,
                   help="sessions preprocessed at once")
    p.add_argument("--epochs", type=positive_int, default=3,
                   help="training epochs per fold (far too few for a useful model: a demo)")
    p.add_argument("--image-size", type=positive_int, default=48,
                   help="model box edge in voxels")
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
    bundle, mri_only = _bundle(derivs), _mri_only(derivs)
    if steps[-1][1] == 0 and bundle is not None and mri_only:
        steps.append((f"synthesis for the MRI-only subject(s) {', '.join(mri_only)}",
                      app_main(common[:2] + ["participant", "--model", str(bundle),
                                             "--participant-label", *mri_only] + common[2:])))
    print(_summary(time.monotonic() - start, bids, derivs, steps, bundle, mri_only))
    return max(code for _, code in steps)


def _bundle(derivs: Path) -> Path | None:
    """The model bundle the group level wrote (the newest, when there are several)."""
    found = sorted(derivs.glob("models/*/model.json"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def _mri_only(derivs: Path) -> list[str]:
    """Subjects with a preprocessed T1w and no SUV map in any session."""
    sessions = discover(derivs)
    with_pet = {s.subject for s in sessions if s.suv is not None}
    return sorted({s.subject for s in sessions} - with_pet)


def _verdict(bundle: Path) -> str | None:
    """The bundle's verdict against the population baseline (model.json), in words."""
    try:
        meta = json.loads((bundle / "model.json").read_text())
    except (OSError, ValueError):
        return None
    return ((meta.get("metrics_summary") or {}).get("verdict") or {}).get("text")


def _summary(seconds: float, bids: Path, derivs: Path, steps: list, bundle: Path | None,
             mri_only: list[str]) -> str:
    """What ran, where everything is, and the next command."""
    lines = [f"bids_tspo {__version__} demo finished in {seconds:.0f} s",
             f"  phantom dataset : {bids}",
             f"  derivatives     : {derivs}"]
    for name, code in steps:
        lines.append(f"  {'ok    ' if code == 0 else f'FAILED ({code})'}  {name}")
    tables = sorted(p.name for p in derivs.glob("group_*.tsv"))
    if tables:
        lines.append(f"  tables          : {', '.join(tables)}")
    report = derivs / "group_report.html"
    lines.append(f"  group report    : "
                 f"{report if report.is_file() else 'not written (see the errors above)'}")
    subjects = sorted(p.name[4:-5] for p in derivs.glob("sub-*.html"))
    if subjects:
        lines.append(f"  participant     : {report_path(derivs, subjects[0]).parent}/"
                     f"sub-<label>.html ({len(subjects)} reports: "
                     f"{', '.join('sub-' + s for s in subjects)})")
    if bundle is not None:
        lines.append(f"  model bundle    : {bundle} (model card: {bundle / 'README.md'})")
        verdict = _verdict(bundle)
        if verdict:
            lines.append(f"  verdict         : {verdict}")
        synth = sorted(p for s in mri_only
                       for p in derivs.glob(f"sub-{s}/**/pet/*_space-T1w_desc-synth_pet.nii.gz"))
        lines += [f"  MRI-only map    : {p}" for p in synth]
        lines += ["  next            : synthesise maps for MRI-only data with this bundle:",
                  f"    bids_tspo YOUR_BIDS_DIR YOUR_OUTPUT_DIR participant --model {bundle}"]
    return "\n".join(lines)  # printed: the demo's summary is its product


if __name__ == "__main__":
    sys.exit(main())
