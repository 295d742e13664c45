"""HTML reports from the outputs in OUTPUT_DIR (jinja2): what both reports share, and
:func:`participant_report` (``sub-<l>.html`` with figures in ``sub-<l>/figures/*.svg``); the
self-contained group report is :func:`bids_tspo.reports.group.group_report`.

Both read only what is on disk, so ``--reports-only`` can regenerate them at any time.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import jinja2
import nibabel as nib
import numpy as np
import pandas as pd

from .. import CITATION, __version__
from ..io.derivatives import describe_column, find_pet, report_path, write_text_atomic
from ..errors import BidsTspoError
from ..model.infer import to_units
from . import figures

LOG = logging.getLogger(__name__)
ENV = jinja2.Environment(loader=jinja2.PackageLoader("bids_tspo", "reports/templates"),
                         autoescape=jinja2.select_autoescape(["html", "j2"]))
METHODS = ("T1w images were bias-corrected (N4) and brain-extracted with ANTs and registered to "
           "the MNI152 template (affine + SyN). PET frames in the SUV window were averaged, "
           "converted to SUV and rigidly coregistered to the T1w. A 3D U-Net (Ferrante et al. "
           "2025) trained with subject-grouped cross-validation synthesised TSPO PET maps from "
           "the skull-stripped T1w; maps are the mean of fold models and left-right flips.")


def _sidecar(path: Path) -> dict:
    side = Path(str(path).replace(".nii.gz", ".json"))
    return json.loads(side.read_text()) if side.is_file() else {}


def read_tsv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, sep="\t") if Path(path).is_file() else None


def run_errors(out: Path, prefix: str | None = None) -> list[dict]:
    found = []
    for summary in sorted((Path(out) / "logs").glob("summary_*.json")):
        for failure in json.loads(summary.read_text()).get("failed", []):
            if prefix is None or failure["session"].startswith(prefix):
                found.append(failure | {"log": summary.name})
    return found


def _display_grid(img: nib.Nifti1Image | Path, labels: bool = False) -> nib.Nifti1Image:
    """The image on an axis-aligned RAS grid, resampled once (linear; nearest for labels).

    nilearn resamples oblique images itself, with cubic splines, on every plot call (7 per
    participant report: 8 s of a 1 mm session); images that share a grid (all space-T1w
    derivatives) land on the same display grid, so their arrays stay voxel-aligned.
    """
    from nilearn.image import reorder_img

    img = nib.load(img) if isinstance(img, Path) else img
    return reorder_img(img, resample="nearest" if labels else "linear", copy_header=True)


def _reference(anat: Path, name: str, reference: str, brain: np.ndarray):
    """The SUVR reference region on the canonical T1w grid (None: whole brain or unknown)."""
    from ..model.data import SessionFiles

    if reference == "wholebrain":
        return None
    t1_path = anat / f"{name}_desc-preproc_T1w.nii.gz"
    files = SessionFiles(name, "", None, t1_path, anat / f"{name}_desc-brain_mask.nii.gz")
    raw = nib.load(t1_path)
    try:
        region = files.reference(reference, raw, np.ones(raw.shape[:3], bool))
    except BidsTspoError as exc:  # the figure falls back to whole-brain SUVR
        LOG.warning("%s: %s reference unavailable for the report figure (%s)", name,
                    reference, exc)
        return None
    canonical = _display_grid(nib.Nifti1Image(region.astype(np.uint8), raw.affine), labels=True)
    return (np.asarray(canonical.dataobj) > 0) & brain


def _session_figures(out: Path, anat: Path, pet: Path, name: str, figdir: Path) -> list[dict]:
    from ..model.targets import pet_target, scale_t1
    from ..preprocess.images import resample_with_transforms
    from ..preprocess.qc import QC_TEMPLATE_RES, warped_correlation
    from ..io.spaces import resolve_template

    made = []

    def save(key: str, title: str, caption: str, svg: str):
        path = figdir / f"{name}_{key}.svg"
        write_text_atomic(path, svg)
        made.append({"title": title, "caption": caption, "src": path.relative_to(out).as_posix()})

    t1_path = anat / f"{name}_desc-preproc_T1w.nii.gz"
    mask_path = anat / f"{name}_desc-brain_mask.nii.gz"
    if not (t1_path.is_file() and mask_path.is_file()):
        return made
    raw = nib.load(t1_path)
    raw_data = np.asarray(raw.dataobj, np.float32)  # read once: display grid and template warp
    t1 = _display_grid(nib.Nifti1Image(raw_data, raw.affine))
    mask = _display_grid(mask_path, labels=True)
    save("mask", "Brain extraction", "Bias-corrected T1w with the brain-mask outline (red).",
         figures.mask_contour(t1, mask))
    xfm = next(iter(sorted(anat.glob(f"{name}_from-T1w_to-*_mode-image_xfm.h5"))), None)
    if xfm is not None:
        tpl_img, tpl_mask = resolve_template(QC_TEMPLATE_RES).load()
        warped = resample_with_transforms(raw_data, raw.affine, tpl_img, [xfm])
        r = _sidecar(t1_path).get("QualityControl", {}).get("TemplateCorrelation")
        if r is None:  # outputs of an earlier version: computed here
            r = warped_correlation(warped, tpl_img, tpl_mask)
        save("registration", "Template registration",
             "T1w warped to the template; blue: the template's brain outline. Correlation with "
             f"the template inside its brain mask, both smoothed at 4 mm: r = {r:.3f} (standard "
             "preset: 0.91 on a real 3T MPRAGE, 0.96 on the Colin27 average; markedly lower "
             "values call for a close look at this figure).",
             figures.registration_check(warped, tpl_mask))
    suv_path = next(iter(find_pet(pet, name, desc="suv", space="T1w")), None)
    suv = _display_grid(suv_path) if suv_path is not None else None
    if suv is not None:
        meta = _sidecar(suv_path)
        window, moved = meta.get("SUVWindow"), meta.get("FrameDisplacement")
        span = f" ({window[0]:g}–{window[1]:g} min)" if window else ""
        motion = (f" Its {len(moved)} frames were realigned for head motion; they had moved "
                  f"up to {max(moved):.1f} mm (mean movement 50 mm from the centre)"
                  f"{': check the frames' if max(moved) > 3 else ''}." if moved else "")
        save("coreg", "PET to T1w coregistration",
             f"SUV{span} over the T1w; green: the brain outline.{motion}",
             figures.coreg_check(t1, suv, mask))
    synth_path = pet / f"{name}_space-T1w_desc-synth_pet.nii.gz"
    if synth_path.is_file():
        m = np.asarray(mask.dataobj) > 0
        synth = np.asarray(_display_grid(synth_path).dataobj, np.float32)
        sd_path = pet / f"{name}_space-T1w_desc-synthstd_pet.nii.gz"
        sd = (np.asarray(_display_grid(sd_path).dataobj, np.float32) if sd_path.is_file()
              else None)
        meta = _sidecar(synth_path)
        true = None
        if suv is not None:
            target = "suvr" if meta.get("Units") == "SUVR" else "minmax"
            region = _reference(anat, name, meta.get("SUVRReference", "wholebrain"), m)
            true = to_units(pet_target(np.asarray(suv.dataobj, np.float32), m,
                                       target, region), target)
        save("synthesis", "Synthetic PET",
             _mosaic_caption(true is not None, sd is not None) + _agreement(synth, sd, m),
             figures.synthesis_mosaic(scale_t1(np.asarray(t1.dataobj, np.float32), m), true,
                                      synth, sd, m, meta.get("Units", "")))
    return made


def _mosaic_caption(true: bool, sd: bool) -> str:
    """The synthesis mosaic's caption, naming the rows it has.

    >>> _mosaic_caption(False, True)
    'Rows: T1w, synthetic PET and the SD across fold models, on shared colour scales.'
    """
    rows = ["T1w"] + (["true PET (normalised as the model target)"] if true else [])
    rows += ["synthetic PET"] + (["their difference"] if true else [])
    rows += ["the SD across fold models"] if sd else []
    return f"Rows: {', '.join(rows[:-1])} and {rows[-1]}, on shared colour scales."


def _agreement(synth: np.ndarray, sd: np.ndarray | None, brain: np.ndarray) -> str:
    """How much the fold models agree, in words for the caption (the uncertainty of an
    MRI-only synthesis, where no true PET can be compared).

    >>> brain = np.ones(4, bool)
    >>> _agreement(np.full(4, 0.5), np.full(4, 0.01), brain)
    ' Fold models agree to a mean SD of 0.01 in the brain (2.0 % of the mean synthetic value).'
    """
    if sd is None or not brain.any():
        return ""
    mean, spread = float(synth[brain].mean()), float(sd[brain].mean())
    return (f" Fold models agree to a mean SD of {spread:.3g} in the brain "
            f"({100 * spread / max(mean, 1e-9):.1f} % of the mean synthetic value).")


def _metric_rows(row: dict | None) -> list[dict]:
    """A session's metrics for its report card: name, readable label and description (from
    the group tables' column descriptions) and value."""
    keys = ("pearson_r", "pearson_r_smooth", "mse", "normdiff", "percdiff", "ssim", "psnr",
            "cnr_synth", "cnr_true", "baseline_pearson_r")
    rows = []
    for key in keys:
        if row is not None and key in row:
            about = describe_column("group_metrics", key) or {}
            rows.append({"name": key, "label": about.get("LongName", key),
                         "help": about.get("Description", ""), "units": about.get("Units", ""),
                         "value": row[key]})
    return rows


def participant_report(out: Path, subject: str) -> Path:
    """Write ``sub-<subject>.html`` (+ figures) from what exists in OUTPUT_DIR."""
    out = Path(out)
    root = out / f"sub-{subject}"
    figdir = root / "figures"
    metrics = read_tsv(out / "group_metrics.tsv")
    sessions = []
    for anat in sorted(root.glob("**/anat")):
        for t1 in sorted(anat.glob("*_desc-preproc_T1w.nii.gz")):
            name = t1.name.split("_desc-")[0]
            pet = anat.parent / "pet"
            img = nib.load(t1)
            suv = find_pet(pet, name, desc="suv", space="T1w")
            row = (metrics[metrics.bids_name == name].iloc[0].to_dict()
                   if metrics is not None and (metrics.bids_name == name).any() else None)
            sessions.append({
                "name": name,
                "t1w": {"shape": "×".join(map(str, img.shape)),
                        "zooms": " × ".join(f"{z:.2f}" for z in img.header.get_zooms()[:3]),
                        "orientation": "".join(nib.aff2axcodes(img.affine))},
                "pet": [{"file": p.name, **{k: _sidecar(p).get(k) for k in (
                    "SUVWindow", "InjectedRadioactivityBq", "BodyWeight", "BodyWeightSource")}}
                        for p in suv],
                "synth": _sidecar(pet / f"{name}_space-T1w_desc-synth_pet.nii.gz"),
                "figures": _session_figures(out, anat, pet, name, figdir),
                "metrics": _metric_rows(row),
            })
    html = ENV.get_template("participant.html.j2").render(
        subject=subject, sessions=sessions, errors=run_errors(out, f"sub-{subject}"),
        version=__version__, citation=CITATION, methods=METHODS,
        date=time.strftime("%Y-%m-%d %H:%M"))
    return write_text_atomic(report_path(out, subject), html)
