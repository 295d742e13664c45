"""Realistic synthetic BIDS dataset (T1w + dynamic [11C]PBR28 PET) with known truth.

The demo and test default. See :func:`make_phantom` and ``bids_tspo-phantom --help``.
"""

from .writer import SIZES, make_phantom

__all__ = ["SIZES", "make_phantom"]
