"""Head-motion correction of the PET frames in the SUV window, on the phantom: a session whose
head moved 70 min after injection, and still ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bids_tspo.phantom.truth import session_pet
from bids_tspo.preprocess.anat import seed_ants
from bids_tspo.preprocess.motion import displacement_mm, realign_frames
from bids_tspo.preprocess.pet import WeightLookup, compute_suv
from bids_tspo.preprocess.presets import load_preset


def _suv_against_truth(bids, name: str, realign: bool):
    """(r of the SUV map with the true SUV in the brain on the PET grid, SUV metadata, truth)."""
    pet = session_pet(bids, name)
    settings = load_preset(sloppy=True)["pet_motion"]
    out = compute_suv(pet.data, pet.affine, pet.sidecar, Path(f"{name}_pet.nii.gz"),
                      WeightLookup(pet.truth["weight_kg"], "x"), (60, 90),
                      (lambda f, w: realign_frames(f, pet.affine, w, settings)) if realign
                      else None)
    return pet.r(out.data), out.metadata, pet.truth


def test_realignment_recovers_a_moved_head_and_leaves_still_ones(tiny_bids):
    """Still frames of the 4 mm phantom move by 0.15-0.6 mm by chance of the metric's sampling
    (the app seeds it; so does this test); the moved head's frames by 5 mm."""
    seed_ants(42)
    r_moved, meta, truth = _suv_against_truth(tiny_bids, "sub-02_ses-01", realign=True)
    r_plain, plain, _ = _suv_against_truth(tiny_bids, "sub-02_ses-01", realign=False)
    assert "pet_head_motion" in truth  # the phantom moved this head from 70 min on
    assert r_moved > r_plain + 0.03 and r_moved > 0.95, (r_moved, r_plain)
    moved = np.asarray(meta["FrameDisplacement"])
    late = np.arange(len(moved)) >= truth["pet_head_motion_from_frame"] - meta["FramesUsed"][0]
    assert moved[late].min() > 2.0 and moved[~late].max() < 1.0, moved  # 1/4 voxel
    assert "MotionCorrection" in meta and "FrameDisplacement" not in plain
    r_still, still, _ = _suv_against_truth(tiny_bids, "sub-01_ses-01", realign=True)
    r_still_plain, _, _ = _suv_against_truth(tiny_bids, "sub-01_ses-01", realign=False)
    assert abs(r_still - r_still_plain) < 0.005 and max(still["FrameDisplacement"]) < 1.0


def test_displacement_of_a_known_rigid_transform(tmp_path):
    import ants

    tx = ants.create_ants_transform(transform_type="Euler3DTransform", dimension=3,
                                    translation=(3.0, 4.0, 0.0))
    path = tmp_path / "t.mat"
    ants.write_transform(tx, str(path))
    assert displacement_mm(path, np.zeros(3)) == pytest.approx(5.0)  # a pure shift: its length
    rot = ants.create_ants_transform(transform_type="Euler3DTransform", dimension=3,
                                     parameters=(0.0, 0.0, np.deg2rad(2.0), 0.0, 0.0, 0.0))
    ants.write_transform(rot, str(path))
    # 2 degrees about z: the four in-plane points move 2*50*sin(1 deg), the two on z not at all
    assert displacement_mm(path, np.zeros(3)) == pytest.approx(4 * 100 * np.sin(np.deg2rad(1))
                                                               / 6, rel=1e-3)


def test_nothing_to_align():
    frames = np.ones((8, 8, 8, 2), np.float32)
    assert realign_frames(frames, np.eye(4), np.ones(2), None)[1] is None
    assert realign_frames(frames[..., :1], np.eye(4), np.ones(1), {"type": "Rigid"})[1] is None


def test_known_shift_recovered_and_unimaged_edge_left_out():
    seed_ants(42)
    """A texture shifted by 3 voxels (6 mm) in the second frame: realigned onto the first, the
    displacement is 6 mm, the slab the shifted frame never imaged is NaN and the window mean
    there comes from the first frame alone."""
    from scipy import ndimage

    from bids_tspo.preprocess.pet import _window_mean

    texture = ndimage.gaussian_filter(np.random.default_rng(0).random((64, 64, 64)), 3)
    blob = 100 * (texture - texture.min()) / np.ptp(texture)  # no symmetry to hide a rotation
    shifted = np.roll(blob, 3, axis=0)
    shifted[:3] = 0  # the scanner saw nothing beyond its field of view
    frames = np.stack([blob, shifted], -1).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    aligned, moved = realign_frames(frames, affine, np.array([0.6, 0.4]),
                                    load_preset(sloppy=True)["pet_motion"])
    assert moved[0] == 0 and moved[1] == pytest.approx(6.0, abs=0.6)  # 128 mm FOV
    assert np.isnan(aligned[-2:, :, :, 1]).all() and not np.isnan(aligned[:-4, :, :, 1]).any()
    inner = (slice(8, 56),) * 3
    assert np.abs(aligned[inner + (1,)] - blob[inner]).max() < 0.1 * blob.max()
    mean = _window_mean(aligned, np.array([0.6, 0.4]), np.ones(2))
    assert np.isfinite(mean).all() and np.allclose(mean[-2:], blob[-2:])
