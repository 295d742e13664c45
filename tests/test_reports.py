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
                    "Subject specificity", "Training", "Sessions to check", "Participant reports"):
        assert section in html, section
    assert html.count("<svg") >= 4
    assert not re.search(r'(src|href)="https?://', html) and "<link" not in html
    assert 'href="sub-01.html"' in html
    assert "match their own PET best" in html
    assert "the paper's Figure 3" in html and "the paper's Figure 4" in html
    # empty cells (a one-session group's SD, an untestable region) show a dash, not "NaN";
    # versions read as text, not as a Python dict
    assert ">NaN<" not in html and "<td>–</td>" in html
    text = re.sub(r"base64,[A-Za-z0-9+/=\s]+", "", html)  # embedded images may spell "None"
    assert re.search(r"Versions: bids_tspo [0-9.]+ · torch ", html) and "None" not in text
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


def test_group_report_verdict_says_what_the_numbers_say(grouped):
    """The #verdict box counts the subjects where the U-Net's r beats the baseline's (each
    subject's sessions averaged) exactly as group_metrics.tsv gives them, and its word
    (better / worse / undecided) follows from that count and the means; the model card
    carries the same sentence."""
    import pandas as pd

    html = (grouped / "group_report.html").read_text()
    box = re.search(r'<section id="verdict" class="verdict (\w+)">(.*?)</section>', html, re.S)
    assert box, "no verdict box"
    status, text = box.groups()
    table = pd.read_csv(grouped / "group_metrics.tsv", sep="\t")
    means = table.groupby("participant_id")[["pearson_r", "baseline_pearson_r"]].mean()
    better, n = int((means.pearson_r > means.baseline_pearson_r).sum()), len(means)
    model_r, base_r = table.pearson_r.mean(), table.baseline_pearson_r.mean()
    expected = ("better" if 2 * better > n and model_r > base_r else
                "worse" if 2 * (n - better) > n and model_r < base_r else "undecided")
    assert status == expected
    count = better if status != "worse" else n - better
    assert f"in {count} of {n} subjects" in text
    assert f"mean r {model_r:.2f} vs {base_r:.2f}" in text
    if status == "worse":  # the 1-epoch test model: it must say so, with the steps it made
        assert "do not use this model for synthesis" in text
        assert re.search(r"this run: \d+ optimiser steps? per fold", text)
    card = next(grouped.glob("models/*/README.md")).read_text()
    sentence = re.search(r'<p class="verdict-text">(.*?)</p>', text, re.S).group(1)
    assert sentence.replace("&#39;", "'") in card


def test_group_mean_maps_and_their_mosaic(grouped):
    """The group run writes the mean true and mean synthetic maps over subjects (template
    space, sidecars with units and subject counts); the report draws them with their
    difference, under a caption naming the files."""
    import nibabel as nib

    true = next(grouped.glob("group_space-*_desc-truemean_pet.nii.gz"))
    synth = next(grouped.glob("group_space-*_desc-synthmean_pet.nii.gz"))
    meta = json.loads(true.with_name(true.name.replace(".nii.gz", ".json")).read_text())
    subjects = pd_subjects(grouped)
    assert meta["NumberOfSubjects"] == subjects and meta["Units"].startswith("normalised")
    t, s = (np.asarray(nib.load(p).dataobj) for p in (true, synth))
    assert t.shape == s.shape and 0 < t.max() <= 1.0 + 1e-6 and s.max() > 0
    assert np.corrcoef(t[t > 0], s[t > 0])[0, 1] > 0  # the same brain, roughly
    html = (grouped / "group_report.html").read_text()
    section = re.search(r'<section id="maps">(.*?)</section>', html, re.S).group(1)
    assert section.count("<svg") == 1 and "mean synthetic − mean true" in section


def pd_subjects(out) -> int:
    import pandas as pd

    return pd.read_csv(out / "group_metrics.tsv", sep="\t").participant_id.nunique()


def test_regions_shown_are_named_and_chosen(grouped):
    """The report's regions: the paper's subcortical set without ventricles, then the largest
    disagreements; every plotted region named, and a sentence pointing to the full table."""
    from html import unescape

    import pandas as pd

    html = (grouped / "group_report.html").read_text()
    stats = pd.read_csv(grouped / "group_region_stats.tsv", sep="\t")
    sentence = unescape(re.search(r'<p id="regions-shown">(.*?)</p>', html, re.S).group(1))
    shown = int(re.search(r"Shown here: (\d+) of (\d+) regions", sentence).group(1))
    assert f"of {stats.region.nunique()} regions" in sentence
    assert "group_region_stats.tsv" in sentence and "Ventricle" not in sentence
    assert "the paper's subcortical set: " in sentence and "largest disagreement" in sentence
    assert len(re.findall(r">Bland-Altman<", html)) == shown  # one scatter per region named
    rel = (stats.ba_bias / stats.true_smooth_mean).abs()
    others = ~stats.region.str.contains("Thalamus|Caudate|Putamen|Pallidum|Hippocampus|"
                                        "Amygdala|Accumbens|Brain-Stem|Ventricle")
    worst = stats.region[rel[others].idxmax()].replace("_", " ")
    assert worst in sentence
    # the paper's Table 3 atlas: every one of its regions in its own table, with q values
    paper = pd.read_csv(grouped / "group_paper_region_stats.tsv", sep="\t")
    section = html.split('id="paper-atlas"')[1].split("</section>")[0]
    body = section.split("<tbody>")[1].split("</tbody>")[0]
    assert len(re.findall(r"<tr", body)) == len(paper) == paper.region.nunique()
    assert "Left Cerebral White Matter" in section and "pearson_q" in section


def test_participant_reports_and_figures(grouped):
    html = (grouped / "sub-02.html").read_text()
    assert "sub-02_ses-01" in html and "sub-02_ses-02" in html
    # self-contained: figures inline, nothing loaded from files or the network
    external = re.findall(r'\s(?:src|href)="(?!#|sub-\w+\.html|group_report\.html)([^"]*)"', html)
    assert "<img" not in html and external == []
    assert html.count("<svg") >= 6  # 3 figures per session, 2 sessions
    for src in re.findall(r"\(also in (sub-02/figures/[^)]+\.svg)\)", html):
        assert (grouped / src).is_file()  # the figure files stay, as the contract lists
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


# Injected into a copy of a report: records script errors, console.error calls and resources
# that fail to load, then (on load) lists figures without an image, images that did not load
# and elements reaching beyond the page width (outside scrolling containers).
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(
  (e.target && (e.target.src || e.target.href)) || String(e.message)), true);
const __ce = console.error;
console.error = (...a) => { window.__errors.push(a.join(" ")); __ce(...a); };
window.addEventListener("load", () => {
  const width = document.documentElement.clientWidth, wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    let p = el.parentElement, inside = false;
    while (p && p !== document.body) {
      if (["auto", "scroll", "hidden"].includes(getComputedStyle(p).overflowX)) {
        inside = true; break; }
      p = p.parentElement;
    }
    const r = el.getBoundingClientRect();
    if (!inside && r.width && r.right > width + 1)
      wide.push(el.tagName + (el.id ? "#" + el.id : "") + " " + Math.round(r.right));
  }
  const out = document.createElement("pre");
  out.id = "__probe";
  out.textContent = JSON.stringify({errors: window.__errors, wide, width,
    broken: [...document.images].filter(i => !i.complete || !i.naturalWidth).map(i => i.src),
    empty: [...document.querySelectorAll("figure")].filter(
      f => !f.querySelector("svg, img")).length,
    svgs: document.querySelectorAll("svg").length,
    page: document.documentElement.scrollWidth});
  document.body.appendChild(out);
});
</script>"""


def chromium_probe(html_file, tmp_path, width: int = 1400) -> dict:
    """Load a copy of ``html_file`` with :data:`PROBE` in headless Chromium (``width`` px
    wide) and return what the probe found."""
    probed = html_file.parent / f"probe-{html_file.name}"
    probed.write_text(html_file.read_text().replace("<head>", "<head>" + PROBE, 1))
    try:
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},1000",
             "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
            capture_output=True, text=True, timeout=120, check=False).stdout
    finally:
        probed.unlink()
    found = re.search(r'<pre id="__probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run in {html_file.name}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")
                      .replace("&lt;", "<").replace("&gt;", ">"))


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")
def test_browser_probe_catches_broken_pages(tmp_path):
    """The probe itself: a missing image, an empty figure, a script error and a table wider
    than the page are all reported (so a clean report below means something)."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head></head><body><img src="missing.svg">'
                    '<figure><figcaption>no image</figcaption></figure>'
                    '<div style="width:3000px">wide</div><script>undefinedCall()</script>'
                    '</body></html>')
    found = chromium_probe(page, tmp_path)
    assert any("missing.svg" in e for e in found["errors"]) and found["broken"]
    assert any("undefinedCall" in e for e in found["errors"])
    assert found["empty"] == 1 and any(w.startswith("DIV") for w in found["wide"])


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed")
@pytest.mark.parametrize("page", ["group_report.html", "sub-02.html"])
def test_reports_in_chromium(grouped, tmp_path, page):
    """Both reports at 1400 px: no console or script error, no resource failing to load, every
    figure drawn, nothing wider than the page; and the screenshot is not blank."""
    from matplotlib.image import imread

    found = chromium_probe(grouped / page, tmp_path)
    assert found["errors"] == [] and found["broken"] == [], found
    assert found["empty"] == 0 and found["svgs"] >= 4, found
    assert found["wide"] == [] and found["page"] <= found["width"], found
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1400,2400",
                    f"--screenshot={shot}", (grouped / page).as_uri()],
                   capture_output=True, timeout=120, check=False)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1400)
    assert pixels.std() > 0.05  # not a blank page
    dark_header = pixels[:60].mean()
    assert dark_header < 0.4  # the header band rendered with its style
    assert np.unique((pixels * 8).astype(int).reshape(-1, 3), axis=0).shape[0] > 50
