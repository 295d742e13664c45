"""Image-similarity metrics of the paper (+ MAE, PSNR, SSIM, Pearson r): pure functions.

All take the synthetic (``rec``) and true (``true``) volumes and a boolean ``mask``; values
are computed over the voxels inside the mask, with both maps in the same units: the true PET
is put in the model target's units with the session's own target normalisation
(:func:`bids_tspo.model.targets.target_scale`, made once on the model box) on whatever grid
the maps are compared (see docs/methods.md).

>>> rec, true = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0])
>>> m = np.ones(3, bool)
>>> float(mse(rec, true, m)), round(float(normdiff(rec, true, m)), 4)
(1.6666666666666667, 0.2778)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LOW_SIGNAL = 0.1             # PercDiff / NormDiff: true > 10 % of its 99th percentile
SSIM_SIGMA, SSIM_TRUNCATE = 1.5, 3.5   # Gaussian window: radius int(3.5 * 1.5 + 0.5) = 5 -> 11³
SSIM_K1, SSIM_K2 = 0.01, 0.03
CNR_BOX_MM = (8.0, 8.0, 6.0)  # the paper's 4x4x3 voxels at 2 mm


def _signal(true: np.ndarray) -> np.ndarray:
    """Voxels of ``true`` (values inside the mask) with meaningful signal: above
    ``LOW_SIGNAL`` of its 99th percentile (PercDiff and NormDiff use the same rule)."""
    return true > LOW_SIGNAL * np.percentile(true, 99)


def mse(rec, true, mask) -> float:
    return float(np.mean((rec[mask] - true[mask]) ** 2))


def mae(rec, true, mask) -> float:
    return float(np.mean(np.abs(rec[mask] - true[mask])))


def normdiff(rec, true, mask) -> float:
    """mean((rec − true) / (rec + true)) (bounded in ±1) over the voxels with signal in the
    truth (``_signal``: true > 10 % of its 99th percentile, as PercDiff)."""
    r, t = rec[mask], true[mask]
    ok = _signal(t) & ((r + t) > 0)
    return float(np.mean((r[ok] - t[ok]) / (r[ok] + t[ok]))) if ok.any() else float("nan")


def percdiff(rec, true, mask) -> float:
    """mean((rec − true) / true), in %, over voxels whose true value exceeds 10 % of the
    99th percentile of the true image in the mask (meaningful signal only)."""
    r, t = rec[mask], true[mask]
    ok = _signal(t)
    return float(100.0 * np.mean((r[ok] - t[ok]) / t[ok])) if ok.any() else float("nan")


def pearson(rec, true, mask) -> float:
    r, t = rec[mask], true[mask]
    if r.std() == 0 or t.std() == 0:
        return float("nan")
    return float(np.corrcoef(r, t)[0, 1])


def psnr(rec, true, mask) -> float:
    """PSNR (dB) with the true image's range inside the mask as peak."""
    err = mse(rec, true, mask)
    peak = float(true[mask].max() - true[mask].min())
    return float("inf") if err == 0 else float(10 * np.log10(peak**2 / err))


def ssim(rec, true, mask, data_range: float | None = None) -> float:
    """Mean SSIM (Wang et al. 2004) over the voxels inside ``mask``: both images zero outside
    it; Gaussian window σ = 1.5 voxels truncated at 3.5σ (11³ voxels), K1 = 0.01, K2 = 0.03,
    population covariances, L = ``data_range`` (default: the range of ``true`` in the mask).
    The SSIM map equals skimage's ``structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=L, full=True)``; only its mean is
    taken inside the mask (the background would otherwise score as similar).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    t_in = np.asarray(true, np.float64)[mask]
    L = float(data_range) if data_range else float(t_in.max() - t_in.min()) or 1.0
    # crop to the mask's box plus the window radius: zeros beyond it, so the result is exact
    pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    idx = np.argwhere(mask)
    box = tuple(slice(max(lo - pad, 0), hi + pad + 1) for lo, hi in zip(idx.min(0), idx.max(0)))
    m = mask[box]
    x = np.where(m, np.asarray(rec, np.float64)[box], 0.0)
    y = np.where(m, np.asarray(true, np.float64)[box], 0.0)

    def g(v):
        return ndimage.gaussian_filter(v, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    ux, uy = g(x), g(y)
    vx, vy, vxy = g(x * x) - ux * ux, g(y * y) - uy * uy, g(x * y) - ux * uy
    c1, c2 = (SSIM_K1 * L) ** 2, (SSIM_K2 * L) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s[m].mean())


def smooth(volume: np.ndarray, zooms, fwhm_mm: float = 4.0, mask=None) -> np.ndarray:
    """Gaussian smoothing with a FWHM in mm (the paper's "smoothed true PET").

    With ``mask``, smoothing is normalised inside it (zero outside): voxels outside the mask
    neither enter nor are written, so the brain's edge is not pulled towards zero.

    >>> vol, inside = np.ones((9, 9, 9)), np.zeros((9, 9, 9), bool)
    >>> inside[:5] = True
    >>> round(float(smooth(vol * inside, (2, 2, 2))[4, 4, 4]), 2)
    0.73
    >>> round(float(smooth(vol, (2, 2, 2), mask=inside)[4, 4, 4]), 2)
    1.0
    """
    sigma = [fwhm_mm / 2.3548 / float(z) for z in zooms]
    if mask is None:
        return ndimage.gaussian_filter(volume.astype(np.float32), sigma)
    from ..model.grid import normalised  # (imports torch: not at module import)

    weight = np.asarray(mask, np.float32)
    value = ndimage.gaussian_filter(volume.astype(np.float32) * weight, sigma)
    return normalised(value, ndimage.gaussian_filter(weight, sigma)) * weight


def template_similarity(warped: np.ndarray, template: np.ndarray, mask: np.ndarray, zooms,
                        fwhm_mm: float = 4.0) -> float:
    """Registration QC: Pearson r between a T1w warped to the template and the template, inside
    the template's brain ``mask``, both smoothed at ``fwhm_mm`` (the template is a population
    average whose individual gyri are averaged out; unsmoothed, even a 27-scan single-subject
    average such as Colin27 reaches only ~0.86).

    >>> t = np.random.default_rng(0).random((20, 20, 20))
    >>> round(template_similarity(2 * t + 1, t, np.ones(t.shape, bool), (2, 2, 2)), 3)
    1.0
    """
    a, b = smooth(warped, zooms, fwhm_mm)[mask], smooth(template, zooms, fwhm_mm)[mask]
    return float(np.corrcoef(a, b)[0, 1])


def box_voxels(zooms=None, box_mm=CNR_BOX_MM) -> tuple[int, ...]:
    """A CNR box sized in mm, in voxels of a grid with ``zooms`` (2 mm when None: the paper's
    4×4×3 voxels).

    >>> box_voxels((1.0, 1.0, 1.0)), box_voxels()
    ((8, 8, 6), (4, 4, 3))
    """
    zooms = (2.0, 2.0, 2.0) if zooms is None else zooms
    return tuple(max(1, round(float(b) / float(z))) for b, z in zip(box_mm, zooms))


def cnr_ratios(image: np.ndarray, mask: np.ndarray, zooms=None, n_pairs: int = 1000,
               box_mm=CNR_BOX_MM, seed: int = 0, pooled: bool = True) -> np.ndarray:
    """Signed (m1 − m2) / noise of ``n_pairs`` seeded random pairs of boxes of ``box_mm`` lying
    fully inside ``mask`` (empty when fewer than two boxes fit). ``pooled=True`` (the authors'
    code): noise = sqrt(s1² + s2²); ``pooled=False`` (the printed formula): std(box1 ∪ box2)."""
    box = box_voxels(zooms, box_mm)
    inside = ndimage.minimum_filter(mask.astype(np.uint8), size=box, mode="constant") > 0
    # minimum_filter centres the box; convert centres to corner indices
    centres = np.argwhere(inside)
    if len(centres) < 2:
        return np.zeros(0)
    corners = centres - np.asarray(box) // 2
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(corners), size=(n_pairs, 2))
    # every box's voxels at once: (pairs, 2 boxes, voxels per box)
    offsets = np.stack(np.meshgrid(*[np.arange(b) for b in box], indexing="ij"), -1)
    points = corners[picks][:, :, None, :] + offsets.reshape(-1, 3)
    values = np.asarray(image)[points[..., 0], points[..., 1], points[..., 2]]
    if pooled:
        denom = np.sqrt(values.var(axis=-1).sum(axis=-1))
    else:
        denom = values.reshape(n_pairs, -1).std(axis=-1)
    contrast = values[:, 0].mean(axis=-1) - values[:, 1].mean(axis=-1)
    return np.divide(contrast, denom, out=np.zeros_like(contrast), where=denom > 0)


def cnr(image: np.ndarray, mask: np.ndarray, zooms=None, n_pairs: int = 1000,
        box_mm=CNR_BOX_MM, seed: int = 0, pooled: bool = True, signed: bool = False) -> float:
    """Median CNR over the box pairs of :func:`cnr_ratios`: of |m1 − m2| / noise, or with
    ``signed`` of (m1 − m2) / noise as the paper's Equation 3 (whose median over random pairs
    sits near 0). Boxes are ``box_mm`` in mm, so the value does not depend on the grid."""
    ratio = cnr_ratios(image, mask, zooms, n_pairs, box_mm, seed, pooled)
    if not ratio.size:
        return float("nan")
    return float(np.median(ratio if signed else np.abs(ratio)))


def all_metrics(rec, true, mask, zooms, seed: int = 0, with_ssim: bool = True) -> dict:
    """Every metric against the true image and against it smoothed at 4 mm FWHM (inside
    ``mask``: the brain's edge is not smoothed towards the zeros outside it). ``rec`` and
    ``true`` in the same units."""
    out = {}
    smoothed = smooth(true, zooms, mask=mask)
    for suffix, ref in (("", true), ("_smooth", smoothed)):
        out[f"mse{suffix}"] = mse(rec, ref, mask)
        out[f"mae{suffix}"] = mae(rec, ref, mask)
        out[f"normdiff{suffix}"] = normdiff(rec, ref, mask)
        out[f"percdiff{suffix}"] = percdiff(rec, ref, mask)
        out[f"pearson_r{suffix}"] = pearson(rec, ref, mask)
        out[f"psnr{suffix}"] = psnr(rec, ref, mask)
        if with_ssim:
            out[f"ssim{suffix}"] = ssim(rec, ref, mask)
        ratios = cnr_ratios(ref, mask, zooms, seed=seed)
        out[f"cnr_true{suffix}"] = _median(np.abs(ratios))
        out[f"cnr_true_signed{suffix}"] = _median(ratios)
    ratios = cnr_ratios(rec, mask, zooms, seed=seed)
    out["cnr_synth"], out["cnr_synth_signed"] = _median(np.abs(ratios)), _median(ratios)
    return out


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else float("nan")
