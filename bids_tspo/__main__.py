"""``python -m bids_tspo`` = the ``bids_tspo`` console script."""

import sys

from .cli import main

sys.exit(main())
