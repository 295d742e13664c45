"""Bake the TemplateFlow files bids_tspo looks for into $TEMPLATEFLOW_HOME (build time only).

The list comes from :func:`bids_tspo.io.spaces.templateflow_required`, so the container
holds exactly what the app resolves at run time, which then never downloads anything.
"""

import os
import sys
from pathlib import Path

from bids_tspo.io.spaces import templateflow_relpath, templateflow_required


def main() -> int:
    import templateflow.api as tf

    home = Path(os.environ["TEMPLATEFLOW_HOME"])
    for query in templateflow_required():
        got = tf.get(query["template"], resolution=query["resolution"], desc=query["desc"],
                     suffix=query["suffix"], extension=".nii.gz")
        expected = home / templateflow_relpath(query)
        if Path(got) != expected or expected.stat().st_size == 0:
            print(f"unexpected TemplateFlow file {got} (wanted {expected})", file=sys.stderr)
            return 1
        print(f"baked {expected}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
