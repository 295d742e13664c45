"""Which regions the group report shows, and why: the paper's subcortical set (ventricles
left out: no TSPO there, and their "agreement" is the mask's), then the regions where the
synthetic and true maps disagree most, then those with the largest differences between
diagnostic groups in the true maps (patients vs controls Hedges' g, ``g_true`` from
:mod:`bids_tspo.evaluation.beyond`). Every other region is in
``group_region_stats.tsv``.

>>> stats = pd.DataFrame({"region": ["Left_Thalamus", "Left_Lateral_Ventricle", "Frontal_Pole",
...                                  "Insular_Cortex"],
...                       "true_smooth_mean": [1.0, 0.2, 1.0, 1.0],
...                       "ba_bias": [0.01, 0.0, -0.4, 0.1]})
>>> shown = regions_to_show(stats, n_disagreement=1, n_effect=0)
>>> list(zip(shown.region, shown.why))
[('Left_Thalamus', "the paper's subcortical set"), ('Frontal_Pole', 'largest disagreement (bias -40 %)')]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PAPER_SET = ("Thalamus", "Caudate", "Putamen", "Pallidum", "Hippocampus", "Amygdala",
             "Accumbens", "Brain-Stem")


def _relative_bias(stats: pd.DataFrame) -> pd.Series:
    true = stats.true_smooth_mean.astype(float).abs().replace(0, np.nan)
    return stats.ba_bias.astype(float) / true


def regions_to_show(stats: pd.DataFrame, n_disagreement: int = 3,
                    n_effect: int = 3) -> pd.DataFrame:
    """The rows of ``stats`` (one per region) to plot, in order, with a ``why`` column."""
    if stats is None or not len(stats):
        return pd.DataFrame(columns=["region", "why"])
    names = stats.region.astype(str)
    why = {r: "the paper's subcortical set" for r in names
           if any(k in r for k in PAPER_SET) and "Ventricle" not in r}
    candidates = stats[~names.isin(why) & ~names.str.contains("Ventricle")]
    bias = _relative_bias(candidates).dropna()
    for idx in bias.abs().sort_values(ascending=False).index[:n_disagreement]:
        why[str(stats.region[idx])] = f"largest disagreement (bias {100 * bias[idx]:+.0f} %)"
    if "g_true" in stats:  # patients vs controls, Hedges' g (evaluation.beyond)
        effects = pd.Series(stats.g_true.astype(float).abs().to_numpy(), index=names).dropna()
        effects = effects.drop(labels=list(why), errors="ignore")
        for region, size in effects.sort_values(ascending=False).head(n_effect).items():
            why[region] = f"largest patient-control difference in the true maps (|g| {size:.1f})"
    shown = stats[names.isin(why)].copy()
    shown["why"] = shown.region.astype(str).map(why)
    order = {r: i for i, r in enumerate(why)}
    return shown.sort_values("region", key=lambda s: s.map(order)).reset_index(drop=True)
