"""The training losses: the paper's masked 0.5·BCE + 0.5·MSE, and ``--deviation-loss``'s term.

With ``--deviation-loss W`` (a ``--learn-deviation`` network) the loss adds ``W · (1 - r)``,
r the correlation in the mask of the prediction's and the target's deviations from the prior
(:func:`deviation_loss`), so each person's departure from the population weighs as much as the
population pattern the MSE is dominated by.

>>> loss = masked_loss(torch.full((1, 1, 4, 4, 4), 0.5), torch.zeros(1, 1, 4, 4, 4),
...                    torch.ones(1, 1, 4, 4, 4))
>>> round(float(loss), 4)   # 0.5 * ln 2 + 0.5 * 0.25
0.4716
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .network import PRIOR_EPS


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """0.5·BCE + 0.5·MSE averaged over the voxels inside ``mask`` (computed in float32)."""
    # outside autocast: CUDA autocast refuses binary_cross_entropy outright ("unsafe to
    # autocast"), whatever the input dtype, and the loss wants float32 anyway
    with torch.autocast(pred.device.type, enabled=False):
        # the augmentation's interpolation over plateaus of 1 (the robust target clips its top
        # 0.5 %) can round to 1 + 1e-7, which binary_cross_entropy refuses
        pred, target, mask = pred.float(), target.float().clamp(0.0, 1.0), mask.float()
        bce = F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), target, reduction="none")
        per_voxel = 0.5 * bce + 0.5 * (pred - target) ** 2
        return (per_voxel * mask).sum() / mask.sum().clamp_min(1.0)


DEVIATION_FLOOR = 0.01  # the prediction's deviation variance floored at 1 % of the target's


def deviation_loss(pred: torch.Tensor, target: torch.Tensor, prior: torch.Tensor,
                   mask: torch.Tensor) -> torch.Tensor:
    """1 - r, averaged over the batch: r the correlation over the voxels inside ``mask`` of the
    prediction's deviation from ``prior`` with the target's, each centred on its mean in the
    mask; how little of the person's departure from the population map the prediction follows,
    whatever its amplitude (float32). The prediction's variance is floored at
    ``DEVIATION_FLOOR`` times the target's: the untrained network returns the prior, where the
    plain correlation's gradient is singular (about 10^8 times the paper loss's).

    >>> prior, mask = torch.zeros(1, 1, 2, 2, 2), torch.ones(1, 1, 2, 2, 2)
    >>> target = torch.arange(8.0).view(1, 1, 2, 2, 2) / 10
    >>> [round(float(deviation_loss(p, target, prior, mask)), 3)
    ...  for p in (target, target + 0.1, target / 2, prior, -target)]
    [0.005, 0.005, 0.019, 1.0, 1.995]
    """
    with torch.autocast(pred.device.type, enabled=False):
        mask = mask.float()
        dims = (1, 2, 3, 4)
        count = mask.sum(dim=dims, keepdim=True).clamp_min(1.0)
        base = prior.float().clamp(PRIOR_EPS, 1 - PRIOR_EPS)  # as the network adds it

        def centred(x):
            x = (x.float() - base) * mask
            return (x - x.sum(dim=dims, keepdim=True) / count) * mask

        a, b = centred(pred), centred(target.clamp(0.0, 1.0))
        bb = b.square().sum(dim=dims).clamp_min(1e-12)
        spread = (a.square().sum(dim=dims) + DEVIATION_FLOOR * bb).sqrt() * bb.sqrt()
        return (1.0 - (a * b).sum(dim=dims) / spread).mean()


def loss_text(deviation_weight: float = 0.0) -> str:
    """The training loss in words, for model.json and the model card.

    >>> loss_text()
    '0.5 BCE + 0.5 MSE in the brain inside the PET field of view'
    """
    text = "0.5 BCE + 0.5 MSE in the brain inside the PET field of view"
    if deviation_weight:
        text += (f" + {deviation_weight:g} x (1 - r of the prediction's and the target's "
                 "deviations from the population map in the brain; the prediction's variance "
                 f"floored at {DEVIATION_FLOOR:g} x the target's)")
    return text
