"""Template-space head model of the phantom: T1w contrast, tissues and a TSPO-like SUV map.

The brain is nilearn's MNI152 (ICBM 2009a) template with its grey/white-matter maps; around it
a scalp is synthesised in layers (CSF, inner table, diploë, outer table, muscle, fat, skin),
with eyes and a neck, so that brain extraction meets a realistic full-head image.

The SUV map follows [11C]PBR28 at 60-90 min in a high-affinity binder: grey matter ~1, white
matter lower, thalamus, brainstem and cerebellum high, a bright venous sinus (vascular TSPO)
and choroid plexus, bone marrow and muscle moderate (sources in docs/phantom.md). Patient groups add regional increases (thalamus, sensorimotor
cortex, cingulate; Loggia et al. 2015, Alshelh et al. 2022) that leave a subtle T1w
hypointensity, so the MRI carries part of the signal.

>>> model = build_head_model(resolution=2)
>>> model.t1w.shape == model.suv.shape
True
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..io.atlases import harvard_oxford, region_ids, tissue_priors

# Tissue labels of the phantom's segmentation (written to the truth as a dseg).
TISSUES = {0: "background", 1: "CSF", 2: "GM", 3: "WM", 4: "bone", 5: "marrow",
           6: "muscle", 7: "fat", 8: "skin", 9: "eye", 10: "venous_sinus",
           11: "choroid_plexus"}

# Scalp layers: (outer distance from the head core in mm, T1w intensity, SUV, tissue label)
SCALP_LAYERS = [
    (2.5, 0.12, 0.15, 1),   # CSF
    (4.5, 0.05, 0.20, 4),   # inner table
    (6.5, 0.55, 0.70, 5),   # diploë (marrow binds TSPO)
    (8.0, 0.05, 0.20, 4),   # outer table
    (10.5, 0.32, 0.50, 6),  # galea / muscle
    (13.5, 0.85, 0.12, 7),  # subcutaneous fat
    (15.0, 0.45, 0.30, 8),  # skin
]
SUV_TISSUE = {"gm": 1.0, "wm": 0.62, "csf": 0.15, "sinus": 1.9, "eye": 0.10,
              "choroid": 1.6}
REGION_FACTORS = {  # multiplicative factors on brain SUV
    "Thalamus": 1.35, "Brain-Stem": 1.30, "Putamen": 1.05, "Pallidum": 1.10,
    "Caudate": 0.95, "Hippocampus": 1.0, "Amygdala": 1.05,
}
CEREBELLUM_FACTOR = 1.25
# Regional fractional SUV increases per diagnostic group (before subject severity).
GROUP_EFFECTS = {
    "HC": {},
    "CLBP": {"Thalamus": 0.20, "Postcentral": 0.12, "Precentral": 0.10},
    "KOA": {"Thalamus": 0.15, "Cingulate_Gyrus_anterior": 0.10, "Postcentral": 0.08},
}
T1W_TRACE = 0.15  # fractional T1w darkening per unit of fractional SUV increase


@dataclass(frozen=True)
class HeadModel:
    """Maps on one template-space canvas (``affine``), all float32 unless stated."""

    affine: np.ndarray
    t1w: np.ndarray        # T1w contrast, white matter ~1
    suv: np.ndarray        # HAB healthy SUV at 60-90 min
    brain: np.ndarray      # uint8 brain mask
    tissue: np.ndarray     # uint8 labels, see TISSUES
    sinus: np.ndarray      # venous sinus weight 0..1 (vascular kinetics)
    effects: dict          # group -> fractional increase map
    # Per unit of a person's deviation field (see Individual): the change of T1w and of SUV
    # where grey matter is gained from white matter (channels 0, 1; cortical thickness and
    # GM density differ between people) and where grey matter is lost to CSF (2, 3; atrophy).
    variation: np.ndarray  # (4, *shape)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.t1w.shape


def _canvas(template: nib.Nifti1Image, pad_below_mm: float = 40.0) -> nib.Nifti1Image:
    """Pad the template downwards so the neck fits."""
    zoom = float(template.header.get_zooms()[2])
    pad = int(round(pad_below_mm / zoom))
    data = np.pad(np.asarray(template.dataobj, dtype=np.float32), ((0, 0), (0, 0), (pad, 0)))
    affine = template.affine.copy()
    affine[:3, 3] -= affine[:3, 2] * pad
    return nib.Nifti1Image(data, affine)


def _on(img: nib.Nifti1Image, ref: nib.Nifti1Image, interp: str = "continuous") -> np.ndarray:
    from nilearn.image import resample_to_img

    out = resample_to_img(img, ref, interpolation=interp, force_resample=True,
                          copy_header=True)
    return np.asarray(out.dataobj, dtype=np.float32)


def _world(shape, affine) -> np.ndarray:
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    xyz = affine[:3, :3].astype(np.float32) @ ijk + affine[:3, 3:4].astype(np.float32)
    return xyz.reshape((3, *shape))


def _smooth_field(shape, rng, sigma_vox: float, amplitude: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return amplitude * field / (field.std() + 1e-6)


def build_head_model(resolution: int = 2, seed: int = 0) -> HeadModel:
    """Build the template-space head model at 1 or 2 mm (deterministic for ``seed``)."""
    from nilearn import datasets

    rng = np.random.default_rng(seed)
    ref = _canvas(datasets.load_mni152_template(resolution=resolution))
    zoom = float(ref.header.get_zooms()[0])
    shape = ref.shape
    t1 = np.clip(np.asarray(ref.dataobj, dtype=np.float32), 0, None)
    t1 = t1 / np.percentile(t1[t1 > 0], 99)
    brain = _on(datasets.load_mni152_brain_mask(resolution=resolution), ref, "nearest") > 0.5
    gm_img, wm_img = tissue_priors(resolution)
    gm = np.clip(_on(gm_img, ref), 0, 1) * brain
    wm = np.clip(_on(wm_img, ref), 0, 1) * brain
    csf = np.clip(1.0 - gm - wm, 0, 1) * brain
    x, y, z = _world(shape, ref.affine)

    # head core = brain + neck column; scalp layers follow the distance from it
    neck = (z < -30) & (((x / 38.0) ** 2 + ((y + 28) / 42.0) ** 2) < 1.0)
    face = ((x / 46.0) ** 2 + ((y - 30) / 42.0) ** 2 + ((z + 52) / 30.0) ** 2) < 1.0
    neck |= face & ~brain
    core = brain | neck
    dist = ndimage.distance_transform_edt(~core, sampling=zoom).astype(np.float32)
    dist = dist - _smooth_field(shape, rng, 6.0 / zoom, 0.8)  # uneven layer thickness
    temporal = np.exp(-(((np.abs(x) - 62) / 10) ** 2 + ((z - 5) / 22) ** 2))
    tissue = np.zeros(shape, np.uint8)
    t1w = np.zeros(shape, np.float32)
    suv = np.zeros(shape, np.float32)
    inner = 0.0
    for outer, t1_value, suv_value, label in SCALP_LAYERS:
        outer_mm = outer + (4.0 * temporal if label >= 6 else 0.0)  # temporalis muscle
        layer = ~core & (dist > inner) & (dist <= outer_mm)
        tissue[layer], t1w[layer], suv[layer] = label, t1_value, suv_value
        inner = outer_mm
    # neck: muscle with a spinal cord and a vertebral body
    tissue[neck & ~brain], t1w[neck & ~brain], suv[neck & ~brain] = 6, 0.32, 0.5
    vert = neck & ~brain & ((x**2 + (y + 20) ** 2) < 10.0**2)
    cord = neck & ~brain & ((x**2 + (y + 40) ** 2) < 5.0**2)
    tissue[vert], t1w[vert], suv[vert] = 5, 0.5, 0.7
    tissue[cord], t1w[cord], suv[cord] = 3, 0.75, 0.7
    # eyes in orbital fat
    for side in (-1, 1):
        r = np.sqrt((x - side * 32) ** 2 + (y - 52) ** 2 + (z + 36) ** 2)
        orbit = (r < 15) & ~brain & (dist > 2.0)
        tissue[orbit], t1w[orbit], suv[orbit] = 7, 0.8, 0.12
        eye = (r < 11) & ~brain & (dist > 3.0)
        tissue[eye], t1w[eye], suv[eye] = 9, 0.10, SUV_TISSUE["eye"]

    # venous sinuses: superior sagittal (midline, top) and transverse (occipital)
    shell = ~core & (dist > 0.5) & (dist < 5.0)
    sss = shell & (np.abs(x) < 4.0) & (z > -5) & (y > -100)
    transverse = shell & (z > -30) & (z < -5) & (y < -65) & (np.abs(x) > 5)
    sinus_mask = sss | transverse
    sinus = ndimage.gaussian_filter(sinus_mask.astype(np.float32), 1.0 / zoom)
    sinus = np.clip(sinus * 1.5, 0, 1) * (~brain)
    tissue[sinus_mask] = 10
    t1w = np.where(sinus_mask, 0.35, t1w)

    # brain: template contrast, SUV from tissue fractions and regional factors
    labels_img, names = harvard_oxford()
    labels = _on(labels_img, ref, "nearest").astype(np.int16) * brain
    factor = np.ones(shape, np.float32)
    for key, value in REGION_FACTORS.items():
        factor[np.isin(labels, region_ids(names, key))] = value
    cerebellum = brain & (y < -40) & (z < -8) & ~np.isin(labels, region_ids(names, "Brain-Stem"))
    cerebellum &= ~np.isin(labels, [i for i in names if "Cortex" in names[i] or "Pole" in names[i]
                                    or "Gyrus" in names[i]]) | (z < -25)
    factor[cerebellum] = CEREBELLUM_FACTOR
    factor = ndimage.gaussian_filter(factor, 1.5 / zoom)
    brain_suv = (gm * SUV_TISSUE["gm"] + wm * SUV_TISSUE["wm"] + csf * SUV_TISSUE["csf"]) * factor
    suv = np.where(brain, brain_suv, suv) * (1 - sinus) + sinus * SUV_TISSUE["sinus"]
    # choroid plexus glomus in the atria of the lateral ventricles (high constitutive TSPO)
    choroid = (np.isin(labels, region_ids(names, "Lateral_Ventricle")) & (csf > 0.5)
               & (y < -30) & (z > 5) & (z < 22))
    suv = np.where(choroid, SUV_TISSUE["choroid"], suv)
    t1w = np.where(brain, t1, t1w)
    tissue = np.where(brain, np.select([wm >= np.maximum(gm, csf), gm >= csf], [3, 2], 1), tissue)
    tissue[choroid] = 11

    variation = _variation_maps(t1, gm, wm, csf, factor, brain, sinus)
    effects = {}
    for group, regions in GROUP_EFFECTS.items():
        effect = np.zeros(shape, np.float32)
        for key, value in regions.items():
            effect[np.isin(labels, region_ids(names, key))] = value
        effects[group] = ndimage.gaussian_filter(effect, 2.0 / zoom) * brain
    return HeadModel(affine=ref.affine, t1w=t1w.astype(np.float32), suv=suv.astype(np.float32),
                     brain=brain.astype(np.uint8), tissue=tissue.astype(np.uint8),
                     sinus=sinus.astype(np.float32), effects=effects, variation=variation)


def _variation_maps(t1, gm, wm, csf, factor, brain, sinus) -> np.ndarray:
    """T1w and SUV change per unit deviation: GM gained from WM (capacity gm·wm, at most 1/4
    at a 50/50 boundary) and GM lost to CSF (capacity gm·csf), with the template's own tissue
    contrasts (median T1w of voxels >= 90 % one tissue) and the SUV model's."""
    t1_of = {k: float(np.median(t1[brain & (f >= 0.9)])) for k, f in
             (("gm", gm), ("wm", wm), ("csf", csf))}
    suv_scale = factor * (1 - sinus) * brain
    from_wm, to_csf = gm * wm, gm * csf
    return np.stack([
        from_wm * (t1_of["gm"] - t1_of["wm"]),
        from_wm * (SUV_TISSUE["gm"] - SUV_TISSUE["wm"]) * suv_scale,
        to_csf * (t1_of["csf"] - t1_of["gm"]),
        to_csf * (SUV_TISSUE["csf"] - SUV_TISSUE["gm"]) * suv_scale,
    ]).astype(np.float32)
