"""Per-user folders in the system temp dir: the default work dir and the library caches.

Containers run under any uid, with HOME unset or read-only and OUTPUT_DIR's parent often not
writable, so both live in :func:`tempfile.gettempdir`, keyed by the user (and, for the work
dir, by OUTPUT_DIR); a default work dir that a run left empty is removed when it ends.

>>> work = default_work_dir(Path("/data/out"))
>>> work.parent == Path(tempfile.gettempdir()), work.name.startswith("bids_tspo_work_")
(True, True)
>>> work == default_work_dir(Path("/data/out")) != default_work_dir(Path("/data/out2"))
True
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")


def default_work_dir(output_dir: Path) -> Path:
    """A folder the running user can always create (any uid, read-only root, OUTPUT_DIR's
    parent not writable): in the system temp dir, keyed by the user and OUTPUT_DIR, so
    reruns into one OUTPUT_DIR reuse their finished work and never share it with another."""
    digest = hashlib.sha1(str(output_dir).encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"bids_tspo_work_{_uid()}_{digest}"


def drop_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it is empty (a default work dir a failed run never wrote to)."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def private_caches() -> None:
    """Point matplotlib's, torch's and XDG caches at a per-user temp folder unless the caller
    chose them: nothing is written into HOME (unset, ``/`` or read-only in containers)."""
    root = Path(tempfile.gettempdir()) / f"bids_tspo_cache_{_uid()}"
    for var, sub in (("MPLCONFIGDIR", "matplotlib"), ("XDG_CACHE_HOME", "xdg"),
                     ("TORCHINDUCTOR_CACHE_DIR", "torchinductor"), ("TRITON_CACHE_DIR", "triton")):
        if not os.environ.get(var):
            os.environ[var] = str(root / sub)
    # a uid with no passwd entry (docker -u, Singularity): getpass.getuser(), which torch
    # calls, raises KeyError unless one of these names the user
    if hasattr(os, "getuid") and not any(os.environ.get(v) for v in ("LOGNAME", "USER")):
        import pwd

        try:
            pwd.getpwuid(os.getuid())
        except KeyError:
            os.environ["USER"] = f"uid{os.getuid()}"
