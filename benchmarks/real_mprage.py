"""Brain mask and template registration on a real T1w, against a deep-learning reference.

    python benchmarks/real_mprage.py T1W.nii.gz [--sloppy] [--name NAME]

Lays the image out as a one-subject BIDS dataset, runs the participant level, then reports
(1) the Dice of our brain mask with deepbet's (a CNN brain extractor whose weights ship in its
wheel; ``pip install deepbet``), and (2) the Pearson correlation, inside the template brain
mask, between the T1w warped to the template and the template (raw, and with both images
smoothed at 4 mm FWHM, since the template is a smooth population average), for the full
bias-corrected T1w and for it skull-stripped by our mask (the usual normalisation QC), and (3)
the Dice of deepbet's mask warped to the template with the template brain mask (a boundary
check: a correlation that rises while this falls comes from a shifted boundary).
Writes ``benchmarks/results/real_<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import machine  # noqa: E402


def deepbet_mask(t1w: Path, dest: Path) -> np.ndarray | None:
    try:
        from deepbet import run_bet
    except ImportError:
        return None
    run_bet([str(t1w)], mask_paths=[str(dest)], no_gpu=True)
    return nib.load(dest).get_fdata() > 0.5


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("t1w", type=Path)
    p.add_argument("--sloppy", action="store_true")
    p.add_argument("--name", default=None)
    args = p.parse_args()
    from bids_tspo.app.cli import main as app
    from bids_tspo.evaluation.metrics import template_similarity
    from bids_tspo.io.spaces import resolve_template
    from bids_tspo.preprocess.images import resample_with_transforms

    preset = "sloppy" if args.sloppy else "standard"
    with tempfile.TemporaryDirectory() as tmp:
        bids = Path(tmp) / "bids"
        (bids / "sub-01" / "anat").mkdir(parents=True)
        shutil.copy(args.t1w, bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
        (bids / "dataset_description.json").write_text('{"Name": "real", "BIDSVersion": "1.9.0"}')
        out = Path(tmp) / "out"
        start = time.monotonic()
        code = app([str(bids), str(out), "participant", "-w", str(Path(tmp) / "work"),
                    "--omp-nthreads", "2"] + (["--sloppy"] if args.sloppy else []))
        wall = time.monotonic() - start
        anat = out / "sub-01" / "anat"
        mask = nib.load(anat / "sub-01_desc-brain_mask.nii.gz").get_fdata() > 0
        reference = deepbet_mask(args.t1w, Path(tmp) / "deepbet_mask.nii.gz")
        dice = (float(2 * (mask & reference).sum() / (mask.sum() + reference.sum()))
                if reference is not None else None)
        t1 = nib.load(anat / "sub-01_desc-preproc_T1w.nii.gz")
        tpl_img, tpl_mask = resolve_template(2).load()
        xfm = next(anat.glob("sub-01_from-T1w_to-*_xfm.h5"))
        inside = np.asarray(tpl_mask.dataobj) > 0.5
        tpl = np.asarray(tpl_img.dataobj, np.float32)
        zooms = tpl_img.header.get_zooms()[:3]
        corr = {}
        for kind, data in (("", np.asarray(t1.dataobj, np.float32)),
                           ("_skullstripped", np.asarray(t1.dataobj, np.float32) * mask)):
            warped = resample_with_transforms(data, t1.affine, tpl_img, [xfm]).get_fdata()
            corr[f"template_corr{kind}"] = round(float(
                np.corrcoef(warped[inside], tpl[inside])[0, 1]), 4)
            corr[f"template_corr{kind}_smoothed_4mm"] = round(
                template_similarity(warped, tpl, inside, zooms), 4)
        if reference is not None:  # boundary check: a registration that pushes the cortex out
            # of the template brain raises the correlation above while the boundary gets worse
            ref_img = nib.load(Path(tmp) / "deepbet_mask.nii.gz")
            warped_ref = resample_with_transforms(ref_img.get_fdata().astype(np.float32),
                                                  ref_img.affine, tpl_img, [xfm]).get_fdata() > 0.5
            corr["template_space_dice_deepbet_vs_template_mask"] = round(float(
                2 * (warped_ref & inside).sum() / (warped_ref.sum() + inside.sum())), 4)
        timings = json.loads(next((Path(tmp) / "work").rglob("timings.json")).read_text())
    name = args.name or f"{args.t1w.name.split('.')[0]}_{preset}"
    result = {"benchmark": "real T1w: brain mask and registration", "name": name, "exit_code": code,
              "preset": preset, "wall_s": round(wall, 1), "steps_s": timings,
              "dice_vs_deepbet": dice, **corr, "machine": machine(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    (Path(__file__).parent / "results" / f"real_{name}.json").write_text(
        json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.startswith(("name", "wall", "dice",
                                                                        "template"))}))
    return code


if __name__ == "__main__":
    sys.exit(main())
