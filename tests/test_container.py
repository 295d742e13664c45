"""The container recipe agrees with the package, and baked TemplateFlow files are used."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ;]", requirement.strip().strip('"'), maxsplit=1)[0].lower()


def test_entrypoint_user_and_labels():
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert 'ENTRYPOINT ["bids_tspo"]' in runtime
    users = re.findall(r"^USER (\S+)", runtime, re.M)
    assert users and users[-1] not in ("root", "0")
    for label in ("title", "description", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{label}=" in runtime, label
    assert "TEMPLATEFLOW_HOME=/opt/templateflow" in runtime
    # the derivatives' GeneratedBy.Container names the image with the package's version
    # (bids_tspo.io.dataset.container); caches no longer go to a shared /tmp/matplotlib
    assert "BIDS_TSPO_VARIANT=${VARIANT}" in runtime and "MPLCONFIGDIR" not in runtime
    # build-only tools stay in the build stage; both stages take BASE_IMAGE
    assert "templateflow" not in runtime.lower().replace("templateflow_home", "").replace(
        "/opt/templateflow", "")
    assert DOCKERFILE.count("FROM ${BASE_IMAGE}") == 2
    for arg in ("BASE_IMAGE", "TORCH_INDEX_URL", "TEMPLATEFLOW", "COMPILER"):
        assert re.search(rf"^ARG {arg}=", DOCKERFILE, re.MULTILINE), arg
    assert "TEMPLATEFLOW=0" in DOCKERFILE and "docker/wheels" in DOCKERFILE


def test_python_dependencies_match_pyproject():
    project = _pyproject()["project"]
    declared = {_name(d) for d in project["dependencies"]}
    extras = project["optional-dependencies"]
    installed = []
    for line in re.findall(r"pip install ([^;\\\n]+)", DOCKERFILE):
        installed += [a for a in line.split()
                      if not a.startswith(("-", '"$', "$")) and "://" not in a and a != "-y"]
    assert installed
    for arg in installed:
        arg = arg.strip('"')
        if arg.startswith("/src"):
            wanted = re.findall(r"\[(\w+)\]", arg)
            assert all(e in extras for e in wanted), wanted
            continue
        assert _name(arg) in declared, arg


def test_baked_templates_are_the_ones_the_app_looks_for():
    from bids_tspo.io import spaces as templates

    assert "docker/fetch_templates.py" in DOCKERFILE
    script = ast.parse((ROOT / "docker/fetch_templates.py").read_text())
    names = {n.id for n in ast.walk(script) if isinstance(n, ast.Name)}
    assert {"templateflow_required", "templateflow_relpath"} <= names
    wanted = {templates.templateflow_relpath(q) for q in templates.templateflow_required()}
    for res in templates.TEMPLATEFLOW_RESOLUTIONS:
        assert any(f"res-{res:02d}_T1w" in w for w in wanted)
        assert any(f"res-{res:02d}_desc-brain_mask" in w for w in wanted)


def stand_in_templateflow(home: Path) -> Path:
    """Small stand-ins laid out like the baked TemplateFlow folder (nilearn's 2 mm MNI)."""
    from nilearn import datasets

    from bids_tspo.io.spaces import templateflow_relpath, templateflow_required

    t1w = datasets.load_mni152_template(resolution=2)
    mask = datasets.load_mni152_brain_mask(resolution=2)
    for query in templateflow_required():
        dest = home / templateflow_relpath(query)
        dest.parent.mkdir(parents=True, exist_ok=True)
        img = mask if query["suffix"] == "mask" else t1w
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), img.affine), dest)
    return home


def test_templateflow_home_is_used(tiny_bids, tmp_path):
    home = stand_in_templateflow(tmp_path / "tf")
    env = dict(os.environ, TEMPLATEFLOW_HOME=str(home))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "bids_tspo", str(tiny_bids), str(out),
                           "participant", "--participant-label", "01", "--sloppy", "-w",
                           str(tmp_path / "w"), "--omp-nthreads", "2"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MNI152NLin2009cAsym" in proc.stderr and "TemplateFlow" in proc.stderr
    anat = out / "sub-01/ses-01/anat"
    assert (anat / "sub-01_ses-01_from-T1w_to-MNI152NLin2009cAsym_mode-image_xfm.h5").is_file()
    tpl_pet = (out / "sub-01/ses-01/pet"
               / "sub-01_ses-01_trc-PBR28_space-MNI152NLin2009cAsym_desc-suv_pet.json")
    assert json.loads(tpl_pet.read_text())["SpatialReference"] == "MNI152NLin2009cAsym"


@pytest.mark.slow
def test_demo_with_templateflow_home(tmp_path):
    home = stand_in_templateflow(tmp_path / "tf")
    env = dict(os.environ, TEMPLATEFLOW_HOME=str(home))
    proc = subprocess.run([sys.executable, "-c", "import sys; from bids_tspo.app.demo import main; "
                           "sys.exit(main())", str(tmp_path / "demo"), "--size", "tiny"],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "group_report.html" in proc.stdout
    assert list((tmp_path / "demo").rglob("*space-MNI152NLin2009cAsym_desc-synth_pet.nii.gz"))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_get_the_umask_mode(tmp_path, umask, mode):
    """Atomic writes (text, NIfTI, np.savez caches, shutil copies) and the phantom writer give
    files the mode open() would give, not mkstemp's 0600 (#21)."""
    import shutil

    from bids_tspo.io.atomic import atomic_path, save_nifti_atomic, write_text_atomic
    from bids_tspo.phantom.writer import make_phantom

    old = os.umask(umask)
    try:
        written = [write_text_atomic(tmp_path / "a" / "x.tsv", "a\n"),
                   save_nifti_atomic(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)),
                                     tmp_path / "a" / "x.nii.gz")]
        with atomic_path(tmp_path / "a" / "c.npz") as tmp:
            np.savez(tmp, x=np.zeros(3))
        with atomic_path(tmp_path / "a" / "copy.tsv") as tmp:
            shutil.copyfile(written[0], tmp)
        written += [tmp_path / "a" / "c.npz", tmp_path / "a" / "copy.tsv"]
        bids = make_phantom(tmp_path / "bids", n_subjects=1, size="tiny", progress=False)
    finally:
        os.umask(old)
    phantom_files = [p for p in bids.rglob("*") if p.is_file()]
    assert len(phantom_files) > 5
    for path in written + phantom_files:
        assert path.stat().st_mode & 0o777 == mode, (path, oct(path.stat().st_mode))
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o777 & ~umask


def test_default_work_dir_is_private_temp_folder(tiny_bids, tmp_path, caplog):
    """OUTPUT_DIR's parent may be unwritable (/ in a container, read-only in Singularity): the
    default work dir is in the system temp dir, keyed by user and OUTPUT_DIR, and logged."""
    import tempfile

    from bids_tspo.app.cli import build_config, build_parser, main

    parent = tmp_path / "readonly"
    (parent / "out").mkdir(parents=True)
    parent.chmod(0o555)
    try:
        argv = [str(tiny_bids), str(parent / "out"), "participant"]
        work = build_config(build_parser().parse_args(argv), argv).work_dir
        assert work.is_dir() and work.parent == Path(tempfile.gettempdir()).resolve()
        assert str(os.getuid()) in work.name and not (parent / "work").exists()
        other = [str(tiny_bids), str(tmp_path / "out2"), "participant"]
        assert build_config(build_parser().parse_args(other), other).work_dir != work
        with caplog.at_level("INFO", logger="bids_tspo"):
            assert main(argv + ["--participant-label", "99"]) != 0
    finally:
        parent.chmod(0o755)
    assert f"work directory {work}" in (parent / "out" / "logs").glob("*.log").__next__().read_text()
    assert not work.exists()  # the failed run wrote nothing there: no empty folder left behind
    kept = work / "participant"  # one that holds work is kept for the rerun to reuse
    kept.mkdir(parents=True)
    main(argv + ["--participant-label", "99"])
    assert kept.is_dir()
    kept.rmdir()
    work.rmdir()


def test_caches_go_to_a_per_user_temp_folder(monkeypatch):
    import tempfile

    from bids_tspo.app.scratch import private_caches

    for var in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRITON_CACHE_DIR", "/chosen")
    private_caches()
    root = Path(tempfile.gettempdir()) / f"bids_tspo_cache_{os.getuid()}"
    assert os.environ["MPLCONFIGDIR"] == str(root / "matplotlib")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(root / "torchinductor")
    assert os.environ["TRITON_CACHE_DIR"] == "/chosen"


def test_uid_without_passwd_entry_gets_a_user_name(monkeypatch):
    """docker -u 4321:4321 has no passwd entry: getpass.getuser() (torch calls it) must work."""
    import getpass
    import pwd

    from bids_tspo.app.scratch import private_caches

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(KeyError):
        getpass.getuser()
    private_caches()
    assert getpass.getuser() == f"uid{os.getuid()}"
