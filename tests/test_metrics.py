"""Metrics against hand-computed values on small arrays; CNR reproducible with a seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bids_tspo.evaluation import metrics as M

from .conftest import three_blocks


@pytest.fixture
def pair():
    rec = np.array([2.0, 4.0, 6.0, 100.0])
    true = np.array([1.0, 4.0, 8.0, -5.0])
    mask = np.array([True, True, True, False])  # the last voxel is outside the brain
    return rec, true, mask


def test_mse_mae(pair):
    rec, true, mask = pair
    assert M.mse(rec, true, mask) == pytest.approx((1 + 0 + 4) / 3)
    assert M.mae(rec, true, mask) == pytest.approx((1 + 0 + 2) / 3)


def test_normdiff(pair):
    rec, true, mask = pair
    assert M.normdiff(rec, true, mask) == pytest.approx((1 / 3 + 0 + (-2 / 14)) / 3)


def test_percdiff_ignores_voxels_without_signal():
    rec, true = np.array([2.0, 4.0, 5.0]), np.array([1.0, 4.0, 0.01])
    mask = np.ones(3, bool)
    # threshold: 10 % of the 99th percentile of true (~3.94) -> the 0.01 voxel is excluded
    assert M.percdiff(rec, true, mask) == pytest.approx(100 * (1.0 + 0.0) / 2)


def test_pearson_and_psnr(pair):
    rec, true, mask = pair
    assert M.pearson(rec, true, mask) == pytest.approx(np.corrcoef([2, 4, 6], [1, 4, 8])[0, 1])
    assert M.psnr(rec, true, mask) == pytest.approx(10 * math.log10(7**2 / (5 / 3)))
    assert M.psnr(true, true, mask) == math.inf
    assert math.isnan(M.pearson(np.ones(3), np.arange(3.0), np.ones(3, bool)))


def test_ssim_identical_is_one_and_drops_with_noise():
    rng = np.random.default_rng(0)
    true = rng.random((16, 16, 16)).astype(np.float32)
    mask = np.ones_like(true, bool)
    assert M.ssim(true, true, mask) == pytest.approx(1.0, abs=1e-5)
    assert M.ssim(true + rng.normal(0, 0.3, true.shape), true, mask) < 0.9


def test_smooth_fwhm():
    vol = np.zeros((31, 31, 31), np.float32)
    vol[15, 15, 15] = 1
    out = M.smooth(vol, (2.0, 2.0, 2.0), fwhm_mm=4.0)
    profile = out[:, 15, 15] / out[15, 15, 15]
    # half maximum at 2 mm = 1 voxel from the centre
    assert profile[14] == pytest.approx(0.5, abs=0.02)


def test_cnr_hand_computed_and_seeded():
    """Three 4x4x3 blocks separated by masked-out slices: the only boxes are the blocks.
    Each block is a 0/1 checkerboard (mean 0.5, var 0.25) offset by 0, 2 and 4. Pairs: same
    block (p = 1/3) -> 0; neighbours (p = 4/9) -> 2 / sqrt(0.5); A-C (p = 2/9) -> 4 / sqrt(0.5).
    The median is therefore 2 / sqrt(0.5) with the pooled definition."""
    img, mask = three_blocks()
    assert M.cnr(img, mask, n_pairs=1000, seed=3) == pytest.approx(2 / math.sqrt(0.5))
    # union-std definition: std of the 96 voxels of two neighbouring blocks = sqrt(1.25)
    assert M.cnr(img, mask, seed=3, pooled=False) == pytest.approx(2 / math.sqrt(1.25))
    noisy = np.random.default_rng(0).random((16, 16, 16))
    full = np.ones_like(noisy, bool)
    assert M.cnr(noisy, full, seed=7) == M.cnr(noisy, full, seed=7)
    assert M.cnr(noisy, full, seed=7) != M.cnr(noisy, full, seed=8)
    assert math.isnan(M.cnr(img, np.zeros_like(mask)))


def test_all_metrics_keys():
    rng = np.random.default_rng(1)
    true = rng.random((12, 12, 12))
    out = M.all_metrics(true * 0.9, true, np.ones_like(true, bool), (2, 2, 2), with_ssim=False)
    for key in ("mse", "mse_smooth", "normdiff", "percdiff_smooth", "pearson_r", "cnr_synth",
                "cnr_true", "cnr_true_smooth", "psnr"):
        assert key in out
    assert out["pearson_r"] == pytest.approx(1.0)
