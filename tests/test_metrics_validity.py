"""The evaluation's metrics are valid: SSIM inside the brain equals skimage's at explicit
parameters, one normalisation per session shared by truth, synthesis and baseline on every
grid (a perfect predictor scores exactly 0 bias; one hot voxel changes nothing), NormDiff with
PercDiff's low-signal rule, the paper's signed CNR and boxes sized in mm."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage, stats

from bids_tspo.evaluation import metrics as M
from bids_tspo.evaluation.scoring import score_maps, score_session
from bids_tspo.io.derivatives import SessionFiles
from bids_tspo.model.targets import apply_scale, pet_target, target_scale

from .conftest import three_blocks


def _box_scale(suv, brain, target="minmax"):
    """The session's target normalisation as made on a 2x coarser model box (block means)."""
    n = suv.shape[0] // 2
    box = suv.reshape(n, 2, n, 2, n, 2).mean((1, 3, 5))
    return target_scale(box, brain.reshape(n, 2, n, 2, n, 2).all((1, 3, 5)), target)


@pytest.fixture(scope="module")
def session():
    """A 40³ 1 mm volume whose brain (a ball) fills 18 % of it: a smooth SUV map, the truth in
    the target's units (the session's box normalisation), and a synthetic map that is the
    truth plus noise."""
    rng = np.random.default_rng(0)
    n = 40
    r = np.sqrt(((np.indices((n, n, n)) - n / 2 + 0.5) ** 2).sum(0))
    brain = r < 14
    suv = (ndimage.gaussian_filter(rng.random((n, n, n)), 2) * 10 + 1) * brain
    truth = apply_scale(suv, brain, _box_scale(suv, brain))
    synth = np.clip(truth + rng.normal(0, 0.1, truth.shape), 0, 1) * brain
    return suv, brain, truth, synth, rng


def test_ssim_of_constant_images_is_the_luminance_term_by_hand():
    """Two constant volumes a and b: no variance, so SSIM = (2ab + C1) / (a² + b² + C1)."""
    a, b, L = 0.3, 0.6, 1.0
    c1 = (0.01 * L) ** 2
    mask = np.ones((12, 12, 12), bool)
    assert M.ssim(np.full(mask.shape, a), np.full(mask.shape, b), mask, data_range=L) == (
        pytest.approx((2 * a * b + c1) / (a**2 + b**2 + c1)))


def test_ssim_inside_the_brain_equals_skimage_at_explicit_parameters(session):
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    _, brain, truth, synth, rng = session
    kwargs = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False,
              "data_range": 1.0, "K1": 0.01, "K2": 0.03}
    full = structural_similarity(synth, truth, full=True, **kwargs)[1]
    assert M.ssim(synth, truth, brain, data_range=1.0) == pytest.approx(full[brain].mean(),
                                                                        abs=1e-9)
    assert M.ssim(truth, truth, brain) == pytest.approx(1.0)
    # the background no longer counts: unrelated noise and a constant brain score far lower
    # inside the brain than over the whole box (the old average)
    noise = rng.random(truth.shape) * brain
    constant = 0.5 * brain
    whole_noise = structural_similarity(noise, truth, **kwargs)
    whole_constant = structural_similarity(constant, truth, **kwargs)
    assert M.ssim(noise, truth, brain) < 0.3 and whole_noise > 0.5          # 0.23 vs 0.57
    assert M.ssim(constant, truth, brain) < 0.45 and whole_constant > 0.65  # 0.42 vs 0.70
    assert M.ssim(synth, truth, brain) > M.ssim(noise, truth, brain) + 0.5


def _files(tmp_path, suv, brain):
    """A session's T1w, brain mask and SUV map on a 1 mm grid."""
    paths = {}
    for key, data in (("t1w", brain * 1.0), ("mask", brain * 1.0), ("suv", suv)):
        paths[key] = tmp_path / f"sub-01_{key}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.eye(4)), paths[key])
    return SessionFiles("sub-01", "01", None, paths["t1w"], paths["mask"], paths["suv"])


def test_perfect_predictor_scores_exactly_zero_bias(session, tmp_path):
    """A predictor that learnt the target exactly: the SUV in the units of the session's
    target, whose normalisation was made on the 2 mm model box. Scored the old way (the truth
    re-normalised to its own extremes on the native grid) it showed a bias the size of the
    paper's; with the session's one normalisation it is exactly the truth."""
    suv, brain, _, _, _ = session
    scale = _box_scale(suv, brain)
    perfect = apply_scale(suv.astype(np.float32), brain, scale)  # as the SUV file holds it
    old = M.all_metrics(perfect, (suv - suv[brain].min()) / np.ptp(suv[brain]) * brain, brain,
                        (1, 1, 1), with_ssim=False)
    assert old["normdiff"] < -0.01 and old["percdiff"] < -2  # -0.017, -3.1 %
    files = _files(tmp_path, suv, brain)
    row, = score_session(files, perfect, 0, "minmax", pet_scale=scale)
    assert row["normdiff"] == 0 and row["percdiff"] == 0 and row["mse"] == 0
    assert row["pearson_r"] == pytest.approx(1) and row["ssim"] == pytest.approx(1)
    # the same for SUVR targets (the box's reference mean, applied on the native grid)
    scale = _box_scale(suv, brain, "suvr")
    perfect = apply_scale(suv.astype(np.float32), brain, scale) * 3  # in SUVR
    row, = score_session(files, perfect, 0, "suvr", pet_scale=scale)
    assert row["normdiff"] == 0 and row["percdiff"] == 0


def test_unet_and_baseline_are_treated_alike(session):
    """The same map scored as the U-Net's and as the baseline's gets the same numbers (the
    baseline used to be rescaled to the truth's range, the U-Net output not, and had no SSIM)."""
    _, brain, truth, synth, _ = session
    rows = score_maps(truth, {"unet": 0.6 * synth + 0.1, "baseline_mean": 0.6 * synth + 0.1,
                              "skipped": None}, brain, (1, 1, 1))
    assert [r.pop("model") for r in rows] == ["unet", "baseline_mean"]
    assert rows[0] == rows[1] and "ssim" in rows[1]


def test_one_hot_voxel_changes_neither_normalisation_nor_metrics(session):
    suv, brain, truth, synth, _ = session
    hot = suv.copy()
    hot[20, 20, 20] = 20 * suv.max()
    scale, hot_scale = _box_scale(suv, brain), _box_scale(hot, brain)
    # the percentiles move by one rank of the ~1,400 box voxels (the maximum would x20)
    assert hot_scale == pytest.approx(scale, rel=0.02)
    with_hot = apply_scale(hot, brain, hot_scale)
    others = brain.copy()
    others[20, 20, 20] = False
    assert np.abs(with_hot[others] - truth[others]).max() < 0.02
    assert with_hot[20, 20, 20] == 1.0  # clipped as the target is
    a, = score_maps(truth, {"unet": synth}, brain, (1, 1, 1))
    b, = score_maps(with_hot, {"unet": synth}, brain, (1, 1, 1))
    for key in ("mse", "normdiff", "pearson_r", "ssim", "psnr", "cnr_true"):
        assert b[key] == pytest.approx(a[key], rel=0.01, abs=0.01), key
    # PercDiff -0.28 % -> 0.93 %: the one-rank move of the 99.5th percentile in this small box
    assert b["percdiff"] == pytest.approx(a["percdiff"], abs=1.5)
    # the old per-volume maximum: the whole truth divided by ~20
    old = M.all_metrics(synth, (hot - hot[brain].min()) / np.ptp(hot[brain]) * brain, brain,
                        (1, 1, 1), with_ssim=False)
    assert old["pearson_r"] < 0.2 and a["pearson_r"] > 0.85 and old["percdiff"] > 1000


def test_normdiff_ignores_low_signal_voxels_like_percdiff():
    rec = np.array([2.0, 4.0, 0.001, 5.0])
    true = np.array([1.0, 4.0, 0.002, 0.01])
    mask = np.ones(4, bool)
    # threshold 10 % of the 99th percentile of true (3.91): the last two voxels are out
    assert M.normdiff(rec, true, mask) == pytest.approx((1 / 3 + 0) / 2)
    assert M.percdiff(rec, true, mask) == pytest.approx(100 * (1 + 0) / 2)


def test_each_metric_against_a_reference_on_a_hand_made_array():
    rec = np.array([[0.2, 0.4], [0.5, 0.9]])
    true = np.array([[0.1, 0.5], [0.5, 0.7]])
    mask = np.ones((2, 2), bool)
    err = rec - true
    assert M.mse(rec, true, mask) == pytest.approx(np.mean(err**2))          # 0.015
    assert M.mae(rec, true, mask) == pytest.approx(np.mean(np.abs(err)))      # 0.1
    assert M.pearson(rec, true, mask) == pytest.approx(
        stats.pearsonr(rec.ravel(), true.ravel())[0])
    assert M.psnr(rec, true, mask) == pytest.approx(10 * math.log10(0.6**2 / 0.015))
    assert M.normdiff(rec, true, mask) == pytest.approx(
        np.mean([0.1 / 0.3, -0.1 / 0.9, 0.0, 0.2 / 1.6]))
    assert M.percdiff(rec, true, mask) == pytest.approx(100 * np.mean([1, -0.2, 0, 0.2 / 0.7]))
    x = np.linspace(0, 1, 201)
    assert pet_target(x, np.ones(201, bool), "minmax")[[0, 1, 100, 199, 200]] == pytest.approx(
        [0.0, 0.0, 0.5, 1.0, 1.0])  # the 0.5th and 99.5th percentiles are 0.005 and 0.995


def test_signed_cnr_is_the_papers_and_sits_near_zero():
    """Three 4x4x3-voxel blocks (2 mm voxels: the paper's box) offset by 0, 2 and 4: random
    ordered pairs give as many negative as positive contrasts, so the signed median is 0
    while the absolute one is 2 / sqrt(0.5)."""
    img, mask = three_blocks()
    zooms = (2.0, 2.0, 2.0)
    assert M.cnr(img, mask, zooms, seed=3) == pytest.approx(2 / math.sqrt(0.5))
    assert M.cnr(img, mask, zooms, seed=3, signed=True) == 0.0
    ratios = M.cnr_ratios(img, mask, zooms, seed=3)
    assert set(np.round(np.abs(ratios), 6)) == {0.0, round(2 / math.sqrt(0.5), 6),
                                                round(4 / math.sqrt(0.5), 6)}
    out = M.all_metrics(img, img, mask, zooms, with_ssim=False)
    assert out["cnr_true_signed"] == out["cnr_synth_signed"] == 0.0
    assert out["cnr_true"] == pytest.approx(2 / math.sqrt(0.5))


def _field(step: float):
    """One continuous image sampled every ``step`` mm over a 64 mm cube, and a ball mask."""
    x = np.arange(0, 64, step) + step / 2
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    r = np.sqrt((X - 32) ** 2 + (Y - 32) ** 2 + (Z - 32) ** 2)
    return np.sin(X / 7.0) + np.cos(Y / 5.0) * np.sin(Z / 9.0) + 0.02 * X, r < 28


def test_cnr_boxes_in_mm_do_not_depend_on_the_grid():
    (fine, fine_mask), (coarse, coarse_mask) = _field(1.0), _field(2.0)
    assert M.box_voxels((1, 1, 1)) == (8, 8, 6) and M.box_voxels((2, 2, 2)) == (4, 4, 3)
    a = M.cnr(fine, fine_mask, (1.0, 1.0, 1.0), n_pairs=20000)
    b = M.cnr(coarse, coarse_mask, (2.0, 2.0, 2.0), n_pairs=20000)
    assert a == pytest.approx(b, rel=0.1)  # 1.56 vs 1.64
    # boxes in voxels (the old way): the 1 mm grid gets 4x4x3 mm boxes, and a CNR 2.3x higher
    in_voxels = M.cnr(fine, fine_mask, (2.0, 2.0, 2.0), n_pairs=20000)
    assert in_voxels > 2 * b
