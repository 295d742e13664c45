"""BIDS queries on phantom data: sessions, runs, tracers, MRI-only subjects, tables."""

from __future__ import annotations

import json
import shutil

import pytest

from bids_tspo.errors import InputDataError, MissingInputError
from bids_tspo.io.layout import load_layout, select_sessions


def test_sessions_of_the_phantom(tiny_bids):
    sessions, missing = select_sessions(load_layout(tiny_bids))
    names = [s.name for s in sessions]
    assert names == ["sub-01_ses-01", "sub-02_ses-01", "sub-02_ses-02", "sub-03_ses-01",
                     "sub-04_ses-01"]
    assert missing == []
    by_name = {s.name: s for s in sessions}
    assert not by_name["sub-04_ses-01"].has_pet  # MRI-only subject
    pet = by_name["sub-02_ses-02"].pet[0]
    assert pet.tracer == "PBR28"
    assert pet.sidecar["TracerRadionuclide"] == "C11"
    assert len(pet.sidecar["FrameTimesStart"]) == len(pet.sidecar["FrameDuration"])
    assert by_name["sub-02_ses-02"].session_row["body_weight"]
    assert by_name["sub-01_ses-01"].participant["group"] == "HC"
    assert by_name["sub-01_ses-01"].participant["tspo_genotype"] in ("HAB", "MAB", "LAB")
    assert by_name["sub-02_ses-01"].reldir.as_posix() == "sub-02/ses-01"


def test_selection_by_participant_and_session(tiny_bids):
    layout = load_layout(tiny_bids)
    sessions, _ = select_sessions(layout, participants=("02",), sessions=("02",))
    assert [s.name for s in sessions] == ["sub-02_ses-02"]


def test_unknown_labels_listed(tiny_bids):
    layout = load_layout(tiny_bids)
    with pytest.raises(MissingInputError, match="sub-09, sub-10"):
        select_sessions(layout, participants=("01", "09", "10"))
    with pytest.raises(MissingInputError, match="ses-07"):
        select_sessions(layout, sessions=("07",))


def test_dataset_without_session_level(tiny_bids_nosessions):
    sessions, _ = select_sessions(load_layout(tiny_bids_nosessions))
    assert [s.name for s in sessions] == ["sub-01", "sub-02"]
    assert sessions[0].session is None and sessions[0].has_pet
    assert sessions[0].reldir.as_posix() == "sub-01"


def test_runs_tracers_and_missing_t1w(tiny_bids_nosessions, tmp_path):
    root = tmp_path / "bids"
    shutil.copytree(tiny_bids_nosessions, root)
    anat = root / "sub-01" / "anat"
    for ext in (".nii.gz", ".json"):
        (anat / f"sub-01_T1w{ext}").rename(anat / f"sub-01_run-2_T1w{ext}")
        shutil.copy(anat / f"sub-01_run-2_T1w{ext}", anat / f"sub-01_run-1_T1w{ext}")
    pet = root / "sub-01" / "pet"
    for ext in (".nii.gz", ".json"):
        shutil.copy(pet / f"sub-01_trc-PBR28_pet{ext}", pet / f"sub-01_trc-FEPPA_pet{ext}")
    sessions, missing = select_sessions(load_layout(root))
    assert missing == []
    assert [p.name for p in sessions[0].t1w] == ["sub-01_run-1_T1w.nii.gz",
                                                  "sub-01_run-2_T1w.nii.gz"]
    assert sessions[0].primary_t1w.name == "sub-01_run-1_T1w.nii.gz"
    assert sorted(p.tracer for p in sessions[0].pet) == ["FEPPA", "PBR28"]
    # a BIDS filter file picks one tracer and one T1w run; null: the entity must be absent
    picked, missing = select_sessions(load_layout(root), filters={"pet": {"tracer": "PBR28"},
                                                                  "t1w": {"run": 2}})
    assert [p.tracer for p in picked[0].pet] == ["PBR28"]
    assert [p.name for p in picked[0].t1w] == ["sub-01_run-2_T1w.nii.gz"]
    assert missing == ["sub-02"]  # its T1w has no run-2: reported, as a session without T1w
    none, missing = select_sessions(load_layout(root), filters={"t1w": {"run": None},
                                                                "pet": {"tracer": "*"}})
    assert missing == ["sub-01"] and [s.name for s in none] == ["sub-02"]
    # inside a list too: absent or 2 (sub-02's T1w has no run); "*" any (both tracers)
    either, missing = select_sessions(load_layout(root), filters={"t1w": {"run": [None, 2]},
                                                                  "pet": {"tracer": ["*"]}})
    assert missing == [] and [p.name for p in either[0].t1w] == ["sub-01_run-2_T1w.nii.gz"]
    assert len(either[0].pet) == 2 and [s.name for s in either] == ["sub-01", "sub-02"]


def test_subject_with_pet_but_no_t1w(tiny_bids, tmp_path):
    root = tmp_path / "bids"
    shutil.copytree(tiny_bids, root)
    shutil.rmtree(root / "sub-03" / "ses-01" / "anat")
    sessions, missing = select_sessions(load_layout(root))
    assert missing == ["sub-03_ses-01"]
    assert "sub-03_ses-01" not in [s.name for s in sessions] and len(sessions) == 4
    with pytest.raises(MissingInputError, match="no T1w image in the selection: sub-03_ses-01"):
        select_sessions(load_layout(root), participants=("03",))


def test_not_a_bids_dataset(tmp_path):
    with pytest.raises(InputDataError, match="dataset_description.json"):
        load_layout(tmp_path)
    (tmp_path / "dataset_description.json").write_text('{"Name": ')
    with pytest.raises(InputDataError, match="dataset_description.json: dataset description "
                                             "is not valid JSON"):
        load_layout(tmp_path)


def test_unreadable_pet_sidecar_is_that_session_problem(tiny_bids, tmp_path):
    """pybids stops indexing at the first sidecar it cannot parse; such files are left out of
    the index and only the sessions whose PET they describe carry the problem."""
    root = tmp_path / "bids"
    shutil.copytree(tiny_bids, root)
    broken = next((root / "sub-02" / "ses-01" / "pet").glob("*_pet.json"))
    broken.write_text("{oops")
    sessions = {s.name: s for s in select_sessions(load_layout(root))[0]}
    assert sessions["sub-02_ses-01"].pet[0].problem.startswith(f"{broken}: sidecar is not valid")
    assert sessions["sub-02_ses-02"].pet[0].problem is None
    assert sessions["sub-02_ses-02"].pet[0].sidecar["InjectedRadioactivity"] > 0


def test_malformed_or_missing_participants_tsv_is_a_warning(tiny_bids_nosessions, tmp_path,
                                                            caplog):
    import logging

    logging.getLogger("bids_tspo").addHandler(caplog.handler)
    root = tmp_path / "bids"
    shutil.copytree(tiny_bids_nosessions, root)
    (root / "participants.tsv").write_text("subject\tage\nsub-01\t30\n")
    sessions, _ = select_sessions(load_layout(root, validate=False))
    assert sessions and dict(sessions[0].participant) == {}
    assert "no 'participant_id' column" in caplog.text
    (root / "participants.tsv").unlink()
    sessions, _ = select_sessions(load_layout(root, validate=False))
    assert len(sessions) == 2 and "missing" in caplog.text
    logging.getLogger("bids_tspo").removeHandler(caplog.handler)


def test_weight_in_pounds_per_the_tables_json_sidecar(tmp_path):
    """participants.json / sub-<l>_sessions.json giving a weight column in pounds: its plain
    numbers are read as pounds (the SUV converts them), other columns and units untouched."""
    from bids_tspo.io.tables import participants_table, sessions_table
    from bids_tspo.preprocess.pet import body_weight

    (tmp_path / "participants.tsv").write_text(
        "participant_id\tweight\tage\nsub-01\t176\t40\nsub-02\tn/a\t50\nsub-03\t80 kg\t60\n")
    (tmp_path / "participants.json").write_text(json.dumps(
        {"weight": {"Units": "lbs"}, "age": {"Units": "year"}}))
    table = participants_table(tmp_path)
    assert [table[s]["weight"] for s in ("01", "02", "03")] == ["176 lb", "n/a", "80 kg"]
    assert table["01"]["age"] == "40"
    pet = tmp_path / "x_pet.nii.gz"
    assert body_weight({}, {}, table["01"], pet).kg == pytest.approx(79.83, abs=0.01)
    assert body_weight({}, {}, table["03"], pet).kg == 80.0
    sub = tmp_path / "sub-01"
    sub.mkdir()
    (sub / "sub-01_sessions.tsv").write_text("session_id\tbody_weight\nses-01\t70\n")
    assert sessions_table(tmp_path, "01")["01"]["body_weight"] == "70"  # no sidecar: kg
    (sub / "sub-01_sessions.json").write_text('{"body_weight": {"Units": "pound"}}')
    assert sessions_table(tmp_path, "01")["01"]["body_weight"] == "70 lb"
