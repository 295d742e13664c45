"""``python -m bids_tspo`` = the ``bids_tspo`` console script."""

import sys

from .app.cli import main

if __name__ == "__main__":
    sys.exit(main())
