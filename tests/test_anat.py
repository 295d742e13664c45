"""T1w intensity correction: the second, brain-restricted N4 pass."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from bids_tspo.preprocess.anat import n4, n4_in_brain
from bids_tspo.preprocess.images import to_ants
from bids_tspo.preprocess.presets import load_preset


def _head(n: int = 48, voxel: float = 4.0):
    """A head: brain (WM core, GM shell) inside a bright scalp, under a smooth bias field."""
    ijk = np.indices((n, n, n), dtype=np.float32) - (n - 1) / 2
    r = np.sqrt((ijk ** 2).sum(axis=0)) / (n / 2)
    brain, wm = r < 0.7, r < 0.45
    tissue = np.where(wm, 100.0, np.where(brain, 65.0, np.where(r < 0.9, 160.0, 0.0)))
    field = np.exp(0.25 * ijk[2] / (n / 2) + 0.1 * ijk[0] / (n / 2))  # inferior-superior shading
    rng = np.random.default_rng(0)
    data = (tissue * field + rng.normal(0, 1.0, tissue.shape) * (tissue > 0)).astype(np.float32)
    affine = np.diag([voxel, voxel, voxel, 1.0])
    return nib.Nifti1Image(data, affine), brain, wm


def _cv(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


def test_brain_restricted_n4_flattens_white_matter():
    img, brain, wm = _head()
    preset = load_preset()
    assert preset.get("n4_brain"), "the standard preset refits N4 in the brain"
    head = to_ants(np.asarray(img.dataobj), img.affine)
    whole = n4(head, preset)
    refined = n4_in_brain(whole, brain, img, preset)
    before = _cv(np.asarray(img.dataobj)[wm])
    after_head, after_brain = _cv(whole.numpy()[wm]), _cv(refined.numpy()[wm])
    # the shading (±25 %) dominates the white-matter spread before correction; the whole-head
    # pass, pulled by the bright scalp, leaves part of it, which the refit inside the brain removes
    assert after_head < before
    assert after_brain < 0.8 * after_head
    # grey/white contrast survives the correction
    gm = brain & ~wm
    ratio = refined.numpy()[wm].mean() / refined.numpy()[gm].mean()
    assert 1.3 < ratio < 1.8


def test_preset_without_brain_pass_keeps_the_image():
    img, brain, _ = _head(16)
    head = to_ants(np.asarray(img.dataobj), img.affine)
    preset = {k: v for k, v in load_preset().items() if k != "n4_brain"}
    assert n4_in_brain(head, brain, img, preset) is head


def test_head_region_is_the_ellipsoid_in_world_coordinates():
    from bids_tspo.preprocess.anat import head_region

    affine = np.array([[-0.996, 0.078, 0.039, 40.0], [0.043, 0.055, 0.998, -60.0],
                       [-0.076, -0.995, 0.058, 50.0], [0, 0, 0, 1]]) * [[3], [3], [3], [1]]
    affine[3, 3] = 1.0
    shape, semi = (30, 40, 35), (40.0, 50.0, 30.0)
    centre = affine[:3, :3] @ (np.array(shape) / 2 + [3, -2, 1]) + affine[:3, 3]
    ijk = np.indices(shape).reshape(3, -1)
    xyz = affine[:3, :3] @ ijk + affine[:3, 3:4] - centre[:, None]
    expected = (((xyz / np.array(semi)[:, None]) ** 2).sum(0) <= 1).reshape(shape)
    got = head_region(shape, affine, centre, semi)
    assert 0 < expected.sum() < expected.size
    assert (got != expected).sum() <= 2  # float32 rounding on the surface only


def test_dilation_in_the_bounding_box_equals_the_full_grid():
    from scipy import ndimage

    from bids_tspo.preprocess.anat import _dilate

    rng = np.random.default_rng(1)
    mask = np.zeros((40, 50, 45), bool)
    mask[10:25, 15:35, 12:30] = rng.random((15, 20, 18)) > 0.6
    zooms = (1.0, 1.5, 2.0)
    full = ndimage.distance_transform_edt(~mask, sampling=zooms) <= 5.0
    assert np.array_equal(_dilate(mask, 5.0, zooms), full)
    assert not _dilate(np.zeros((5, 5, 5), bool), 5.0, zooms).any()


def test_arrays_reach_ants_without_unit_warnings(capfd):
    """ITK printed two 'units are unknown' warnings for every array handed to ANTs (hundreds
    of lines per run); the NIfTI header now states mm and seconds."""
    image = to_ants(np.ones((12, 12, 12), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    captured = capfd.readouterr()
    assert "unknown" not in captured.out + captured.err
    assert image.spacing == (2.0, 2.0, 2.0)
