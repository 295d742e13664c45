"""Shared fixtures: tiny phantom datasets generated once per test session, in tmp dirs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")

import shutil  # noqa: E402

import numpy as np  # noqa: E402

from bids_tspo.app.cli import main  # noqa: E402
from bids_tspo.phantom import make_phantom  # noqa: E402

GROUP_ARGS = ["--folds", "2", "--epochs", "1", "--image-size", "32", "--omp-nthreads", "2"]
MODEL_ID = "tspo-unet_minmax_32_k2_s42"


@pytest.fixture(scope="session")
def tiny_bids(tmp_path_factory):
    """4 subjects, seed 3: sub-01 HC, sub-02 CLBP (2 sessions), sub-03 KOA, sub-04 MRI only."""
    return make_phantom(tmp_path_factory.mktemp("phantom") / "bids", n_subjects=4, seed=3,
                        size="tiny", progress=False)


@pytest.fixture(scope="session")
def tiny_bids_nosessions(tmp_path_factory):
    return make_phantom(tmp_path_factory.mktemp("phantom_noses") / "bids", n_subjects=2, seed=5,
                        size="tiny", with_sessions=False, progress=False)


@pytest.fixture
def empty_bids(tmp_path):
    """A minimal valid BIDS folder with no subjects."""
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    return root


@pytest.fixture(scope="session")
def preprocessed(tiny_bids, tmp_path_factory):
    root = tmp_path_factory.mktemp("group")
    out = root / "out"
    code = main([str(tiny_bids), str(out), "participant", "--sloppy", "-w", str(root / "work"),
                 "--omp-nthreads", "2", "--nprocs", "2"])
    assert code == 0
    return root, out


@pytest.fixture(scope="session")
def grouped(tiny_bids, preprocessed):
    root, out = preprocessed
    trained = root / "trained"
    shutil.copytree(out, trained)
    code = main([str(tiny_bids), str(trained), "group", "-w", str(root / "work_g"), *GROUP_ARGS])
    assert code == 0
    return trained


def three_blocks():
    """An 11-slice image holding three 4x4x3-voxel blocks separated by masked-out slices, each
    a 0/1 checkerboard (mean 0.5, var 0.25) offset by 0, 2 and 4, and its mask: the only CNR
    boxes of the paper's size are the blocks."""
    img = np.zeros((4, 4, 11))
    mask = np.zeros_like(img, bool)
    checker = np.indices((4, 4, 3)).sum(axis=0) % 2
    for offset, z in ((0.0, 0), (2.0, 4), (4.0, 8)):
        img[:, :, z:z + 3] = checker + offset
        mask[:, :, z:z + 3] = True
    return img, mask

