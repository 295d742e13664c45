"""--learn-deviation: the fold's population map as a second input and an additive prior on the
output; trains (with ``--deviation-loss``) and synthesises on the tiny phantom, and the bundle
replays it."""

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

DEV_ID = "tspo-unetdev-dloss1_minmax_32_k2_s42"  # with --deviation-loss 1


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
    assert main(args + ["--learn-deviation", "--deviation-loss", "1"]) == 0
    bundle = dev / "models" / DEV_ID
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["network"]["learn_deviation"] is True
    assert meta["architecture"]["in_channels"] == 2 and meta["architecture"]["prior"] is True
    assert "--learn-deviation" in (bundle / "README.md").read_text()
    assert "+ 1 x (1 - r of the prediction's" in meta["training"]["loss"]
    for k in (0, 1):  # the loss reached each fold's training (the group level's settings)
        done = json.loads((bundle / f"fold-{k}" / "done.json").read_text())
        assert done["settings"]["deviation_loss"] == 1.0
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


def _deviation_case(seed=0):
    """A population map, a person's departure from it and a mask with an outside slab."""
    gen = torch.Generator().manual_seed(seed)
    prior = torch.rand(2, 1, 8, 8, 8, generator=gen) * 0.5 + 0.2
    departure = torch.randn(2, 1, 8, 8, 8, generator=gen) * 0.05
    mask = torch.ones(2, 1, 8, 8, 8)
    mask[..., :2] = 0
    return prior, departure, mask


def test_deviation_loss_scores_the_departure_from_the_prior_whatever_its_amplitude():
    from bids_tspo.model.loss import deviation_loss, masked_loss

    prior, departure, mask = _deviation_case()
    target = prior + departure
    # half the person's departure, in the right places: r = 1 (0.98 with the floor of the
    # prediction's variance at 1 % of the target's: 0.5 / sqrt(0.25 + 0.01)) ...
    half = float(deviation_loss(prior + 0.5 * departure, target, prior, mask))
    assert abs(half - (1 - 0.5 / 0.26 ** 0.5)) < 1e-4
    # ... while returning the population map alone follows none of it (r = 0), although its
    # MSE is already small: the term the paper's loss barely sees
    assert abs(float(deviation_loss(prior, target, prior, mask)) - 1.0) < 1e-5
    assert float(masked_loss(prior, target, mask) - masked_loss(target, target, mask)) < 0.01
    # someone else's departure: uncorrelated, near 1; the opposite one: about 2
    _, other, _ = _deviation_case(seed=1)
    assert 0.8 < float(deviation_loss(prior + other, target, prior, mask)) < 1.2
    assert abs(float(deviation_loss(prior - departure, target, prior, mask)) - 1.995) < 1e-3
    # voxels outside the mask do not count
    outside = (prior + 0.5 * departure).clone()
    outside[..., :2] = 0.9
    assert abs(float(deviation_loss(outside, target, prior, mask)) - half) < 1e-6


def test_deviation_loss_gradient_is_bounded_where_the_untrained_network_starts():
    """The untrained network returns its prior (to float rounding), where a plain correlation's
    gradient is singular (~10^8 times the paper loss's on this case, NaN at exact equality):
    Adam's first steps would be set by rounding noise and its moments poisoned."""
    from bids_tspo.model.loss import deviation_loss, masked_loss

    prior, departure, mask = _deviation_case()
    target = prior + departure
    net = TSPOUNet(UNetConfig(in_channels=2, prior=True, channels=8, groups=4, out_groups=4))
    x = torch.cat([torch.rand(prior.shape, generator=torch.Generator().manual_seed(2)), prior], 1)
    norms = {}
    for name, loss in (("paper", masked_loss), ("deviation", None)):
        net.zero_grad()
        pred = net(x)
        value = (masked_loss(pred, target, mask) if loss else
                 deviation_loss(pred, target, prior, mask))
        value.backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert all(torch.isfinite(g).all() for g in grads)
        norms[name] = float(sum(g.square().sum() for g in grads).sqrt())
    assert 0 < norms["deviation"] < 1e4 * norms["paper"]
    exact = prior.clone().requires_grad_(True)
    deviation_loss(exact, target, prior, mask).backward()
    assert torch.isfinite(exact.grad).all() and 0 < float(exact.grad.abs().max()) < 10


def test_deviation_loss_reaches_the_weights_and_the_record(tmp_path):
    """Same seed and data, W = 1 vs the paper's loss: other weights, done.json says which loss
    trained the fold, and the validation loss holds the term."""
    from bids_tspo.model.train import TrainSettings, train_fold

    prior, departure, mask = _deviation_case()
    items = []
    for i in range(3):
        t1 = (prior[i % 2] + departure[i % 2] * 4).numpy()
        items.append({"name": f"s{i}", "t1": np.concatenate([t1, prior[i % 2].numpy()]),
                      "pet": (prior[i % 2] + departure[i % 2]).numpy(),
                      "mask": mask[i % 2].numpy(), "affine": np.eye(4)})
    cfg = UNetConfig(in_channels=2, prior=True, channels=8, groups=4, out_groups=4)
    weights = {}
    for w in (0.0, 1.0):
        settings = TrainSettings(epochs=2, batch_size=2, lr=1e-3, seed=3, progress=False,
                                 augment=False, deviation_loss=w)
        train_fold(tmp_path / f"w{w:g}", items[:2], items[2:], cfg, settings)
        done = json.loads((tmp_path / f"w{w:g}" / "done.json").read_text())
        assert done["settings"]["deviation_loss"] == w
        weights[w] = torch.load(tmp_path / f"w{w:g}" / "weights.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in weights[1.0].values())
    assert any(not torch.equal(weights[0.0][k], weights[1.0][k]) for k in weights[0.0])
    # the validation loss holds the deviation term (1 - r, about 1 this early) on top
    val = {w: float((tmp_path / f"w{w:g}" / "history.tsv").read_text().splitlines()[-1]
                    .split("\t")[2]) for w in (0.0, 1.0)}
    assert val[1.0] > val[0.0] + 0.3


def test_deviation_loss_needs_learn_deviation_and_names_the_model(tiny_bids, tmp_path, capsys):
    from bids_tspo.app.cli import build_config, build_parser
    from bids_tspo.model.bundle import model_id_for
    from bids_tspo.model.loss import loss_text

    base = [str(tiny_bids), str(tmp_path / "out"), "group", *GROUP_ARGS]
    assert main([*base, "--deviation-loss", "1"]) == 64
    err = capsys.readouterr().err
    assert "--deviation-loss 1: the deviation is taken from the population map" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "models").exists()
    assert main([*base, "--learn-deviation", "--deviation-loss", "-1"]) == 64
    assert "cannot be negative, got -1" in capsys.readouterr().err
    config = build_config(build_parser().parse_args(
        [*base, "--learn-deviation", "--deviation-loss", "0.5"]), [])
    assert model_id_for(config) == "tspo-unetdev-dloss0.5_minmax_32_k2_s42"
    assert " + 0.5 x (1 - r of the prediction's and the target's deviations from the " \
        "population map" in loss_text(config.deviation_loss)
    paper = build_config(build_parser().parse_args(base), [])
    assert model_id_for(paper) == "tspo-unet_minmax_32_k2_s42"
    assert loss_text(paper.deviation_loss) == "0.5 BCE + 0.5 MSE in the brain inside the PET field of view"
