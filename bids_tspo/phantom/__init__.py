"""Realistic synthetic BIDS dataset (T1w + dynamic [11C]PBR28 PET) with known truth.

The demo and test default. See :func:`make_phantom` and ``bids_tspo-phantom --help``.
"""

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from .writer import SIZES, make_phantom

__all__ = ["SIZES", "example_dataset", "make_phantom"]


@functools.lru_cache(maxsize=1)
def example_dataset() -> Path:
    """A one-subject ``tiny`` phantom (sub-01, one session with T1w and PET) in a temporary
    folder, made once per process and removed at its exit: what the docstring examples use.

    >>> sorted(p.name for p in example_dataset().glob("sub-01/ses-*"))
    ['ses-01']
    """
    tmp = Path(tempfile.mkdtemp(prefix="bids_tspo_example_"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return make_phantom(tmp / "bids", n_subjects=1, seed=1, size="tiny", progress=False)
