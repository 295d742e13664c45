"""Quality-control numbers of a preprocessed session, recorded in the T1w sidecar
(``QualityControl``) at the participant level and gathered by the reports.

* ``TemplateCorrelation``: Pearson r between the T1w warped to the 2 mm template and the
  template, inside its brain mask, both smoothed at 4 mm (:func:`bids_tspo.evaluation.metrics.
  template_similarity`): 0.91 for a real 3T MPRAGE with the standard preset, 0.96 for the
  Colin27 average; markedly lower values point at a failed registration.
* ``BrainVolume``: the brain mask's volume in mL (a failed extraction stands out from the
  cohort).
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

LOG = logging.getLogger(__name__)
QC_TEMPLATE_RES = 2
FWHM_MM = 4.0


def warped_correlation(warped: nib.Nifti1Image, tpl_img: nib.Nifti1Image,
                       tpl_mask: nib.Nifti1Image) -> float:
    """r of a T1w already warped onto the QC template grid (see module docstring)."""
    from ..evaluation.metrics import template_similarity

    return template_similarity(np.asarray(warped.dataobj, np.float32),
                               np.asarray(tpl_img.dataobj, np.float32),
                               np.asarray(tpl_mask.dataobj) > 0.5,
                               tpl_img.header.get_zooms()[:3], FWHM_MM)


def template_correlation(t1w: nib.Nifti1Image, to_template: Path) -> tuple[str, float]:
    """(template name, r) of a T1w and its T1w->template transform."""
    from ..io.spaces import resolve_template
    from .images import resample_with_transforms

    template = resolve_template(QC_TEMPLATE_RES)
    tpl_img, tpl_mask = template.load()
    warped = resample_with_transforms(np.asarray(t1w.dataobj, np.float32), t1w.affine, tpl_img,
                                      [str(to_template)])
    return template.name, warped_correlation(warped, tpl_img, tpl_mask)


def brain_volume_ml(mask: nib.Nifti1Image) -> float:
    """Volume of a binary mask in mL.

    >>> brain_volume_ml(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), np.eye(4) * 2))
    8.0
    """
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(mask.affine, float)[:3, :3])))
    return round(float((np.asarray(mask.dataobj) > 0).sum()) * voxel_mm3 / 1000.0, 1)


def anat_qc(name: str, t1w: nib.Nifti1Image, brain_mask: nib.Nifti1Image,
            to_template: Path) -> dict:
    """The ``QualityControl`` entry of a session's preprocessed-T1w sidecar."""
    template, r = template_correlation(t1w, to_template)
    volume = brain_volume_ml(brain_mask)
    LOG.info("%s: T1w-template correlation in the template brain (4 mm): %.3f; brain volume "
             "%.0f mL", name, r, volume)
    return {"TemplateCorrelation": round(r, 4), "TemplateCorrelationFWHM": FWHM_MM,
            "TemplateCorrelationTemplate": template, "BrainVolume": volume,
            "BrainVolumeUnits": "mL"}
