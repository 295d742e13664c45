"""Reports: written by both levels, self-contained group report, --reports-only, and a real
render in headless Chromium that is not blank."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from bids_tspo.app.cli import main

from .conftest import GROUP_ARGS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_group_report_is_self_contained(grouped):
    html = (grouped / "group_report.html").read_text()
    for section in ("Summary", "Cohort", "Preprocessing QC", "Image metrics", "Regions",
                    "Subject specificity", "Training", "Flagged sessions", "Participant reports"):
        assert section in html, section
    assert html.count("<svg") >= 4
    assert not re.search(r'(src|href)="https?://', html) and "<link" not in html
    assert 'href="sub-01.html"' in html
    assert "match their own PET best" in html
    assert "the paper's Figure 3" in html and "the paper's Figure 4" in html
    # empty cells (a one-session group's SD, an untestable region) show a dash, not "NaN";
    # versions read as text, not as a Python dict
    assert ">NaN<" not in html and "<td>–</td>" in html
    assert re.search(r"Versions: bids_tspo [0-9.]+ · torch ", html) and "None" not in html
    assert re.search(r"Trained on cpu \(1 process\): [0-9.]+ s per epoch, [0-9.]+ s for 2 folds",
                     html)


def test_preprocessing_qc_flags(tmp_path):
    """The group report's QC table reads the sidecars and flags a poor registration (absolute
    and against the cohort), an odd brain volume, a PET missing part of the brain and a head
    that moved more than 3 mm between the PET frames."""
    from bids_tspo.reports.group import preprocessing_qc

    values = {"01": (0.92, 1500, 1.0), "02": (0.91, 1480, 0.999), "03": (0.93, 1520, 1.0),
              "04": (0.90, 1510, None), "05": (0.84, 1490, 1.0), "06": (0.92, 2600, 1.0),
              "07": (0.75, 1505, 0.9)}
    moved = {"02": [0.0, 0.4], "03": [0.0, 2.9, 4.2]}
    for label, (r, volume, coverage) in values.items():
        anat, pet = tmp_path / f"sub-{label}" / "anat", tmp_path / f"sub-{label}" / "pet"
        anat.mkdir(parents=True)
        (anat / f"sub-{label}_desc-preproc_T1w.json").write_text(json.dumps(
            {"QualityControl": {"TemplateCorrelation": r, "BrainVolume": volume}}))
        if coverage is not None:
            pet.mkdir()
            (pet / f"sub-{label}_trc-PBR28_space-T1w_desc-suv_pet.json").write_text(
                json.dumps({"BrainCoverage": coverage,
                            **({"FrameDisplacement": moved[label]} if label in moved else {})}))
    table = preprocessing_qc(tmp_path)
    flagged = dict(zip(table.session, table.flagged_for))
    assert list(table.session[:4]) == ["sub-03", "sub-05", "sub-06", "sub-07"]  # flagged first
    assert flagged == {"sub-01": "", "sub-02": "", "sub-03": "PET motion", "sub-04": "",
                       "sub-05": "registration", "sub-06": "brain volume",
                       "sub-07": "registration, PET coverage"}
    assert np.isnan(table.set_index("session").pet_brain_coverage["sub-04"])  # MRI only
    assert table.set_index("session").pet_frame_motion_mm.to_dict()["sub-03"] == 4.2


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
