"""Template-space evaluation of the out-of-fold maps: regions, specificity, cohort table.

Writes ``group_regions.tsv`` (one row per session and region), ``group_region_stats.tsv``
(one row per region), the same two for the paper's atlas (``group_paper_regions.tsv``,
``group_paper_region_stats.tsv``: :func:`~bids_tspo.io.atlases.paper_atlas`),
``group_specificity.tsv`` and ``group_cohort.tsv`` in OUTPUT_DIR, and the voxelwise
across-subject correlation map (:mod:`.across_subject`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..io.atlases import harvard_oxford, paper_atlas
from ..io.columns import write_table
from ..io.derivatives import SessionFiles, pet_path
from ..io.spaces import resolve_template
from ..model.targets import apply_scale, imaged_part, pet_target, scale_t1, target_units, to_units
from ..preprocess.images import resample_with_transforms
from ..preprocess.reference import reference_region
from .across_subject import write_across_subject
from .group_maps import SubjectMeans
from .metrics import all_metrics, smooth
from .statistics import cohort_summary, region_stats, region_values, specificity

LOG = logging.getLogger(__name__)


def _labels_on(template_img: nib.Nifti1Image, atlas=harvard_oxford
               ) -> tuple[np.ndarray, dict[int, str]]:
    """``atlas()``'s labels on the template's grid (nearest neighbour)."""
    from nilearn.image import resample_to_img

    labels, names = atlas()
    on = resample_to_img(labels, template_img, interpolation="nearest", force_resample=True,
                         copy_header=True)
    return np.asarray(on.dataobj).astype(np.int16), names


def _session_images(out: Path, files: SessionFiles, target: str, tpl_img, tpl_mask,
                    region: np.ndarray | None = None, scale=None):
    session = files.record
    xfm = files.xfm()
    if xfm is None:
        return None
    tpl_name, xfm_path = xfm
    suv_path = files.suv_in(tpl_name)
    synth_path = pet_path(out, session, desc="synth", space=tpl_name)
    if suv_path is None or not synth_path.is_file():
        return None
    suv = np.asarray(nib.load(suv_path).dataobj, np.float32)
    imaged = imaged_part(suv, tpl_mask)
    # the session's own target normalisation (``scale``), as on the T1w grid
    true = to_units(apply_scale(suv, imaged, scale) if scale is not None
                    else pet_target(suv, imaged, target, region), target)
    synth = np.asarray(nib.load(synth_path).dataobj, np.float32) * tpl_mask
    t1 = nib.load(files.t1w)
    t1_tpl = resample_with_transforms(np.asarray(t1.dataobj, np.float32), t1.affine, tpl_img,
                                      [xfm_path])
    t1w = scale_t1(np.asarray(t1_tpl.dataobj, np.float32), tpl_mask)
    return true, synth, t1w, imaged


def write_region_tables(out: Path, paired: list[SessionFiles], folds: dict[str, int],
                        target: str, seed: int = 0, reference: str = "wholebrain",
                        baselines: dict | None = None, scales: dict | None = None
                        ) -> tuple[dict[str, pd.DataFrame], dict]:
    """Region tables, and per-session metrics in template space (keys suffixed ``_tpl``);
    ``baselines``: subject → its fold's training mean (:func:`~.baseline.training_mean`), the
    population value of the region tables and the control of the across-subject map;
    ``scales``: each session's target normalisation (its prepared ``pet_scale``)."""
    baselines = baselines or {}
    tpl_img, tpl_mask_img = resolve_template(2).load()
    tpl_mask = np.asarray(tpl_mask_img.dataobj) > 0.5
    region = reference_region(reference, tpl_mask_img, tpl_mask) if target == "suvr" else None
    labels, names = _labels_on(tpl_mask_img)
    labels = labels * tpl_mask
    paper, paper_names = _labels_on(tpl_mask_img, paper_atlas)
    paper, paper_rows = paper * tpl_mask, []
    zooms = tpl_mask_img.header.get_zooms()[:3]
    rows, synths, trues, scored, subject_of, tpl_metrics = [], {}, {}, {}, {}, {}
    cohort, cohort_subjects = {"original": [], "synthesized": [], "smoothed": []}, []
    means = SubjectMeans()
    for files in paired:
        images = _session_images(out, files, target, tpl_img, tpl_mask, region,
                                 (scales or {}).get(files.name))
        if images is None:
            LOG.warning("%s: no template-space maps; left out of the region analysis", files.name)
            continue
        true, synth, t1w, imaged = images  # regions and metrics: the part the PET imaged
        smooth_true = smooth(true, zooms, mask=imaged)
        population = _population(baselines.get(files.subject), imaged, target, region)
        base = {"bids_name": files.name, "participant_id": f"sub-{files.subject}",
                "session_id": f"ses-{files.session}" if files.session else "n/a",
                "group": files.group, "genotype": files.genotype,
                "fold": folds.get(files.subject, -1),
                # the pseudo-reference of the group comparisons (evaluation.beyond)
                "true_smooth_brain_mean": float(smooth_true[imaged].mean()),
                "synth_brain_mean": float(synth[imaged].mean())}
        rows += [base | r for r in region_values(labels * imaged, names, true, smooth_true,
                                                 synth, t1w, baseline=population)]
        paper_rows += [base | r for r in region_values(paper * imaged, paper_names, true,
                                                       smooth_true, synth, t1w,
                                                       baseline=population)]
        scores = all_metrics(synth, true, imaged, zooms, seed=seed)
        tpl_metrics[files.name] = {f"{k}_tpl": v for k, v in scores.items()}
        # kept for the subject-specificity table, as vectors over the template brain (a
        # quarter of the full grid: all sessions' maps are held at once)
        synths[files.name], trues[files.name], scored[files.name] = (
            synth[tpl_mask], smooth_true[tpl_mask], imaged[tpl_mask])
        subject_of[files.name] = files.subject
        means.add(files.subject, true, synth, imaged, population)
        cohort["original"].append(float(true[imaged].mean()))
        cohort["synthesized"].append(float(synth[imaged].mean()))
        cohort["smoothed"].append(float(smooth_true[imaged].mean()))
        cohort_subjects.append(files.subject)
    tables = {"regions": pd.DataFrame(rows)}
    if rows:
        tables["region_stats"] = region_stats(tables["regions"])
        tables["paper_regions"] = pd.DataFrame(paper_rows)
        tables["paper_region_stats"] = region_stats(tables["paper_regions"])
        tables["specificity"] = specificity(synths, trues, scored, subject_of)
        tables["cohort"] = cohort_summary(cohort, cohort_subjects)
    for key, table in tables.items():
        write_table(out, f"group_{key}", table)
    means.write(out, resolve_template(2).name, tpl_mask_img.affine, target_units(target))
    if len(means):
        write_across_subject(out, resolve_template(2).name, tpl_mask_img.affine, tpl_mask,
                             means.stacks(tpl_mask))
    return tables, tpl_metrics


def _population(mean, imaged: np.ndarray, target: str, region) -> np.ndarray | None:
    """The fold's training-mean map in the target's units (a mean of training targets, taken
    as it is, like the U-Net's map), zero outside ``imaged``."""
    if mean is None:
        return None
    return to_units(np.where(imaged, mean[0], 0.0), target).astype(np.float32)
