"""--learn-deviation: the fold's population map as a second input and an additive prior on the
output; trains and synthesises on the tiny phantom, and the bundle replays it."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from bids_tspo.app.cli import main
from bids_tspo.model.network import TSPOUNet, UNetConfig

from .conftest import GROUP_ARGS

DEV_ID = "tspo-unetdev_minmax_32_k2_s42"


def test_untrained_deviation_network_returns_its_prior():
    """The last layer starts at zero: before training the output is the prior itself, so the
    network only has to learn the deviation from the population map."""
    net = TSPOUNet(UNetConfig(in_channels=2, prior=True)).eval()
    prior = torch.rand(1, 1, 16, 16, 16) * 0.9 + 0.05
    x = torch.cat([torch.rand(1, 1, 16, 16, 16), prior], dim=1)
    with torch.no_grad():
        out = net(x)
    assert torch.allclose(out, prior, atol=1e-5)
    assert not torch.allclose(TSPOUNet().eval()(x[:, :1]), prior, atol=1e-2)  # paper's model


def test_learn_deviation_trains_synthesises_and_the_bundle_replays_it(tiny_bids, preprocessed):
    root, out = preprocessed
    dev = root / "deviation"
    shutil.copytree(out, dev)
    args = [str(tiny_bids), str(dev), "group", "-w", str(root / "work_dev"), *GROUP_ARGS]
    assert main(args + ["--learn-deviation"]) == 0
    bundle = dev / "models" / DEV_ID
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["network"]["learn_deviation"] is True
    assert meta["architecture"]["in_channels"] == 2 and meta["architecture"]["prior"] is True
    assert "--learn-deviation" in (bundle / "README.md").read_text()
    splits = json.loads((bundle / "splits.json").read_text())
    for fold in splits["folds"]:
        population = nib.load(bundle / f"fold-{fold['fold']}" / "population.nii.gz")
        values, support = population.dataobj[..., 0], population.dataobj[..., 1] > 0.5
        assert 1000 < support.sum() and 0 < values[support].mean() < 1
    table = pd.read_csv(dev / "group_metrics.tsv", sep="\t")
    assert len(table) == 4 and table["pearson_r"].notna().all()
    # after 1 epoch the map is still near the population prior: it correlates with the truth
    # about as well as the training-mean baseline does
    assert table["pearson_r"].median() > 0.5
    synth = sorted(dev.glob("sub-*/ses-*/pet/*_space-T1w_desc-synth_pet.nii.gz"))
    assert len(synth) == 4
    before = {p.name: np.asarray(nib.load(p).dataobj) for p in synth}
    # replay: the bundle evaluated with --model gives the fold ensemble from the saved maps
    replay = root / "deviation_replay"
    shutil.copytree(out, replay)
    assert main([str(tiny_bids), str(replay), "group", "-w", str(root / "work_dev2"),
                 "--model", str(bundle), "--omp-nthreads", "2"]) == 0
    maps = sorted(replay.glob("sub-*/ses-*/pet/*_space-T1w_desc-synth_pet.nii.gz"))
    assert [p.name for p in maps] == sorted(before)
    again = {p.name: np.asarray(nib.load(p).dataobj) for p in maps}
    meta = json.loads(maps[0].with_name(maps[0].name.replace(".nii.gz", ".json")).read_text())
    assert meta["FoldsUsed"] == [0, 1]
    for name, data in again.items():
        inside = data > 0
        assert inside.sum() > 1000
        assert np.corrcoef(data[inside], before[name][inside])[0, 1] > 0.9
    # and a missing population map is a clear input error (exit 65), not a traceback
    (bundle / "fold-1" / "population.nii.gz").unlink()
    assert main([str(tiny_bids), str(replay), "group", "-w", str(root / "work_dev3"),
                 "--model", str(bundle), "--omp-nthreads", "2"]) == 65
