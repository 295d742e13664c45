"""The verdict of a trained model against the population baseline, in words: the first thing
the group report, the model card and a ``--model`` synthesis tell the reader.

The baseline is the mean normalised PET of the fold's training subjects warped to each test
subject (:mod:`.baseline`): what anyone gets from anatomy-free population knowledge. A model
is *better* when its out-of-fold correlation with the true PET beats the baseline's in more
than half of the subjects (their sessions averaged) and on average; *worse* when the baseline
wins that way; otherwise *undecided*.

>>> import pandas as pd
>>> t = pd.DataFrame({"participant_id": list("abcde"), "pearson_r": [.2, .1, .3, .15, .2],
...                   "baseline_pearson_r": [.9, .88, .92, .9, .91]})
>>> v = verdict(t, steps=6)
>>> v["status"], v["subjects_better"], v["subjects"]
('worse', 0, 5)
>>> v["text"][:64]
'Worse than the population baseline in 5 of 5 subjects (mean r 0.'
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .statistics import paired_over_subjects

PAPER_STEPS = 4100  # the paper's folds: ~163 training scans, batch 2, 50 epochs


def verdict(metrics: pd.DataFrame, steps: int | None = None) -> dict | None:
    """U-Net against the training-mean baseline over subjects (None: no baseline column).

    ``steps``: optimiser steps per fold, named in the advice when the model loses.
    Returns ``status`` (better / worse / undecided), the subject counts, the means, the
    paired Wilcoxon p over subjects, the median ``deviation_r`` when the table has it, and
    ``text``: one or two sentences for the reader.
    """
    if metrics is None or not {"participant_id", "pearson_r",
                                "baseline_pearson_r"} <= set(metrics):
        return None
    test = paired_over_subjects(metrics, "pearson_r", "baseline_pearson_r")
    n, better = test["subjects"], test["better"]
    if not n:
        return None
    model_r = float(metrics["pearson_r"].astype(float).mean())
    base_r = float(metrics["baseline_pearson_r"].astype(float).mean())
    if 2 * better > n and model_r > base_r:
        status = "better"
        text = (f"Better than the population baseline in {better} of {n} subjects (mean r "
                f"{model_r:.2f} vs {base_r:.2f} for the training-mean map).")
    elif 2 * (n - better) > n and model_r < base_r:
        status = "worse"
        text = (f"Worse than the population baseline in {n - better} of {n} subjects (mean r "
                f"{model_r:.2f} vs {base_r:.2f} for the training-mean map): do not use this "
                f"model for synthesis; train longer or on more data")
        if steps:
            text += (f" (this run: {steps:,} optimiser step{'s' if steps != 1 else ''} per "
                     f"fold; the paper made "
                     f"~{PAPER_STEPS:,})")
        text += "."
    else:
        status = "undecided"
        text = (f"Not distinguishable from the population baseline: better in {better} of "
                f"{n} subjects (mean r {model_r:.2f} vs {base_r:.2f}).")
    out = {"status": status, "subjects": n, "subjects_better": better, "mean_r": model_r,
           "baseline_mean_r": base_r, "wilcoxon_p": test["wilcoxon_p"], "steps_per_fold": steps}
    if "deviation_r" in metrics:
        dev = metrics.groupby("participant_id")["deviation_r"].mean().astype(float)
        if dev.notna().any():
            med = float(np.nanmedian(dev))
            out["median_deviation_r"] = med
            text += (f" Beyond the population pattern, the synthetic deviations from the "
                     f"baseline track the true ones with a median r of {med:.2f} over subjects"
                     f"{' (little subject-specific information)' if med < 0.2 else ''}.")
    out["text"] = text
    return out


def steps_per_fold(per_fold: dict) -> int | None:
    """The fewest optimiser steps of a trained fold, from model.json's ``per_fold`` records.

    >>> steps_per_fold({"0": {"steps": 6}, "1": {"steps": 9}, "2": {}})
    6
    >>> steps_per_fold({}) is None
    True
    """
    steps = [f["steps"] for f in (per_fold or {}).values() if f.get("steps")]
    return min(steps) if steps else None
