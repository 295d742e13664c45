"""Image-similarity metrics of the paper (+ MAE, PSNR, SSIM, Pearson r): pure functions.

All take the synthetic (``rec``) and true (``true``) volumes and a boolean ``mask``; values
are computed over the voxels inside the mask.

>>> rec, true = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0])
>>> m = np.ones(3, bool)
>>> float(mse(rec, true, m)), round(float(normdiff(rec, true, m)), 4)
(1.6666666666666667, 0.2778)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def mse(rec, true, mask) -> float:
    return float(np.mean((rec[mask] - true[mask]) ** 2))


def mae(rec, true, mask) -> float:
    return float(np.mean(np.abs(rec[mask] - true[mask])))


def normdiff(rec, true, mask, eps: float = 1e-8) -> float:
    """mean((rec − true) / (rec + true)) over voxels where rec + true > eps (bounded in ±1)."""
    r, t = rec[mask], true[mask]
    ok = (r + t) > eps
    return float(np.mean((r[ok] - t[ok]) / (r[ok] + t[ok]))) if ok.any() else float("nan")


def percdiff(rec, true, mask, min_fraction: float = 0.1) -> float:
    """mean((rec − true) / true), in %, over voxels whose true value exceeds ``min_fraction`` of
    the 99th percentile of the true image in the mask (meaningful signal only)."""
    r, t = rec[mask], true[mask]
    ok = t > min_fraction * np.percentile(t, 99)
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


def ssim(rec, true, mask) -> float:
    """3D SSIM (MONAI, Gaussian 11³ window) on brain-masked images, data range from ``true``."""
    import torch
    from monai.metrics import SSIMMetric

    t = np.where(mask, true, 0).astype(np.float32)
    r = np.where(mask, rec, 0).astype(np.float32)
    metric = SSIMMetric(spatial_dims=3, data_range=float(t.max() - t.min()) or 1.0,
                        win_size=min(7, *[s - (s + 1) % 2 for s in t.shape]))
    return float(metric(torch.from_numpy(r)[None, None], torch.from_numpy(t)[None, None]).mean())


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


def cnr(image: np.ndarray, mask: np.ndarray, n_pairs: int = 1000, box=(4, 4, 3),
        seed: int = 0, pooled: bool = True) -> float:
    """Median CNR over ``n_pairs`` random pairs of boxes lying fully inside ``mask``.

    ``pooled=True`` (the authors' code): |m1 − m2| / sqrt(s1² + s2²); ``pooled=False`` (the
    printed formula): |m1 − m2| / std(box1 ∪ box2). Seeded, so reproducible.
    """
    box = tuple(int(b) for b in box)
    inside = ndimage.minimum_filter(mask.astype(np.uint8), size=box, mode="constant") > 0
    # minimum_filter centres the box; convert centres to corner indices
    centres = np.argwhere(inside)
    if len(centres) < 2:
        return float("nan")
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
    contrast = np.abs(values[:, 0].mean(axis=-1) - values[:, 1].mean(axis=-1))
    ratio = np.divide(contrast, denom, out=np.zeros_like(contrast), where=denom > 0)
    return float(np.median(ratio))


def all_metrics(rec, true, mask, zooms, seed: int = 0, with_ssim: bool = True) -> dict:
    """Every metric against the true image and against it smoothed at 4 mm FWHM (inside
    ``mask``: the brain's edge is not smoothed towards the zeros outside it)."""
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
        out[f"cnr_true{suffix}"] = cnr(ref, mask, seed=seed)
    out["cnr_synth"] = cnr(rec, mask, seed=seed)
    return out
