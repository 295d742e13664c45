"""Group level and synthesis on the tiny phantom: bundle, out-of-fold maps, --fold jobs,
participant synthesis with --model, bundle errors."""

from __future__ import annotations

import json
import re
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from bids_tspo.app.cli import main

from .conftest import GROUP_ARGS, MODEL_ID


def test_bundle_is_self_describing(grouped):
    bundle = grouped / "models" / MODEL_ID
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["folds_trained"] == [0, 1]
    per_fold = meta["training"]["per_fold"]
    assert set(per_fold) == {"0", "1"}
    assert all(f["device"] == "cpu" and f["world_size"] == 1 and f["epochs"] == 1
               and f["seconds"] > 0 for f in per_fold.values())
    assert meta["architecture"]["channels"] == 32
    assert meta["normalisation"]["target"] == "minmax"
    adjustment = meta["genotype_adjustment"]
    assert adjustment["applied_to_target"] is False  # minmax: recorded only
    for key in ("contrast_factors_per_fold", "uptake_factors_per_fold"):
        factors = adjustment[key]
        assert set(factors) == {"0", "1"}
        assert all(f.get("HAB", 1.0) == 1.0 for f in factors.values())
    assert "pearson_r" in " ".join(meta["metrics_summary"])
    assert meta["training"]["augmentation"]["rotate_rad"] > 0
    card = (bundle / "README.md").read_text()
    assert "not for diagnosis" in card and "Augmentation per sample: left-right flips" in card
    for k in (0, 1):
        state = torch.load(bundle / f"fold-{k}" / "weights.pt", weights_only=True)
        assert state and all(isinstance(v, torch.Tensor) for v in state.values())
        assert (bundle / f"fold-{k}" / "history.tsv").read_text().startswith("epoch\t")
    splits = json.loads((bundle / "splits.json").read_text())
    tests = [s for f in splits["folds"] for s in f["test"]]
    assert sorted(tests) == ["01", "02", "03"]  # sub-04 is MRI-only
    log = "".join(p.read_text() for p in (grouped / "logs").glob("bids_tspo_group_*.log"))
    assert log.count("optimiser steps per fold") == 1  # 1 epoch: warned once, not per fold


def test_out_of_fold_maps_and_metrics(grouped, tiny_bids):
    splits = json.loads((grouped / "models" / MODEL_ID / "splits.json").read_text())
    fold_of = {s: f["fold"] for f in splits["folds"] for s in f["test"]}
    table = pd.read_csv(grouped / "group_metrics.tsv", sep="\t")
    assert list(table.columns[:6]) == ["bids_name", "participant_id", "session_id", "group",
                                       "genotype", "fold"]
    assert sorted(table.bids_name) == ["sub-01_ses-01", "sub-02_ses-01", "sub-02_ses-02",
                                       "sub-03_ses-01"]
    for col in ("mse", "normdiff", "percdiff", "cnr_synth", "mse_smooth", "ssim", "psnr",
                "pearson_r", "baseline_pearson_r", "mse_tpl", "pearson_r_tpl", "cnr_synth_tpl",
                "normdiff_smooth_tpl", "ssim_tpl", "deviation_r", "deviation_r_smooth"):
        assert col in table and table[col].notna().all(), col
    for _, row in table.iterrows():
        sub, ses = row.participant_id, row.session_id
        assert row.fold == fold_of[sub[4:]]
        synth = grouped / sub / ses / "pet" / f"{row.bids_name}_space-T1w_desc-synth_pet.nii.gz"
        meta = json.loads(synth.with_name(synth.name.replace(".nii.gz", ".json")).read_text())
        assert meta["CrossValidationFold"] == row.fold and meta["FoldsUsed"] == [row.fold]
        raw = nib.load(tiny_bids / sub / ses / "anat" / f"{row.bids_name}_T1w.nii.gz")
        img = nib.load(synth)
        assert img.shape == raw.shape and np.allclose(img.affine, raw.affine, atol=1e-4)
        assert (synth.parent / f"{row.bids_name}_space-MNI152NLin2009aSym_desc-synth_pet.nii.gz"
                ).is_file()


def test_every_group_table_has_a_sidecar_describing_its_columns(grouped):
    tables = sorted(grouped.glob("group_*.tsv"))
    assert {p.stem for p in tables} == {"group_metrics", "group_regions", "group_region_stats",
                                        "group_paper_regions", "group_paper_region_stats",
                                        "group_specificity", "group_cohort"}
    for tsv in tables:
        columns = pd.read_csv(tsv, sep="\t", nrows=1).columns
        sidecar = json.loads(tsv.with_suffix(".json").read_text())
        assert list(sidecar) == list(columns), tsv.name
        for name, about in sidecar.items():
            assert about["LongName"] and len(about["Description"]) > 20, (tsv.name, name)
            assert "{}" not in about["LongName"] + about["Description"], (tsv.name, name)
    metrics = json.loads((grouped / "group_metrics.json").read_text())
    assert metrics["baseline_mse_smooth"]["LongName"] == "Baseline MSE, true PET at 4 mm"
    assert metrics["mse_smooth_tpl"]["LongName"] == "MSE, true PET at 4 mm, template space"
    assert metrics["percdiff"]["Units"] == "%"
    html = (grouped / "sub-02.html").read_text()  # the report card uses the same labels
    assert "<th title=\"pearson_r_smooth: Voxelwise" in html and ">PercDiff</th>" in html
    # repeated scans of one person: the region correlation over subjects too, in the report
    stats = pd.read_csv(grouped / "group_region_stats.tsv", sep="\t")
    assert (stats.n_subjects < stats.n_sessions).all() and "pearson_r_sessions" in stats
    assert (stats.n_subjects == 3).all()  # the subjects with PET: the unit of every test
    for column in stats.columns:  # a BH q beside every p
        parts = column.split("_")
        if "p" in parts:
            q = "_".join("q" if x == "p" else x for x in parts)
            assert list(stats.columns).index(q) == list(stats.columns).index(column) + 1
    report = (grouped / "group_report.html").read_text()
    assert "<th>pearson_q</th>" in report and "<th>icc</th>" in report
    # U-Net vs baseline paired over subjects, and the paper's CNR t-test, in report and bundle
    assert "<th>paired Wilcoxon p (subjects)</th>" in report
    assert "paired t-test across sessions" in report
    summary = json.loads((grouped / "models" / MODEL_ID / "model.json").read_text())[
        "metrics_summary"]
    subjects = pd.read_csv(grouped / "group_metrics.tsv", sep="\t").participant_id.nunique()
    assert 0 <= summary["subjects_unet_r_above_baseline"] <= subjects
    assert 0 < summary["cnr_paired_t_p"] <= 1


def test_fold_jobs_then_group_equal_one_run(tiny_bids, preprocessed, grouped):
    root, out = preprocessed
    jobs = root / "jobs"
    shutil.copytree(out, jobs)
    base = [str(tiny_bids), str(jobs), "group", "-w", str(root / "work_j"), *GROUP_ARGS]
    assert main(base + ["--fold", "1"]) == 0
    assert main(base + ["--fold", "0"]) == 0
    assert not (jobs / "group_metrics.tsv").exists()  # folds alone do not evaluate
    assert main(base) == 0
    for k in (0, 1):
        a = torch.load(grouped / "models" / MODEL_ID / f"fold-{k}" / "weights.pt",
                       weights_only=True)
        b = torch.load(jobs / "models" / MODEL_ID / f"fold-{k}" / "weights.pt",
                       weights_only=True)
        assert all(torch.equal(a[n], b[n]) for n in a)
    pd.testing.assert_frame_equal(pd.read_csv(grouped / "group_metrics.tsv", sep="\t"),
                                  pd.read_csv(jobs / "group_metrics.tsv", sep="\t"))
    done = jobs / "models" / MODEL_ID / "fold-0" / "done.json"
    stamp = done.stat().st_mtime_ns
    assert main(base + ["--fold", "0"]) == 0 and done.stat().st_mtime_ns == stamp  # reused
    assert main(base + ["--fold", "0", "--clean-workdir"]) == 0
    assert done.stat().st_mtime_ns != stamp  # retrained from scratch
    stamp = done.stat().st_mtime_ns
    assert main(base + ["--fold", "0", "--epochs", "2"]) == 0  # more epochs alone: reused
    assert done.stat().st_mtime_ns == stamp
    assert main(base + ["--fold", "0", "--epochs", "2", "--lr", "5e-5",
                        "--continue-training"]) == 0
    assert json.loads(done.read_text())["epochs"] == 2
    history = pd.read_csv(done.with_name("history.tsv"), sep="\t")
    assert history["epoch"].tolist() == [1, 2] and history["lr"].tolist() == [1e-4, 5e-5]


def test_participant_synthesis_with_model_mri_only(tiny_bids, grouped, tmp_path):
    out = tmp_path / "apply"
    code = main([str(tiny_bids), str(out), "participant", "--participant-label", "04",
                 "--sloppy", "--model", str(grouped / "models" / MODEL_ID), "-w",
                 str(tmp_path / "w"), "--omp-nthreads", "2"])
    assert code == 0
    pet = out / "sub-04/ses-01/pet"
    mean = nib.load(pet / "sub-04_ses-01_space-T1w_desc-synth_pet.nii.gz").get_fdata()
    sd = nib.load(pet / "sub-04_ses-01_space-T1w_desc-synthstd_pet.nii.gz").get_fdata()
    raw = nib.load(tiny_bids / "sub-04/ses-01/anat/sub-04_ses-01_T1w.nii.gz")
    assert mean.shape == raw.shape
    assert mean.max() <= 1 and mean.max() > 0 and sd.max() > 0 and sd.min() >= 0
    meta = json.loads((pet / "sub-04_ses-01_space-T1w_desc-synthstd_pet.json").read_text())
    assert meta["FoldsUsed"] == [0, 1] and "CrossValidationFold" not in meta
    # the MRI-only report states the fold models' agreement: the map's own uncertainty
    html = (out / "sub-04.html").read_text()
    spread = re.search(r"Fold models agree to a mean SD of ([0-9.e-]+) in the brain", html)
    inside = mean > 0
    assert spread and abs(float(spread.group(1)) - sd[inside].mean()) < 0.2 * sd[inside].mean()


def test_synthesis_with_a_bundle_that_lost_to_its_baseline_warns(tiny_bids, grouped, tmp_path,
                                                                 capsys):
    """A bundle whose out-of-fold verdict is 'worse than the baseline' gets a WARNING in the
    log, a Warning in the synth sidecar and a warning box in the participant report; one that
    won gets none of them."""
    out = tmp_path / "apply"
    for status in ("better", "worse"):
        bundle = tmp_path / status / MODEL_ID
        shutil.copytree(grouped / "models" / MODEL_ID, bundle)
        meta = json.loads((bundle / "model.json").read_text())
        meta["metrics_summary"]["verdict"] = {
            "status": status, "text": f"{status} than the population baseline in 3 of 3."}
        (bundle / "model.json").write_text(json.dumps(meta))
        code = main([str(tiny_bids), str(out), "participant", "--participant-label", "04",
                     "--sloppy", "--model", str(bundle), "-w", str(tmp_path / "w"),
                     "--omp-nthreads", "2"])
        assert code == 0
        err = capsys.readouterr().err
        side = json.loads((out / "sub-04/ses-01/pet/sub-04_ses-01_space-T1w_desc-synth_pet.json"
                           ).read_text())
        html = (out / "sub-04.html").read_text()
        lost = f"model {MODEL_ID} lost to its training-mean baseline"
        if status == "worse":
            assert "WARNING" in err and lost in err
            assert side["Warning"].startswith(lost) and lost in html
            assert 'class="warning"' in html
        else:
            assert lost not in err and "Warning" not in side and 'class="warning"' not in html


def test_broken_bundles_are_refused(tiny_bids, grouped, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(grouped / "models" / MODEL_ID, bundle)
    args = [str(tiny_bids), str(tmp_path / "o"), "participant", "--participant-label", "04",
            "--sloppy", "--model", str(bundle), "-w", str(tmp_path / "w")]
    (bundle / "fold-1" / "weights.pt").write_bytes(b"garbage")
    assert main(args) == 65
    assert "fold-1/weights.pt: cannot be loaded" in capsys.readouterr().err
    meta = json.loads((bundle / "model.json").read_text())
    meta["bundle_format"] = 99
    (bundle / "model.json").write_text(json.dumps(meta))
    assert main(args) == 65
    assert "bundle format 99 is not supported" in capsys.readouterr().err
    (bundle / "model.json").unlink()
    assert main(args) == 65
    assert "not a bids_tspo model bundle" in capsys.readouterr().err
    parent = [*args[:-3], str(grouped / "models"), *args[-2:]]  # the folder of bundles
    assert main(parent) == 65
    err = capsys.readouterr().err
    assert f"it holds the bundle(s) {grouped / 'models' / MODEL_ID}: pass one of them" in err


def test_session_whose_pet_misses_the_brain_is_left_out(tiny_bids, preprocessed, grouped,
                                                         tmp_path, capsys):
    """A PET whose field of view misses the brain cannot be normalised into a target, a
    truncated SUV map cannot be read: the group level names each file, leaves those sessions
    out, evaluates the others and exits 65."""
    from bids_tspo.io.derivatives import fov_mask_for

    out = tmp_path / "out"
    shutil.copytree(preprocessed[1], out)
    suv = next((out / "sub-01/ses-01/pet").glob("*_space-T1w_desc-suv_pet.nii.gz"))
    fov = nib.load(fov_mask_for(suv))
    nib.save(nib.Nifti1Image(np.zeros(fov.shape, np.uint8), fov.affine), fov_mask_for(suv))
    truncated = next((out / "sub-03/ses-01/pet").glob("*_space-T1w_desc-suv_pet.nii.gz"))
    truncated.write_bytes(truncated.read_bytes()[:4000])
    code = main([str(tiny_bids), str(out), "group", "--model", str(grouped / "models" / MODEL_ID),
                 "-w", str(tmp_path / "w"), "--omp-nthreads", "2"])
    err = capsys.readouterr().err
    assert code == 65, err
    assert f"{suv.name}: the PET field of view covers 0.0 % of the brain mask" in err
    assert f"{truncated.name}: cannot be read (" in err and "rerun the participant level" in err
    before = set(pd.read_csv(grouped / "group_metrics.tsv", sep="\t")["bids_name"])
    after = set(pd.read_csv(out / "group_metrics.tsv", sep="\t")["bids_name"])
    left_out = {"sub-01_ses-01", "sub-03_ses-01"}
    assert left_out <= before and after == before - left_out
    summary = json.loads(next((out / "logs").glob("summary_group_*.json")).read_text())
    assert sorted(f["session"] for f in summary["failed"]) == sorted(left_out)
    assert "covers 0.0 % of the brain mask" in (out / "group_report.html").read_text()


def test_compiled_and_bfloat16_synthesis_match_eager_float32(tiny_bids, grouped, tmp_path):
    """--compile builds the network once and swaps fold weights into it: same maps; bfloat16
    arithmetic (--precision bf16, the default on CUDA and bf16-capable CPUs) stays within a
    small tolerance of float32 and says so in the sidecar. The runs reuse the preprocessing,
    so only the synthesis differs."""
    out, maps = tmp_path / "apply", {}
    pet = out / "sub-04/ses-01/pet"
    for tag, extra in (("eager", []), ("compiled", ["--compile"]), ("bf16", [])):
        precision = "bf16" if tag == "bf16" else "fp32"
        code = main([str(tiny_bids), str(out), "participant", "--participant-label", "04",
                     "--sloppy", "--model", str(grouped / "models" / MODEL_ID), "-w",
                     str(tmp_path / "w"), "--omp-nthreads", "2", "--precision", precision,
                     *extra])
        assert code == 0
        maps[tag] = [nib.load(pet / f"sub-04_ses-01_space-T1w_desc-{d}_pet.nii.gz").get_fdata()
                     for d in ("synth", "synthstd")]
        sidecar = json.loads((pet / "sub-04_ses-01_space-T1w_desc-synth_pet.json").read_text())
        assert sidecar["SynthesisPrecision"] == ("bfloat16" if tag == "bf16" else "float32")
    for eager, compiled in zip(maps["eager"], maps["compiled"]):
        assert np.abs(eager - compiled).max() < 1e-4
    assert maps["eager"][1].max() > 0  # two different fold models were really swapped in
    synth32, synth16 = maps["eager"][0], maps["bf16"][0]
    inside = synth32 > 0
    assert not np.array_equal(synth32, synth16)  # bfloat16 really ran
    assert np.abs(synth32 - synth16)[inside].mean() < 5e-3
    assert np.corrcoef(synth32[inside], synth16[inside])[0, 1] > 0.999


def test_flip_pair_batched_or_not_gives_one_symmetric_map():
    """The flip pair as one batch of 2 (CUDA) or two passes (CPU): the same map; and averaging
    with the left-right flip makes the synthesis of a flipped T1w the flipped synthesis."""
    from bids_tspo.model.infer import Network, predict
    from bids_tspo.model.network import TSPOUNet, UNetConfig

    torch.manual_seed(0)
    cpu = torch.device("cpu")
    net = Network(UNetConfig(), cpu, precision="fp32")
    net.load(TSPOUNet().state_dict())
    t1 = np.random.default_rng(0).random((1, 32, 32, 32), dtype=np.float32)
    batched = predict(net, t1, cpu, batch_flips=True)
    paired = predict(net, t1, cpu, batch_flips=False)
    np.testing.assert_allclose(batched, paired, atol=1e-5)
    mirrored = predict(net, np.ascontiguousarray(t1[:, ::-1]), cpu)
    np.testing.assert_allclose(mirrored[::-1], paired, atol=1e-5)
    single = predict(net, t1, cpu, flips=False)
    assert np.abs(single - paired).max() > 1e-4  # the flip really averaged something


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_synthesis_matches_cpu_float32():
    """CUDA synthesis (bfloat16, the flip pair batched, fold weights cached on the GPU) gives
    the float32 CPU map within bfloat16's rounding."""
    from bids_tspo.model.infer import Network, predict
    from bids_tspo.model.network import TSPOUNet, UNetConfig

    torch.manual_seed(0)
    state = TSPOUNet().state_dict()
    t1 = np.random.default_rng(0).random((1, 32, 32, 32), dtype=np.float32)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    reference = Network(UNetConfig(), cpu, precision="fp32")
    reference.load(state)
    net = Network(UNetConfig(), gpu)
    assert net.precision == "bfloat16"
    for _ in range(2):
        net.load(state)
        out = predict(net, t1, gpu)
    assert len(net._on_device) == 1
    assert np.abs(out - predict(reference, t1, cpu)).max() < 0.02


def test_fold_weights_copied_to_an_accelerator_once():
    """Off the CPU, each fold's state dict is copied to the device the first time it is
    loaded and reused after ("meta" stands in for a GPU: same code path, no memory)."""
    from bids_tspo.model.infer import Network
    from bids_tspo.model.network import TSPOUNet, UNetConfig

    net = Network(UNetConfig(), torch.device("meta"), precision="fp32")
    folds = [TSPOUNet().state_dict() for _ in range(2)]
    for _ in range(3):
        for state in folds:
            net.load(state)
    assert len(net._on_device) == 2
    copies = [on_device for _, on_device in net._on_device.values()]
    assert all(v.device.type == "meta" for c in copies for v in c.values())
    assert all(v.device.type == "cpu" for v in folds[0].values())  # the bundle stays put
    cpu = Network(UNetConfig(), torch.device("cpu"), precision="fp32")
    cpu.load(folds[0])
    assert not cpu._on_device  # on the CPU the bundle's tensors are loaded directly


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    from bids_tspo.model.infer import Network
    from bids_tspo.model.network import TSPOUNet, UNetConfig

    def broken(module):
        def call(x):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    net = Network(UNetConfig(), torch.device("cpu"), compile=True, precision="fp32")
    net.load(TSPOUNet().state_dict())
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)
    assert "falling back to eager" in caplog.text


def test_synthesis_precision_choice(monkeypatch, caplog):
    """auto: bfloat16 on CUDA and on CPUs with native bfloat16, float32 elsewhere; on such a
    CPU --compile is skipped (eager bfloat16 is faster there)."""
    import logging

    from bids_tspo.model.infer import Network, synthesis_dtype
    from bids_tspo.model.network import UNetConfig

    cpu = torch.device("cpu")
    assert synthesis_dtype(cpu, "fp32") is None
    assert synthesis_dtype(cpu, "bf16") == torch.bfloat16
    assert synthesis_dtype(torch.device("cuda"), "auto") == torch.bfloat16
    assert synthesis_dtype(torch.device("cuda"), "fp32") is None
    for native in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        assert synthesis_dtype(cpu, "auto") == (torch.bfloat16 if native else None)
    caplog.set_level(logging.INFO, logger="bids_tspo")
    net = Network(UNetConfig(), cpu, compile=True, precision="bf16")
    assert net.call is net.module and net.precision == "bfloat16"
    assert "--compile skipped" in caplog.text


def test_torchrun_group_level_two_ranks(tiny_bids, preprocessed, tmp_path):
    """The real multi-process path: torchrun, 2 gloo ranks on CPU, sharing one OUTPUT_DIR and
    one cache folder (whose temporary names are per process: a shared name made one rank fail
    when both renamed it; timing-dependent, so this run does not always catch that)."""
    import subprocess
    import sys

    _, out = preprocessed
    dest = tmp_path / "ddp"
    shutil.copytree(out, dest)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "bids_tspo", str(tiny_bids), str(dest),
                           "group", "-w", str(tmp_path / "w"), *GROUP_ARGS],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bundle = dest / "models" / MODEL_ID
    assert json.loads((bundle / "model.json").read_text())["folds_trained"] == [0, 1]
    assert len(pd.read_csv(dest / "group_metrics.tsv", sep="\t").bids_name.unique()) == 4
