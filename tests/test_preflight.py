"""Field layouts and the pre-flight: symlink farms and git-annex datasets work, and a session's
input problems are all reported at once, before any ANTs work."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bids_tspo.app.cli import main
from bids_tspo.io.dataset import bids_uri
from bids_tspo.io.layout import load_layout, select_sessions


def _images_and_sidecars(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("sub-*") if p.is_file()
                  and p.name.endswith((".nii.gz", ".json")) and "derivatives" not in p.parts)


def _symlink_farm(src: Path, farm: Path) -> Path:
    """``farm`` mirrors ``src`` file by file, each an absolute link into ``src`` (the store)."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_file() and "derivatives" not in rel.parts:
            (farm / rel).parent.mkdir(parents=True, exist_ok=True)
            (farm / rel).symlink_to(path)
    return farm


def _annex(root: Path) -> list[Path]:
    """git-annex layout in place: every image and sidecar moved to
    ``.git/annex/objects/XX/YY/KEY/KEY`` and replaced by a relative link to it."""
    moved = []
    for i, path in enumerate(_images_and_sidecars(root)):
        ext = ".nii.gz" if path.name.endswith(".nii.gz") else ".json"
        key = f"MD5E-s{path.stat().st_size}--{i:032x}{ext}"
        obj = root / ".git/annex/objects" / f"{i % 7:02d}" / f"{i % 5:02d}" / key / key
        obj.parent.mkdir(parents=True)
        shutil.move(path, obj)
        path.symlink_to(os.path.relpath(obj, path.parent))
        moved.append(path)
    return moved


@pytest.fixture(scope="module")
def one_subject(tiny_bids, tmp_path_factory):
    """sub-03 (one session, T1w + PET) of the tiny phantom, as a plain dataset."""
    root = tmp_path_factory.mktemp("store") / "bids"
    shutil.copytree(tiny_bids, root, ignore=shutil.ignore_patterns(
        "derivatives", "sub-01", "sub-02", "sub-04"))
    return root


def test_bids_uri_of_links_into_an_outside_store(one_subject, tmp_path):
    farm = _symlink_farm(one_subject, tmp_path / "farm")
    t1w = farm / "sub-03/ses-01/anat/sub-03_ses-01_T1w.nii.gz"
    assert t1w.is_symlink() and one_subject in t1w.resolve().parents
    assert bids_uri(t1w, farm) == "bids:raw:sub-03/ses-01/anat/sub-03_ses-01_T1w.nii.gz"
    with pytest.raises(Exception, match="not inside the BIDS dataset"):
        bids_uri(one_subject / "participants.tsv", farm)


def test_symlink_farm_and_annex_pass_the_preflight(one_subject, tmp_path):
    from bids_tspo.app.cli import build_config, build_parser
    from bids_tspo.preprocess.preflight import session_problems

    farm = _symlink_farm(one_subject, tmp_path / "farm")
    annex = tmp_path / "annex"
    shutil.copytree(one_subject, annex)
    assert len(_annex(annex)) >= 4
    folders = tmp_path / "folders"  # the subject's folder itself a link into the store
    folders.mkdir()
    for path in one_subject.iterdir():
        (folders / path.name).symlink_to(path)
    for root in (farm, annex, folders):
        args = build_parser().parse_args([str(root), str(tmp_path / "o"), "participant"])
        config = build_config(args, [])
        sessions, _ = select_sessions(load_layout(root), ("03",))
        (session,) = sessions
        assert session.pet and session.pet[0].sidecar["InjectedRadioactivity"] > 0
        assert session_problems(config, session) == []
        assert bids_uri(session.pet[0].path, config.bids_dir) \
            == "bids:raw:sub-03/ses-01/pet/sub-03_ses-01_trc-PBR28_pet.nii.gz"


def test_annexed_dataset_runs_end_to_end(one_subject, tmp_path):
    """The whole participant level on a DataLad/git-annex dataset (relative links into
    .git/annex/objects): outputs with BIDS URIs relative to BIDS_DIR, exit 0."""
    annex = tmp_path / "annex"
    shutil.copytree(one_subject, annex)
    _annex(annex)
    out = tmp_path / "out"
    code = main([str(annex), str(out), "participant", "--sloppy", "-w", str(tmp_path / "w"),
                 "--omp-nthreads", "2", "--nprocs", "1"])
    assert code == 0
    suv = out / "sub-03/ses-01/pet/sub-03_ses-01_trc-PBR28_space-T1w_desc-suv_pet.json"
    sources = json.loads(suv.read_text())["Sources"]
    assert sources == ["bids:raw:sub-03/ses-01/pet/sub-03_ses-01_trc-PBR28_pet.nii.gz",
                       "bids:raw:sub-03/ses-01/anat/sub-03_ses-01_T1w.nii.gz"]


def test_all_input_problems_at_once_before_ants(one_subject, tmp_path, monkeypatch, caplog):
    """Three problems in one session (a T1w that is not a NIfTI, a PET sidecar without
    InjectedRadioactivity, no body weight anywhere) are reported together, one line each,
    exit 65, and no ANTs work starts."""
    from bids_tspo.preprocess import session as session_module

    bids = tmp_path / "bids"
    shutil.copytree(one_subject, bids)
    (bids / "sub-03/ses-01/anat/sub-03_ses-01_T1w.nii.gz").write_bytes(b"not a NIfTI")
    sidecar = bids / "sub-03/ses-01/pet/sub-03_ses-01_trc-PBR28_pet.json"
    meta = json.loads(sidecar.read_text())
    del meta["InjectedRadioactivity"]
    meta.pop("BodyWeight", None)
    sidecar.write_text(json.dumps(meta))
    for table in (bids / "participants.tsv", bids / "sub-03/sub-03_sessions.tsv"):
        if table.is_file():
            rows = [line.split("\t") for line in table.read_text().splitlines()]
            keep = [i for i, c in enumerate(rows[0]) if c not in ("body_weight", "weight")]
            table.write_text("\n".join("\t".join(r[i] for i in keep) for r in rows) + "\n")

    def no_ants(*args, **kwargs):
        raise AssertionError("ANTs work started despite input problems")

    monkeypatch.setattr(session_module, "preprocess_anat", no_ants)
    monkeypatch.setattr(session_module, "realign_frames", no_ants)
    out = tmp_path / "out"
    with caplog.at_level("ERROR"):
        code = main([str(bids), str(out), "participant", "--sloppy", "-w", str(tmp_path / "w"),
                     "--nprocs", "1"])
    assert code == 65
    assert not (out / "sub-03").exists()
    error = json.loads(next((out / "logs").glob("summary_*.json")).read_text())["failed"][0]
    lines = error["error"].splitlines()
    assert lines[0] == "3 input problems:"
    assert "sub-03_ses-01_T1w.nii.gz: cannot be read as NIfTI" in lines[1]
    assert "no body weight" in lines[2] and "InjectedRadioactivity" in lines[3]
    assert "Traceback" not in caplog.text


def test_missing_annex_content_is_named(one_subject, tmp_path, caplog):
    """Annexed files whose content was not retrieved (dangling links), the PET image and its
    sidecar: one line naming each (pybids would stop on the sidecar: it is left out)."""
    from bids_tspo.app.cli import build_config, build_parser
    from bids_tspo.preprocess.preflight import session_problems

    annex = tmp_path / "annex"
    shutil.copytree(one_subject, annex)
    _annex(annex)
    pet = annex / "sub-03/ses-01/pet/sub-03_ses-01_trc-PBR28_pet.nii.gz"
    sidecar = pet.with_name(pet.name.replace(".nii.gz", ".json"))
    pet.resolve().unlink()
    sidecar.resolve().unlink()
    config = build_config(build_parser().parse_args(
        [str(annex), str(tmp_path / "o"), "participant"]), [])
    (session,) = select_sessions(load_layout(annex), ("03",))[0]
    problems = session_problems(config, session)
    assert len(problems) == 2
    for path, problem in zip((pet, sidecar), problems):
        assert problem.startswith(f"{path}: a symbolic link to ../../../.git/annex/objects/")
        assert problem.endswith("which does not exist (git-annex/DataLad content not "
                                "retrieved? `datalad get` it)")
