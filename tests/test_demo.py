"""``bids_tspo-demo`` end to end on a tiny phantom (slow: ~4 min on 2 cores)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_synthesises_the_mri_only_subject_and_says_what_next(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "bids_tspo.app.demo", str(out), "--size",
                           "tiny", "--epochs", "1", "--image-size", "32"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    derivs = out / "derivatives" / "bids_tspo"
    bundle = next(derivs.glob("models/*/model.json")).parent
    synth = list(derivs.glob("sub-06/**/pet/sub-06*_space-T1w_desc-synth_pet.nii.gz"))
    assert synth and not list(derivs.glob("sub-06/**/*desc-suv_pet.nii.gz"))
    assert all(f"MRI-only map    : {path}" in proc.stdout for path in synth)
    assert f"participant --model {bundle}" in proc.stdout
    assert (derivs / "group_report.html").is_file() and (derivs / "sub-06.html").is_file()
