"""Model-ready arrays: a PET that missed part of the brain is trained on its imaged part only."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from bids_tspo.io.derivatives import SessionFiles, fov_mask_for
from bids_tspo.model.data import VolumeDataset, prepare

AFFINE = np.diag([8.0, 8, 8, 1])  # 24 voxels of 8 mm: the model box's 192 mm


def _session(tmp_path, with_fov: bool) -> SessionFiles:
    grid = np.indices((24, 24, 24)).astype(np.float32)
    brain = ((grid - 11.5) ** 2).sum(0) < 8.0**2
    fov = grid[2] < 15                                   # the PET missed the top slices
    suv = np.where(brain & fov, 1.0 + grid[0] / 23, 0.0)  # SUV 1-2 where imaged, 0 elsewhere
    paths = {}
    for key, data in (("T1w", brain * 100.0), ("mask", brain), ("suv", suv)):
        name = {"T1w": "sub-x_desc-preproc_T1w", "mask": "sub-x_desc-brain_mask",
                "suv": "sub-x_trc-PBR28_space-T1w_desc-suv_pet"}[key]
        folder = tmp_path / ("pet" if key == "suv" else "anat")  # as in OUTPUT_DIR
        folder.mkdir(exist_ok=True)
        paths[key] = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), paths[key])
    if with_fov:
        nib.save(nib.Nifti1Image(fov.astype(np.uint8), AFFINE), fov_mask_for(paths["suv"]))
    return SessionFiles("sub-x", "x", None, paths["T1w"], paths["mask"], paths["suv"])


def test_targets_and_loss_mask_leave_out_what_the_pet_did_not_image(tmp_path):
    files = _session(tmp_path, with_fov=True)
    assert files.fov is not None
    item = prepare(files, 24, "minmax")
    brain, imaged = item["mask"][0] > 0, item["pet_mask"][0] > 0
    assert imaged.sum() < 0.85 * brain.sum() and not (imaged & ~brain).any()
    # min-max over the imaged brain: SUV 1 -> 0, SUV 2 -> 1 (not the unimaged zeros -> 0)
    assert item["pet"][0][imaged].min() < 0.1 and item["pet"][0][imaged].max() > 0.9
    sample = VolumeDataset([item])[0]
    assert torch.equal(sample["mask"], torch.as_tensor(item["pet_mask"]))  # the loss mask

    (tmp_path / "old").mkdir()
    before = _session(tmp_path / "old", with_fov=False)  # derivatives of earlier versions
    assert before.fov is None
    item = prepare(before, 24, "minmax")
    assert (item["pet_mask"] == item["mask"]).all()
    assert item["pet"][0][imaged].min() > 0.4  # the zeros set the minimum


def test_native_maps_keep_the_brain_edge(tmp_path):
    """A uniform prediction in the coarse model box comes back uniform on the finer T1w grid,
    edge voxels included (plain trilinear mapping mixed in the zeros outside the box mask)."""
    from bids_tspo.model.maps import native_maps

    affine = np.diag([3.0, 3, 3, 1])
    grid = np.indices((48, 48, 48)).astype(np.float32)
    brain = ((grid - 23.5) ** 2).sum(0) < 20.0**2
    t1 = nib.Nifti1Image((brain * 100.0).astype(np.float32), affine)
    paths = {k: tmp_path / f"sub-y_{k}.nii.gz" for k in ("desc-preproc_T1w", "desc-brain_mask")}
    nib.save(t1, paths["desc-preproc_T1w"])
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), paths["desc-brain_mask"])
    item = prepare(SessionFiles("sub-y", "y", None, *paths.values()), 24, "minmax")
    uniform = 0.6 * item["mask"][0]                     # what ensemble() returns: masked
    synth = native_maps(item, uniform, None, "minmax", t1, brain)["synth"]
    inside = synth[brain]
    assert (synth[~brain] == 0).all()
    assert np.mean(np.abs(inside - 0.6) < 1e-4) > 0.98  # all but voxels the box mask misses
    assert inside.min() >= 0.0 and inside.max() <= 0.6 + 1e-4


def test_template_warp_of_a_brain_map_keeps_its_edge(tmp_path):
    """Maps defined on a brain only (synthetic maps, the training-mean baseline) keep their
    values at the brain's edge through an ANTs transform; plain interpolation halves them."""
    import ants

    from bids_tspo.preprocess.images import resample_normalised, resample_with_transforms

    identity = str(tmp_path / "identity.mat")
    ants.write_transform(ants.create_ants_transform(dimension=3), identity)
    grid = np.indices((32, 32, 32)).astype(np.float32)
    brain = ((grid - 15.5) ** 2).sum(0) < 12.0**2
    like = nib.Nifti1Image(np.zeros((48, 48, 48), np.float32), np.diag([2.0, 2, 2, 1]))
    coarse = np.diag([3.0, 3, 3, 1])
    plain = np.asarray(resample_with_transforms(0.6 * brain, coarse, like, [identity]).dataobj)
    kept = np.asarray(resample_normalised([0.6 * brain], coarse, like, [identity], brain,
                                          floor=0.5)[0].dataobj)
    assert plain[plain > 0].min() < 0.1                  # the edge pulled towards zero
    assert np.allclose(kept[kept > 0], 0.6, atol=1e-4)    # every kept voxel keeps its value
    # kept: template voxels lying mostly inside the brain; about the brain's own volume
    assert abs((kept > 0).sum() * 8 - brain.sum() * 27) < 0.05 * brain.sum() * 27
