"""Tests with numbers of what the evaluation rests on: training learns (a learnable toy's
validation loss falls below half of epoch 1's and the weights move), and each fold's baseline
is built from that fold's training subjects only (a test subject leaking in fails)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from bids_tspo.app import group_level
from bids_tspo.evaluation import baseline
from bids_tspo.model.network import TSPOUNet, UNetConfig
from bids_tspo.model.splits import make_splits, oof_plan
from bids_tspo.model.loss import masked_loss
from bids_tspo.model.train import TrainSettings, seed_everything, train_fold

CFG = UNetConfig(channels=8, groups=4, out_groups=4)


def _toy(n: int, seed: int, size: int = 16) -> list[dict]:
    """Smooth random T1w volumes; the PET is 1 where the T1w is above its median in the brain,
    0 elsewhere: a pointwise rule the network can learn (and BCE can approach 0 on)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        t1 = ndimage.gaussian_filter(rng.random((size,) * 3), 1.5)
        t1 = (t1 - t1.min()) / (t1.max() - t1.min())
        mask = np.zeros((size,) * 3, np.float32)
        mask[2:-2, 2:-2, 2:-2] = 1
        pet = (t1 > np.median(t1[mask > 0])).astype(np.float32)
        items.append({"name": f"s{seed}-{i}", "t1": (t1 * mask)[None].astype(np.float32),
                      "pet": (pet * mask)[None], "mask": mask[None], "affine": np.eye(4)})
    return items


def test_training_on_a_learnable_toy_halves_the_validation_loss(tmp_path):
    """6 training and 2 unseen validation volumes of 16³, CPU, 12 epochs (~15 s): the
    validation loss goes from 0.42 after epoch 1 to 0.14-0.16 in the last epochs; a
    train_fold that never stepped the optimiser would keep epoch 1's loss and its initial
    weights."""
    torch.set_num_threads(1)
    settings = TrainSettings(epochs=12, batch_size=2, lr=3e-3, seed=0, augment=False,
                             progress=False)
    summary = train_fold(tmp_path / "fold", _toy(6, 0), _toy(2, 1), CFG, settings)
    lines = (tmp_path / "fold" / "history.tsv").read_text().splitlines()
    header, rows = lines[0].split("\t"), [line.split("\t") for line in lines[1:]]
    val = [float(r[header.index("val_loss")]) for r in rows]
    train = [float(r[header.index("train_loss")]) for r in rows]
    assert len(val) == 12
    assert min(val[-3:]) < 0.5 * val[0] and summary["best_score"] < 0.5 * val[0]
    assert train[-1] < 0.5 * train[0]
    seed_everything(settings.seed)  # the initial weights train_fold started from
    initial = TSPOUNet(CFG).state_dict()
    trained = torch.load(tmp_path / "fold" / "weights.pt", weights_only=True)
    changed = [k for k, v in initial.items()
               if v.is_floating_point() and not torch.allclose(v, trained[k], atol=1e-4)]
    weights = [k for k, v in initial.items() if v.is_floating_point() and v.dim() > 1]
    assert set(weights) <= set(changed)  # every convolution / attention weight moved
    assert json.loads((tmp_path / "fold" / "done.json").read_text())["epochs"] == 12


def _sessions(n_subjects: int) -> list[SimpleNamespace]:
    """Two sessions per subject (the paper's repeated scans), subject k's PET a bump at voxel k."""
    return [SimpleNamespace(subject=f"{k:02d}", name=f"sub-{k:02d}_ses-{s}", genotype="n/a",
                            group="HC" if k % 2 else "P")
            for k in range(n_subjects) for s in (1, 2)]


def test_each_folds_baseline_holds_its_training_subjects_only(monkeypatch):
    """Real splits, plan and training mean on template images where subject k's PET is 1 + a
    bump at voxel k: the fold's baseline is 1/n at each of its n training (and validation)
    subjects' voxels and exactly 0 at every test subject's."""
    n = 9
    sessions = _sessions(n)

    def template_suv(files):
        suv = np.ones((n, 2, 2), np.float32)
        suv[int(files.subject), 0, 0] = 2.0
        return nib.Nifti1Image(suv, np.eye(4))

    monkeypatch.setattr(baseline, "template_suv", template_suv)
    splits = make_splits({s.subject: s.group for s in sessions}, 3, 0)
    plan = oof_plan(splits, sessions)
    assert len(plan) == 3
    for (_, k, test, train), fold in zip(plan, splits["folds"]):
        mean, _, support = baseline.training_mean(train, "minmax", np.ones((n, 2, 2), bool))
        learners = sorted(fold["train"] + fold["val"])
        assert sorted({f.subject for f in train}) == learners and support.all()
        value = mean[:, 0, 0]
        for f in test:
            assert value[int(f.subject)] == 0.0, f"fold {k}: test subject {f.subject} leaked"
        assert value[[int(s) for s in learners]] == pytest.approx(1 / len(learners))
    # and a leak would show: the same mean with one test session added
    leaked = train + [test[0]]
    mean, _, _ = baseline.training_mean(leaked, "minmax", np.ones((n, 2, 2), bool))
    assert mean[int(test[0].subject), 0, 0] > 0


def test_evaluation_scores_each_test_session_against_its_own_folds_baseline(monkeypatch,
                                                                            tmp_path):
    """The group level's evaluation stage, its heavy steps stubbed: each session's baseline
    is the training mean of its fold's plan, whose sessions never include the subject, and
    each session is scored with its own target normalisation."""
    sessions = _sessions(6)
    img = nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4))
    for f in sessions:
        f.t1w = f.mask = tmp_path / "one.nii.gz"
    nib.save(img, tmp_path / "one.nii.gz")
    splits = make_splits({s.subject: s.group for s in sessions}, 3, 1)
    plan = oof_plan(splits, sessions)
    means, scored = {}, []

    def training_mean(train, *args):
        token = len(means)
        means[token] = {f.subject for f in train}
        return token

    def score_session(files, synth, fold, target, reference, mean_train, seed, factor,
                      pet_scale):
        assert pet_scale is cohort.items[files.name]["pet_scale"]  # the session's own
        scored.append((files.subject, fold, mean_train))
        return []

    monkeypatch.setattr(group_level, "training_mean", training_mean)
    monkeypatch.setattr(group_level, "score_session", score_session)
    monkeypatch.setattr(group_level, "Network", lambda *a, **k: SimpleNamespace(
        precision="float32"))
    monkeypatch.setattr(group_level, "ensemble", lambda *a, **k: (None, None))
    monkeypatch.setattr(group_level, "native_maps", lambda *a, **k: {"synth": None})
    monkeypatch.setattr(group_level, "write_maps", lambda *a, **k: None)
    monkeypatch.setattr(group_level, "write_region_tables", lambda *a, **k: ({}, {}))
    monkeypatch.setattr(group_level, "write_metrics", lambda *a, **k: {})
    config = SimpleNamespace(compile=False, precision="float32", output_dir=Path(tmp_path),
                             seed=0)
    bundle = SimpleNamespace(cfg=CFG, target="minmax", suvr_reference="wholebrain")
    cohort = SimpleNamespace(items={f.name: {"pet_scale": np.array([i, 1.0])}
                                    for i, f in enumerate(sessions)}, paired=sessions)
    group_level.evaluate(config, bundle, plan, cohort, "cpu", {})
    assert len(scored) == len(sessions)
    test_of = {s: f["fold"] for f in splits["folds"] for s in f["test"]}
    for subject, fold, token in scored:
        assert fold == test_of[subject]
        learners = splits["folds"][fold]["train"] + splits["folds"][fold]["val"]
        assert means[token] == set(learners) and subject not in means[token]


def test_loss_takes_a_target_rounded_just_above_one():
    """The robust target clips its top 0.5 % to 1; the augmentation's interpolation over such a
    plateau can give 1 + 1e-7 in float32, which binary_cross_entropy refused (a group run
    stopped in fold 1: "all elements of target should be between 0 and 1")."""
    pred = torch.full((1, 1, 2, 2, 2), 0.5)
    target = torch.full((1, 1, 2, 2, 2), 1.0) + 1e-7
    assert target.max() > 1.0
    assert torch.isfinite(masked_loss(pred, target, torch.ones_like(pred)))
