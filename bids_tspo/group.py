"""Group level: training, out-of-fold synthesis and evaluation.

The model (issue 4) and the evaluation (issue 5) are not implemented yet; the group level
says so clearly instead of pretending to succeed.
"""

from __future__ import annotations

import logging

from .config import Config
from .errors import BidsTspoError

LOG = logging.getLogger("bids_tspo.group")
PENDING = ("U-Net training and out-of-fold synthesis", "group evaluation and reports")


class NotAvailableError(BidsTspoError):
    exit_code = 1


def run_group_level(config: Config) -> int:
    raise NotAvailableError(
        "the group level is not available in this version yet (pending: "
        + "; ".join(PENDING) + ")")
