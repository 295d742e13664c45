"""Reports: written by both levels, self-contained group report, --reports-only, and a real
render in headless Chromium that is not blank."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from bids_tspo.cli import main

from .conftest import GROUP_ARGS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_group_report_is_self_contained(grouped):
    html = (grouped / "group_report.html").read_text()
    for section in ("Summary", "Cohort", "Image metrics", "Regions", "Subject specificity",
                    "Training", "Flagged sessions", "Participant reports"):
        assert section in html, section
    assert html.count("<svg") >= 4
    assert not re.search(r'(src|href)="https?://', html) and "<link" not in html
    assert 'href="sub-01.html"' in html
    assert "match their own PET best" in html
    assert "the paper's Figure 3" in html and "the paper's Figure 4" in html
    # empty cells (a one-session group's SD, an untestable region) show a dash, not "NaN";
    # versions read as text, not as a Python dict
    assert ">NaN<" not in html and "<td>–</td>" in html
    assert re.search(r"Versions: bids_tspo [0-9.]+ · torch ", html)
    assert re.search(r"Trained on cpu \(1 process\): [0-9.]+ s per epoch, [0-9.]+ s for 2 folds",
                     html)


def test_participant_reports_and_figures(grouped):
    html = (grouped / "sub-02.html").read_text()
    assert "sub-02_ses-01" in html and "sub-02_ses-02" in html
    for src in re.findall(r'<img src="([^"]+)"', html):
        assert (grouped / src).is_file() and src.endswith(".svg")
    assert "out-of-fold" in html and "Brain extraction" in html and "Synthetic PET" in html
    assert "SUV (60–90 min) over the T1w" in html  # the window the SUV sidecar records
    assert "MRI only" in (grouped / "sub-04.html").read_text()
    # registration QC number in the caption: a real correlation, high on the phantom
    values = [float(v) for v in re.findall(r"both smoothed at 4 mm: r = ([-0-9.]+)", html)]
    assert len(values) == 2 and all(0.7 < v <= 1.0 for v in values), values


def test_reports_only_regenerates_without_processing(tiny_bids, grouped):
    weights = grouped / "models" / "tspo-unet_minmax_32_k2_s42" / "fold-0" / "weights.pt"
    stamp = weights.stat().st_mtime_ns
    (grouped / "group_report.html").unlink()
    (grouped / "sub-01.html").unlink()
    assert main([str(tiny_bids), str(grouped), "group", "--reports-only", *GROUP_ARGS]) == 0
    assert (grouped / "group_report.html").is_file() and (grouped / "sub-01.html").is_file()
    assert weights.stat().st_mtime_ns == stamp


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")
@pytest.mark.parametrize("page", ["group_report.html", "sub-02.html"])
def test_renders_in_headless_chromium(grouped, tmp_path, page):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400",
                    f"--screenshot={shot}", (grouped / page).as_uri()],
                   capture_output=True, timeout=120, check=False)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels.std() > 0.05  # not a blank page
    dark_header = pixels[:60].mean()
    assert dark_header < 0.4  # the header band rendered with its style
    assert np.unique((pixels * 8).astype(int).reshape(-1, 3), axis=0).shape[0] > 50
