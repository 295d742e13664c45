"""The one atomic writer: every file of OUTPUT_DIR and of the work folder's records.

A file is written to a temporary name in its destination folder and renamed into place, so a
killed run never leaves a partial file and concurrent participant runs into one OUTPUT_DIR
never see each other's half-written files. The file gets the mode a plain ``open()`` would
give under the caller's umask (0644 under 022), not ``mkstemp``'s private 0600, so the group
on a cluster or a container under another uid can read the outputs.

>>> import tempfile
>>> dest = Path(tempfile.mkdtemp()) / "sub-01" / "x.json"
>>> write_json_atomic(dest, {"a": 1}).read_text()
'{\\n  "a": 1\\n}\\n'
>>> sorted(p.name for p in dest.parent.iterdir())          # no temporary left behind
['x.json']
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputError


def current_umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), else by the
    classic set-and-restore."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode of a new regular file under the current umask (0o644 under 0o022)."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_path(dest: Path, suffix: str | None = None):
    """Yield a temporary path next to ``dest`` (same suffixes, so writers that choose the
    format by extension still do); rename it onto ``dest`` when the block succeeds, remove
    it when it fails."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {dest.parent}: {exc.strerror}") from None
    ext = suffix if suffix is not None else "".join(dest.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{ext}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(dest: Path, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def write_json_atomic(dest: Path, data: dict) -> Path:
    return write_text_atomic(dest, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_nifti_atomic(img, dest: Path) -> Path:
    """Save a nibabel image atomically (the temporary keeps the .nii/.nii.gz suffix)."""
    with atomic_path(dest) as tmp:
        img.to_filename(str(tmp))
    return Path(dest)
