"""The official BIDS validator 3.x (PyPI ``bids-validator-deno``, offline) finds 0 errors in
OUTPUT_DIR after the participant and group levels, and in a phantom dataset with its truth
(``-r``: into ``derivatives/``). Skipped only when the validator is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest

_BESIDE = Path(sys.executable).parent / "bids-validator-deno"  # the venv's, PATH or not
VALIDATOR = str(_BESIDE) if _BESIDE.is_file() else shutil.which("bids-validator-deno")
pytestmark = pytest.mark.skipif(VALIDATOR is None, reason="bids-validator-deno not installed "
                                "(pip install -e '.[test]')")


def _issues(report: dict, where: str = ""):
    for issue in report["issues"]["issues"]:
        yield where, issue
    for name, nested in (report.get("derivativesSummary") or {}).items():
        yield from _issues(nested, where + name.rstrip("/"))


def validate(path: Path, *args: str) -> tuple[list[str], dict]:
    """The validator's errors, one line each, and its JSON report."""
    done = subprocess.run([VALIDATOR, "--format", "json", *args, str(path)],
                          check=False, capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout)
    errors = [f"{issue['code']} {issue.get('subCode') or ''} {where}{issue.get('location', '')}"
              f" {(issue.get('issueMessage') or '')[:160]}"
              for where, issue in _issues(report) if issue["severity"] == "error"]
    return errors, report


def test_output_dir_is_valid_bids_derivatives_after_both_levels(grouped):
    errors, report = validate(grouped, "--datasetTypes", "derivative")
    assert not errors, f"{len(errors)} validator errors:\n" + "\n".join(errors)
    assert report["summary"]["totalFiles"] >= 60  # it looked at the subjects' files
    desc = json.loads((grouped / "dataset_description.json").read_text())
    assert desc["DatasetLinks"]["raw"] == desc["SourceDatasets"][0]["URL"]  # bids:raw: URIs
    # the PET field of view: a BIDS mask in anat/ with a known Type, NIfTI units and qform
    fovs = sorted(grouped.glob("sub-*/ses-*/anat/*_space-T1w_desc-fovPBR28_mask.nii.gz"))
    assert len(fovs) == 4 and not list(grouped.glob("sub-*/ses-*/pet/*_mask.nii.gz"))
    img = nib.load(fovs[0])
    assert img.header.get_xyzt_units()[0] == "mm" and img.header["qform_code"] > 0
    # SpatialReference of everything on the T1w grid: the preprocessed T1w, as one BIDS URI
    refs = {json.loads(p.read_text()).get("SpatialReference")
            for p in grouped.glob("sub-02/ses-01/*/*.json") if "space-MNI" not in p.name}
    assert refs == {None, "bids::sub-02/ses-01/anat/sub-02_ses-01_desc-preproc_T1w.nii.gz"}


def test_phantom_dataset_and_its_truth_are_valid_bids(tiny_bids):
    errors, report = validate(tiny_bids, "-r")
    assert not errors, f"{len(errors)} validator errors:\n" + "\n".join(errors)
    assert "/derivatives/phantom-truth/" in report["derivativesSummary"]  # the truth was checked
    warned = {(i["code"], i.get("subCode")) for _, i in _issues(report)}
    assert ("TSV_ADDITIONAL_COLUMNS_UNDEFINED", "body_weight") not in warned  # sessions.json
