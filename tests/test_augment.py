"""Batch augmentation on the training device: seeded, shared geometry, MONAI-equivalent."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from bids_tspo.model.augment import GAMMA, ROTATE_RAD, SCALE, BatchAugment, Draw, _matrix, apply


def _volumes(batch=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    t1 = torch.rand(batch, 1, size, size, size, generator=g)
    t1[..., :3, :, :] = 0   # asymmetric, so that a flip shows
    return t1, 0.5 * t1 + 0.1, (t1 > 0.5).float()


def _fixed(batch=2, flip=False, affine=False, angles=(0.0, 0.0, 0.0), intensity=1.0, gamma=1.0):
    theta = torch.as_tensor(np.stack([_matrix(np.array(angles), np.ones(3))] * batch)).float()
    return Draw(flip=torch.full((batch,), flip), affine=torch.full((batch,), affine),
                theta=theta, intensity=torch.full((batch,), float(intensity)),
                gamma=torch.full((batch,), float(gamma)))


def test_same_seed_same_batches_other_seed_other_batches():
    t1, pet, mask = _volumes(batch=4)
    first = BatchAugment(7)(t1, pet, mask)
    again = BatchAugment(7)(t1, pet, mask)
    other = BatchAugment(8)(t1, pet, mask)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    assert set(torch.unique(first[2]).tolist()) <= {0.0, 1.0}


def test_draws_follow_the_documented_ranges_and_rates():
    d = BatchAugment(1).draw(1000)
    assert 0.45 < d.flip.float().mean() < 0.55 and 0.45 < d.affine.float().mean() < 0.55
    drawn_gamma = d.gamma != 1
    assert 0.25 < drawn_gamma.float().mean() < 0.35
    assert GAMMA[0] <= d.gamma.min() and d.gamma.max() <= GAMMA[1]
    assert ((d.intensity - 1).abs() <= 0.1 + 1e-6).all()
    # theta = R S: the column norms are the scale factors, R's angle stays within the range
    scales = torch.linalg.norm(d.theta[:, :, :3], dim=1)
    assert ((scales - 1).abs() <= SCALE + 1e-5).all() and (scales - 1).abs().max() > SCALE / 2
    rotation = d.theta[:, :, :3] / scales[:, None, :]
    cos = ((rotation.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    assert torch.arccos(cos).max() <= np.sqrt(3) * ROTATE_RAD + 1e-4
    assert torch.allclose(d.theta[:, :, 3], torch.zeros(1000, 3))   # about the centre


def test_identity_and_flip_and_quarter_turn():
    t1, pet, mask = _volumes()
    out = apply(_fixed(affine=True), t1, pet, mask)
    assert torch.allclose(out[0], t1, atol=1e-5) and torch.equal(out[2], mask)
    out = apply(_fixed(flip=True), t1, pet, mask)
    assert torch.equal(out[0], t1.flip(2)) and torch.equal(out[1], pet.flip(2))
    assert torch.equal(out[2], mask.flip(2))
    # a quarter turn about the first axis, about the volume's centre: a voxel permutation
    out = apply(_fixed(affine=True, angles=(np.pi / 2, 0, 0)), t1, pet, mask)
    assert torch.allclose(out[0], torch.rot90(t1, -1, (3, 4)), atol=1e-5)
    assert torch.equal(out[2], torch.rot90(mask, -1, (3, 4)))


def test_one_geometry_for_t1_pet_and_mask():
    t1, _, _ = _volumes(batch=8, seed=3)
    draw = replace(BatchAugment(3).draw(8), intensity=torch.ones(8), gamma=torch.ones(8))
    assert draw.affine.any() and draw.flip.any() and not draw.affine.all()
    a, b, m = apply(draw, t1, t1.clone(), (t1 > 0.5).float())
    assert torch.equal(a, b)
    # the mask moved with the image: it still marks where the resampled image is high
    agree = ((a > 0.5) == (m > 0.5)).float().mean()
    assert agree > 0.9
    untouched = ~draw.affine & ~draw.flip
    assert torch.equal(a[untouched], t1[untouched])


def test_intensity_and_gamma_as_monai_on_the_t1w_only():
    from monai.transforms import AdjustContrast

    t1, pet, mask = _volumes()
    out = apply(_fixed(intensity=1.08, gamma=0.8), t1, pet, mask)
    expected = torch.stack([AdjustContrast(0.8)(v * 1.08) for v in t1])
    assert torch.allclose(out[0], torch.as_tensor(expected), atol=1e-5)
    assert torch.equal(out[1], pet) and torch.equal(out[2], mask)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    t1, pet, mask = _volumes(batch=4, size=32)
    draw = BatchAugment(5).draw(4)
    cpu = apply(draw, t1, pet, mask)
    gpu = apply(draw, t1.cuda(), pet.cuda(), mask.cuda())
    for a, b in zip(cpu, gpu):
        assert b.is_cuda and torch.allclose(a, b.cpu(), atol=1e-4)
