"""Bad input, interruptions and concurrency: one clear line per problem, the contract's exit
code, no traceback, the other subjects processed, nothing half-written."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from bids_tspo.app.cli import main
from bids_tspo.io.atomic import atomic_path


def clone_subject(root, src: str, dst: str, weight: str = "70"):
    """Copy subject ``src`` to ``dst`` (files renamed) and add a participants.tsv row."""
    shutil.copytree(root / f"sub-{src}", root / f"sub-{dst}")
    for path in sorted((root / f"sub-{dst}").rglob("*"), key=lambda p: -len(p.parts)):
        if f"sub-{src}" in path.name:
            path.rename(path.with_name(path.name.replace(f"sub-{src}", f"sub-{dst}")))
    with open(root / "participants.tsv", "a") as f:
        f.write(f"sub-{dst}\t40\tF\tKOA\tHAB\t{weight}\n")
    return root / f"sub-{dst}" / "ses-01"


def _edit_json(path, **changes):
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


def _t1(ses):
    return next((ses / "anat").glob("*_T1w.nii.gz"))


def _pet_json(ses):
    return next((ses / "pet").glob("*_pet.json"))


def _save(ses, data, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(data, affine), _t1(ses))


def _flatten_axis(ses):
    """The T1w's third voxel axis given zero length in the header's sform (qform unset)."""
    img = nib.load(_t1(ses))
    header = img.header.copy()
    header.set_qform(None, code=0)
    srows = img.affine.copy()
    srows[:3, 2] = 0
    header["srow_x"], header["srow_y"], header["srow_z"] = srows[:3]
    header["sform_code"] = 1
    nib.Nifti1Image(np.asarray(img.dataobj), None, header).to_filename(_t1(ses))


BROKEN = {  # subject label -> (how to break a copy of sub-03, expected words in the error)
    "11": (lambda s: _t1(s).write_bytes(gzip.compress(b"\x5c\x01" * 30)[:40]),
           "cannot be read as NIfTI"),
    "12": (lambda s: _t1(s).write_text("not an image"), "cannot be read as NIfTI"),
    "13": (lambda s: _save(s, np.full((20, 20, 20), np.nan, np.float32)), "NaN/Inf"),
    "14": (lambda s: _save(s, np.zeros((20, 20, 20), np.float32)), "all zeros"),
    "15": (lambda s: _save(s, np.ones((20, 20, 20, 3), np.float32)), "4 dimensions"),
    "16": (lambda s: _save(s, np.ones((20, 20), np.float32)), "2 dimensions"),
    "17": (lambda s: _edit_json(_pet_json(s), InjectedRadioactivity=None),
           "no InjectedRadioactivity"),
    "18": (lambda s: _edit_json(_pet_json(s), FrameTimesStart=None), "no FrameTimesStart"),
    "19": (lambda s: _edit_json(_pet_json(s), Units=None), "no Units"),
    "20": (lambda s: _edit_json(_pet_json(s), FrameDuration=[600] * 6,
                                FrameTimesStart=[0, 600, 1200, 1800, 2400, 3000]), "cover only"),
    "21": (lambda s: _edit_json(_pet_json(s), FrameDuration=[900, 900, 1800, 600, 600],
                                FrameTimesStart=[0, 900, 1800, 3600, 4200]), "6 frame(s)"),
    "22": (lambda s: _edit_json(_pet_json(s), InjectedRadioactivityUnits="GBq"), "implausible"),
    "23": (lambda s: _edit_json(_pet_json(s), InjectedRadioactivityUnits="furlongs"),
           "unknown activity units"),
    "26": (_flatten_axis, "degenerate voxel-to-world affine (voxel sizes"),
    "27": (lambda s: _pet_json(s).write_text("{not json"), "sidecar is not valid JSON"),
    "28": (lambda s: _edit_json(_pet_json(s), FrameDuration=["600", "ten"] + [600] * 4),
           "sidecar FrameDuration is not a number or list of numbers"),
    "29": (lambda s: _edit_json(_pet_json(s), FrameTimesStart=[0, 600, 300, 1800, 2400, 3000]),
           "FrameTimesStart does not increase"),
    "30": (lambda s: _save(s, np.full((20, 20, 20), 7.0, np.float32)), "constant (7 everywhere)"),
}


@pytest.fixture(scope="module")
def broken_run(tiny_bids, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    bids = root / "bids"
    shutil.copytree(tiny_bids, bids, ignore=shutil.ignore_patterns("derivatives"))
    for label, (breaker, _) in BROKEN.items():
        breaker(clone_subject(bids, "03", label))
    clone_subject(bids, "03", "24", weight="n/a")        # no body weight anywhere
    clone_subject(bids, "03", "25", weight="500")        # implausible weight
    out = root / "out"
    labels = ["03", *BROKEN, "24", "25", "77"]
    proc = subprocess.run([sys.executable, "-m", "bids_tspo", str(bids), str(out), "participant",
                           "--sloppy", "-w", str(root / "work"), "--omp-nthreads", "2",
                           "--participant-label", *[x for x in labels if x != "77"]],
                          capture_output=True, text=True, timeout=900)
    return proc, out


def test_every_broken_subject_reported_on_one_line(broken_run):
    proc, out = broken_run
    assert proc.returncode == 65
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR: " in line]
    for label, (_, words) in BROKEN.items():
        hits = [line for line in errors if f"sub-{label}_ses-01" in line]
        assert hits and words in hits[0], (label, hits)
        assert ".nii" in hits[0] or ".json" in hits[0] or "sidecar" in hits[0]
    assert any("sub-24" in e and "no body weight" in e for e in errors)
    assert any("sub-25" in e and "500 kg" in e for e in errors)


def test_good_subject_processed_and_nothing_half_written(broken_run):
    _, out = broken_run
    assert (out / "sub-03/ses-01/pet"
            / "sub-03_ses-01_trc-PBR28_space-T1w_desc-suv_pet.nii.gz").is_file()
    for label in [*BROKEN, "24", "25"]:
        assert not (out / f"sub-{label}").exists(), label
    assert not list(out.rglob("*.tmp*"))
    summary = json.loads(next((out / "logs").glob("summary_*.json")).read_text())
    assert summary["succeeded"] == ["sub-03_ses-01"]
    assert len(summary["failed"]) == len(BROKEN) + 2
    assert "errors" in (out / "sub-11.html").read_text().lower()


def test_unexpected_error_in_one_session_others_processed(tiny_bids, tmp_path, capsys,
                                                          monkeypatch):
    """A bug hit by one session (any exception) is that session's failure: one line on screen,
    the traceback in the log file, exit 1 at the end, and the other sessions still done."""
    import bids_tspo.preprocess as preprocess

    real = preprocess.preprocess_session

    def flaky(config, session):
        if session.subject == "01":
            raise RuntimeError("boom\nsecond line")
        return real(config, session)

    monkeypatch.setattr(preprocess, "preprocess_session", flaky)
    out = tmp_path / "out"
    code = main([str(tiny_bids), str(out), "participant", "--participant-label", "01", "04",
                 "--sloppy", "--nprocs", "1", "-w", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 1
    assert ("sub-01_ses-01: unexpected failure: RuntimeError: boom (traceback in the log file)"
            in err) and "Traceback" not in err
    assert (out / "sub-04/ses-01/anat/sub-04_ses-01_desc-preproc_T1w.nii.gz").is_file()
    log = "".join(p.read_text() for p in (out / "logs").glob("bids_tspo_participant_*.log"))
    assert "Traceback" in log and "second line" in log


def test_rerun_skips_finished_and_clean_workdir_recomputes(tiny_bids, tmp_path):
    bids = tmp_path / "bids"
    shutil.copytree(tiny_bids, bids, ignore=shutil.ignore_patterns("derivatives"))
    args = [str(bids), str(tmp_path / "out"), "participant", "--participant-label", "01",
            "--sloppy", "-w", str(tmp_path / "w"), "--omp-nthreads", "2"]
    assert main(args) == 0
    t1 = tmp_path / "out/sub-01/ses-01/anat/sub-01_ses-01_desc-preproc_T1w.nii.gz"
    suv = next((tmp_path / "out/sub-01/ses-01/pet").glob("*space-T1w_desc-suv_pet.json"))
    stamp = t1.stat().st_mtime_ns
    assert main(args) == 0
    assert t1.stat().st_mtime_ns == stamp
    log = sorted((tmp_path / "out/logs").glob("*.log"))[-1].read_text()
    assert "already preprocessed" in log
    # a corrected input (the body weight where it came from) is processed again
    meta = json.loads(suv.read_text())
    source, column = meta["BodyWeightSource"].split()[:2]
    assert meta["BodyWeight"] != 81.5 and source in ("participants.tsv", "sessions.tsv"), meta
    tsv = (bids / "participants.tsv" if source == "participants.tsv"
           else bids / "sub-01" / "sub-01_sessions.tsv")
    table = pd.read_csv(tsv, sep="\t", dtype=str)
    table.loc[table.iloc[:, 0].isin(["sub-01", "ses-01"]), column] = "81.5"
    table.to_csv(tsv, sep="\t", index=False)
    assert main(args) == 0
    assert t1.stat().st_mtime_ns != stamp
    assert json.loads(suv.read_text())["BodyWeight"] == 81.5
    stamp = t1.stat().st_mtime_ns
    assert main(args + ["--clean-workdir"]) == 0
    assert t1.stat().st_mtime_ns != stamp


def test_two_output_dirs_sharing_a_work_dir_each_get_outputs(tiny_bids, tmp_path):
    """Two OUTPUT_DIRs side by side under one parent with one work dir: the second is not
    fooled by the first's finished-work record and gets its own outputs."""
    args = ["--participant-label", "01", "--sloppy", "-w", str(tmp_path / "w"),
            "--omp-nthreads", "2"]
    t1 = "sub-01/ses-01/anat/sub-01_ses-01_desc-preproc_T1w.nii.gz"
    assert main([str(tiny_bids), str(tmp_path / "out1"), "participant", *args]) == 0
    assert main([str(tiny_bids), str(tmp_path / "out2"), "participant", *args]) == 0
    assert (tmp_path / "out1" / t1).is_file() and (tmp_path / "out2" / t1).is_file()
    assert list((tmp_path / "out2/sub-01/ses-01/pet").glob("*desc-suv_pet.nii.gz"))


def test_marker_of_another_version_or_method_revision_is_redone(tmp_path):
    """A session finished by another version, or before a change of method (the decay
    correction's sign, revision 2), is processed again; the same settings and inputs reuse it."""
    from types import SimpleNamespace

    from bids_tspo import __version__
    from bids_tspo.preprocess.session import METHOD_REVISION, finished_outputs

    out = tmp_path / "x_desc-suv_pet.nii.gz"
    out.write_bytes(b"done")
    config = SimpleNamespace(suv_window=(60.0, 90.0), output_dir=tmp_path)
    record = {"version": __version__, "revision": METHOD_REVISION, "preset": "sloppy",
              "suv_window": [60.0, 90.0], "inputs": {"t1w": 1}, "outputs": [str(out)],
              "output_dir": str(tmp_path.resolve())}
    assert finished_outputs(record, "sloppy", config, {"t1w": 1}) == [out]
    for stale in ({"revision": METHOD_REVISION - 1}, {"version": "0.0.1"}, {"revision": None},
                  {"suv_window": [50.0, 80.0]}, {"preset": "standard"}, {"inputs": {"t1w": 2}},
                  {"output_dir": None}):
        assert finished_outputs({**record, **stale}, "sloppy", config, {"t1w": 1}) is None, stale
    # a second OUTPUT_DIR beside the first, sharing the work dir, gets its own outputs
    other = SimpleNamespace(suv_window=(60.0, 90.0), output_dir=tmp_path / "out2")
    other.output_dir.mkdir()
    assert finished_outputs(record, "sloppy", other, {"t1w": 1}) is None
    assert finished_outputs({**record, "output_dir": str(other.output_dir.resolve())},
                            "sloppy", other, {"t1w": 1}) is None  # outputs not inside it
    out.unlink()
    assert finished_outputs(record, "sloppy", config, {"t1w": 1}) is None


def test_filter_file_rerun_replaces_outputs_of_unselected_pet(tiny_bids, tmp_path):
    """Two tracers in a session: both are processed; rerun with a filter file choosing one,
    the other's SUV maps, field-of-view mask and sidecars leave OUTPUT_DIR."""
    bids = tmp_path / "bids"
    shutil.copytree(tiny_bids, bids, ignore=shutil.ignore_patterns("derivatives"))
    pet = bids / "sub-01" / "ses-01" / "pet"
    for src in sorted(pet.glob("*trc-PBR28*")):
        shutil.copy(src, src.with_name(src.name.replace("trc-PBR28", "trc-FEPPA")))
    args = [str(bids), str(tmp_path / "out"), "participant", "--participant-label", "01",
            "--sloppy", "-w", str(tmp_path / "w"), "--omp-nthreads", "2",
            "--suv-window", "55", "90"]
    assert main(args) == 0
    out_pet = tmp_path / "out" / "sub-01" / "ses-01" / "pet"
    suv = json.loads(next(out_pet.glob("*trc-PBR28_space-T1w_desc-suv_pet.json")).read_text())
    assert suv["SUVWindow"] == [55, 90]
    assert "SUV (55–90 min) over the T1w" in (tmp_path / "out" / "sub-01.html").read_text()
    out_anat = out_pet.parent / "anat"
    feppa = sorted(p.name for p in out_pet.glob("*trc-FEPPA*"))
    assert len(feppa) == 4  # SUV on the T1w grid and in the template; + sidecars
    assert len(list(out_anat.glob("*desc-fovFEPPA_mask*"))) == 2  # FOV mask + sidecar
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"pet": {"tracer": "PBR28"}}))
    assert main(args + ["--bids-filter-file", str(filters)]) == 0
    assert not list(out_pet.glob("*trc-FEPPA*"))
    assert not list(out_anat.glob("*desc-fovFEPPA*"))
    assert len(list(out_pet.glob("*trc-PBR28*"))) == 4
    assert len(list(out_anat.glob("*desc-fovPBR28_mask*"))) == 2


def test_concurrent_participant_runs_share_one_output(tiny_bids, tmp_path):
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "bids_tspo", str(tiny_bids), str(out),
                               "participant", "--participant-label", label, "--sloppy", "-w",
                               str(tmp_path / f"w{label}"), "--omp-nthreads", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for label in ("01", "03", "04")]
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0, 0]
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    assert len(list((out / "logs").glob("*_cmd.txt"))) == 3
    assert len(list((out / "logs").glob("summary_*.json"))) == 3
    for label in ("01", "03", "04"):
        assert (out / f"sub-{label}.html").is_file()


def test_bids_dir_is_never_written(tiny_bids, tmp_path):
    before = sorted(p.relative_to(tiny_bids) for p in tiny_bids.rglob("*"))
    assert main([str(tiny_bids), str(tmp_path / "out"), "participant", "--participant-label",
                 "04", "--sloppy", "-w", str(tmp_path / "w")]) == 0
    assert sorted(p.relative_to(tiny_bids) for p in tiny_bids.rglob("*")) == before


def test_empty_selection_and_unknown_session(tiny_bids, tmp_path, capsys):
    base = [str(tiny_bids), str(tmp_path / "out"), "participant"]
    assert main(base + ["--participant-label", "01", "--session-label", "02"]) == 66
    assert "empty selection" in capsys.readouterr().err
    assert main(base + ["--session-label", "09"]) == 66
    assert "unknown session label(s): ses-09" in capsys.readouterr().err


def test_group_checks_before_training(grouped, tiny_bids, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(grouped, out, ignore=shutil.ignore_patterns("models", "group_*"))
    base = [str(tiny_bids), str(out), "group", "-w", str(tmp_path / "w")]
    assert main(base + ["--folds", "5"]) == 64
    assert "--folds 5 needs at least 5 subjects" in capsys.readouterr().err
    assert main(base + ["--folds", "2", "--image-size", "512", "--batch-size", "64"]) == 64
    assert "needs about" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(base + ["--folds", "2", "--device", "cuda"]) == 64
        assert "no CUDA device" in capsys.readouterr().err


def test_atomic_writes_leave_nothing_on_failure(tmp_path):
    dest = tmp_path / "a" / "x.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert not dest.exists() and not list(dest.parent.iterdir())


def test_subject_without_t1w_others_processed(tiny_bids, tmp_path, capsys):
    bids = tmp_path / "bids"
    shutil.copytree(tiny_bids, bids, ignore=shutil.ignore_patterns("derivatives"))
    shutil.rmtree(bids / "sub-03" / "ses-01" / "anat")
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "--participant-label", "03", "04",
                 "--sloppy", "-w", str(tmp_path / "w")])
    assert code == 66
    assert "sub-03_ses-01: no T1w image" in capsys.readouterr().err
    assert (out / "sub-04/ses-01/anat/sub-04_ses-01_desc-preproc_T1w.nii.gz").is_file()


def test_incomplete_bundle_refused(grouped, tiny_bids, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(grouped / "models" / "tspo-unet_minmax_32_k2_s42", bundle)
    (bundle / "fold-1" / "weights.pt").unlink()
    code = main([str(tiny_bids), str(tmp_path / "o"), "participant", "--participant-label",
                 "04", "--model", str(bundle)])
    assert code == 65
    assert "fold-1/weights.pt: missing; the bundle is incomplete" in capsys.readouterr().err


def test_folds_fall_back_without_group_column(grouped, tiny_bids, tmp_path, caplog):
    import logging

    bids = tmp_path / "bids"
    shutil.copytree(tiny_bids, bids, ignore=shutil.ignore_patterns("derivatives", "sub-*"))
    (bids / "participants.tsv").write_text("participant_id\tage\n" + "".join(
        f"sub-0{i}\t30\n" for i in range(1, 5)))
    out = tmp_path / "out"
    shutil.copytree(grouped, out, ignore=shutil.ignore_patterns("models", "group_*"))
    logging.getLogger("bids_tspo").addHandler(caplog.handler)
    try:
        code = main([str(bids), str(out), "group", "-w", str(tmp_path / "w"), "--folds", "2",
                     "--epochs", "1", "--image-size", "32", "--fold", "0"])
    finally:
        logging.getLogger("bids_tspo").removeHandler(caplog.handler)
    assert code == 0
    assert "no 'group' column: folds are not stratified" in caplog.text
    splits = json.loads(next((out / "models").glob("*/splits.json")).read_text())
    assert set(splits["strata"].values()) == {"n/a"}
