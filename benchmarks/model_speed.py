"""Synthesis latency, training throughput and the roofline of the U-Net, vs MONAI baselines.

    python benchmarks/model_speed.py [--device cpu|cuda] [--size 96] [--threads 2] [--repeats N]
                                     [--malloc app|app-1gib|system] [--only-synthesis]
                                     [--only-training]
                                     [--only-app-ensemble] [--only-work]

Measures, in one run (so the ratios are fair):
1. synthesis latency per session: one model (1 forward) and the 5-fold ensemble with flips
   (10 forwards), median of repeats, and peak memory; the app's own ensemble function in
   float32 and in bfloat16 autocast (``--precision``);
2. training throughput (volumes/s, batch 2) of TSPOUNet in eager fp32, channels-last, bf16
   autocast (CUDA) and torch.compile, next to MONAI BasicUNet and UNet configured to a
   comparable parameter count;
3. FLOPs per volume (torch's FlopCounterMode), bytes of activations written, the machine's
   measured peak (large GEMM) and the fraction of it that inference and training reach; the
   same counts for the baselines, and each training variant's achieved GFLOP/s, so that the
   ratio against BasicUNet splits into work (FLOPs, bytes) and speed per FLOP.
Writes ``benchmarks/results/model_speed_<device>_<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from preprocess import machine  # noqa: E402

from bids_tspo.app import resources  # noqa: E402
from bids_tspo.app.resources import reuse_freed_memory  # noqa: E402
from bids_tspo.model.infer import memory_format  # noqa: E402
from bids_tspo.model.network import TSPOUNet, count_parameters  # noqa: E402
from bids_tspo.model.loss import masked_loss  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def baselines():
    from monai.networks.nets import BasicUNet, UNet

    return {
        "monai_BasicUNet": lambda: BasicUNet(spatial_dims=3, in_channels=1, out_channels=1,
                                             features=(9, 9, 18, 36, 72, 9)),
        "monai_UNet": lambda: UNet(spatial_dims=3, in_channels=1, out_channels=1,
                                   channels=(16, 32, 48, 64), strides=(2, 2, 2), num_res_units=2),
    }


def train_step_fn(net, x, device, bf16: bool, channels_last: bool):
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    mask = torch.ones_like(x)
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = torch.sigmoid(net(x)) if not isinstance(net, TSPOUNet) else net(x)
            loss = masked_loss(out, x, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def flops_per_volume(net, size: int, device) -> tuple[float, float]:
    """(forward FLOPs, bytes of module outputs written) for one volume."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 1, size, size, size, device=device)
    written = []
    hooks = [m.register_forward_hook(lambda m, i, o: written.append(o.numel() * o.element_size()))
             for m in net.modules() if len(list(m.children())) == 0]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    for h in hooks:
        h.remove()
    return float(counter.get_total_flops()), float(sum(written))


def work_per_volume(size: int, device) -> dict:
    """Parameters, forward GFLOP and MiB of module outputs written per volume of TSPOUNet and
    of each baseline: what "equal parameters" leaves unequal (counts, no timing)."""
    work = {}
    for name, make in {"TSPOUNet": TSPOUNet, **baselines()}.items():
        net = make().to(device).eval()
        flops, written = flops_per_volume(net, size, device)
        work[name] = {"parameters": count_parameters(net),
                      "forward_gflop": round(flops / 1e9, 2),
                      "activations_written_mib": round(written / 2**20, 1)}
    return work


def per_flop(training: dict, work: dict) -> None:
    """Add each variant's achieved training GFLOP/s (3 x forward FLOPs per volume) and the
    work and per-FLOP speed ratios of the app's setting against BasicUNet at the same one."""
    for name, entry in training.items():
        if isinstance(entry, dict) and "step_s" in entry:
            model = next((m for m in work if name.startswith(m)), "TSPOUNet")
            entry["achieved_gflops"] = round(3 * work[model]["forward_gflop"] * 2
                                             / entry["step_s"], 1)
    app, base = work["TSPOUNet"], work["monai_BasicUNet"]
    training["flop_ratio_vs_BasicUNet"] = round(app["forward_gflop"] / base["forward_gflop"], 2)
    training["bytes_ratio_vs_BasicUNet"] = round(
        app["activations_written_mib"] / base["activations_written_mib"], 2)
    training["app_per_flop_speed_vs_BasicUNet"] = round(
        training["app_ratio_vs_BasicUNet"] * training["flop_ratio_vs_BasicUNet"], 3)


def peak_flops(device, n: int | None = None, dtype=torch.float32) -> float:
    """FLOP/s of a large square matmul: 2048² on CPU, 8192² on CUDA (smaller ones leave a
    GPU's tensor cores idle); float32 without TF32, as PyTorch's default."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.rand(n, n, device=device, dtype=dtype)
    seconds = timed(lambda: a @ a, device, repeats=5)
    return 2 * n**3 / seconds


def peak_bandwidth(device, mib: int = 512) -> float:
    """Bytes per second of a large copy (read + write): the memory roof."""
    src = torch.rand(mib * 2**18, device=device)
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, repeats=5)
    return 2 * src.numel() * src.element_size() / seconds


def roofline(fwd_flops: float, written: float, seconds: float, training: bool, flops: float,
             bandwidth: float) -> dict:
    """Where one forward (or training step, ~3x the FLOPs and ~3x the bytes) sits against the
    machine's roof min(peak FLOP/s, intensity x bandwidth); bytes = activations written once
    and read once."""
    work, traffic = (3, 3) if training else (1, 1)
    achieved = work * fwd_flops / seconds
    intensity = fwd_flops / (2 * written)
    roof = min(flops, intensity * bandwidth)
    return {"achieved_gflops": round(achieved / 1e9, 1), "roof_gflops": round(roof / 1e9, 1),
            "bound": "memory" if intensity * bandwidth < flops else "compute",
            "fraction_of_roof": round(achieved / roof, 4),
            "achieved_gb_per_s": round(traffic * 2 * written / seconds / 1e9, 1)}


def app_ensemble(device, size: int, precision: str, repeats: int) -> tuple[float, int]:
    """The app's own 5-fold ensemble with flips (bids_tspo.model.infer.ensemble: weights swapped
    into one network, flip pairs, mask) at the given synthesis precision: (median seconds, minor
    page faults per ensemble, warm-up included)."""
    import numpy as np

    from bids_tspo.model.bundle import Bundle
    from bids_tspo.model.infer import Network, ensemble
    from bids_tspo.model.network import UNetConfig

    cfg = UNetConfig()
    bundle = Bundle(Path("."), "benchmark", {}, cfg,
                    {k: TSPOUNet(cfg).state_dict() for k in range(5)})
    rng = np.random.default_rng(0)
    item = {"t1": rng.random((1, size, size, size), dtype=np.float32),
            "mask": np.ones((1, size, size, size), np.float32)}
    net = Network(cfg, device, precision=precision)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds = timed(lambda: ensemble(bundle, item, device, net=net), device, repeats)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return seconds, faults // (repeats + 1)


def vmap_ensemble(device, size: int, repeats: int) -> float | str:
    """The 5 fold models as one vmapped network (torch.func: stacked weights, so every
    convolution runs once for all folds, e.g. depthwise with 5x the groups) on the flip pair,
    in bfloat16 autocast and the contiguous memory format (vmap refuses channels-last): the
    alternative to swapping weights into one network. Correct on CPU (max |diff| 5e-7 at 32³)
    but 6x slower there; measured on CUDA only."""
    import copy

    from torch.func import functional_call, stack_module_state

    models = [TSPOUNet().to(device).eval() for _ in range(5)]  # vmap: contiguous format only
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    x = torch.rand(1, 1, size, size, size, device=device)
    pair = torch.cat([x, torch.flip(x, dims=[2])])
    batched = torch.vmap(lambda p, b, v: functional_call(base, (p, b), (v,)),
                         in_dims=(0, 0, None))

    def run():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            out = batched(params, buffers, pair).float()
            return out.mean(0), out.std(0)
    try:
        return round(timed(run, device, repeats), 4)
    except Exception as exc:  # noqa: BLE001 - record why, keep the other figures
        return f"{type(exc).__name__}: {str(exc)[:200]}"


def app_ensembles(result: dict, device, size: int, repeats: int) -> None:
    for precision in ("fp32", "bf16"):
        seconds, faults = app_ensemble(device, size, precision, repeats)
        result["synthesis_s"][f"app_ensemble_5x2_flips_{precision}"] = round(seconds, 4)
        result["page_faults_per_app_ensemble"][precision] = faults


def training_variants(result: dict, xb, device, repeats: int, suffix: str = "") -> dict:
    """Training step of TSPOUNet (batch 2): float32 contiguous and channels-last, bfloat16
    autocast (channels-last on CUDA, contiguous on CPU, as in the earlier results) and
    bfloat16 contiguous; into ``result["training"]`` (file ``suffix``) after each."""
    variants = {"eager_fp32": dict(bf16=False, channels_last=False),
                "channels_last": dict(bf16=False, channels_last=True),
                "bf16_autocast": dict(bf16=True, channels_last=device.type == "cuda"),
                "bf16_contiguous": dict(bf16=True, channels_last=False)}
    training = {}
    for name, opts in variants.items():
        model = TSPOUNet().to(device).train()
        seconds = timed(train_step_fn(model, xb, device, **opts), device, repeats)
        training[name] = {"volumes_per_s": round(2 / seconds, 3), "step_s": round(seconds, 3)}
        result["training"] = training
        _write(result, device, xb.shape[-1], suffix, partial=True)
    return training


def app_training_epochs(device, size: int, sessions: int = 48, epochs: int = 3) -> dict:
    """The app's training path end to end (bids_tspo.model.train): VolumeDataset, its DataLoader
    with pinned memory, batch augmentation on the device, its memory format
    (bids_tspo.model.infer.memory_format), bf16 autocast on CUDA. Volumes/s of each epoch (the first pays cuDNN autotuning), next to the augmentation
    alone on the device (ms per batch of 2), which shows whether it stays off the critical
    path."""
    import numpy as np

    from bids_tspo.model.augment import BatchAugment
    from bids_tspo.model.data import VolumeDataset
    from bids_tspo.model.train import TrainSettings, _loader, _run_epoch, epoch_seed

    rng = np.random.default_rng(0)
    shape = (1, size, size, size)
    items = [{"t1": rng.random(shape, dtype=np.float32), "pet": rng.random(shape, np.float32),
              "mask": np.ones(shape, np.float32)} for _ in range(sessions)]
    settings = TrainSettings(batch_size=2, device=str(device))
    model = TSPOUNet().to(device).to(memory_format=memory_format(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    data, rates = VolumeDataset(items), []
    for epoch in range(epochs):
        start = time.perf_counter()
        _run_epoch(model, _loader(data, settings, epoch, 0, 1, True), device, optimizer,
                   BatchAugment(epoch_seed(0, epoch)))
        sync(device)
        rates.append(round(sessions / (time.perf_counter() - start), 2))
    batch = [torch.as_tensor(items[0][k][None]).repeat(2, 1, 1, 1, 1).to(device)
             for k in ("t1", "pet", "mask")]
    augment = BatchAugment(0)
    augment_ms = timed(lambda: augment(*batch), device, repeats=10) * 1000
    return {"sessions": sessions, "volumes_per_s_per_epoch": rates,
            "augment_ms_per_batch_of_2": round(augment_ms, 2)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats per figure (median): 3 on CPU, 20 on CUDA")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--only-synthesis", action="store_true")
    p.add_argument("--only-training", action="store_true",
                   help="only the training-step variants and (CUDA) the app's own training "
                        "epochs, into model_speed_<device>_<size>_training.json")
    p.add_argument("--only-app-ensemble", action="store_true",
                   help="only the app's ensemble (fp32, bf16) in this fresh process, with page "
                        "faults and peak RSS")
    p.add_argument("--only-work", action="store_true",
                   help="only the networks' parameters, FLOPs and activation bytes per volume "
                        "(device-independent counts) into model_speed_work_<size>.json")
    p.add_argument("--malloc", choices=("app", "app-1gib", "system"), default="app",
                   help="app: large blocks reuse the heap as the app sets it up; app-1gib: the "
                        "same with the earlier 1 GiB trim threshold; system: glibc defaults "
                        "(every large block freshly mapped)")
    args = p.parse_args()
    if args.malloc == "app-1gib":
        resources.KEEP_FREED_BYTES = 1 << 30
    heap_reuse = args.malloc != "system" and reuse_freed_memory()
    device = torch.device(args.device)
    args.repeats = args.repeats or (20 if device.type == "cuda" else 3)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the app (bids_tspo.model.infer.resolve_device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = args.size
    result = {"benchmark": "model speed", "device": str(device), "size": size,
              "threads": args.threads, "machine": machine(),
              "malloc": (f"heap reuse (M_MMAP_MAX=0, trim above {resources.KEEP_FREED_BYTES} B)"
                         if heap_reuse else "system default"),
              "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
              "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
              "repeats": args.repeats}

    if args.only_work:
        result = {"benchmark": "model work per volume", "size": args.size,
                  "machine": machine(), "networks": work_per_volume(args.size, device)}
        dest = Path(__file__).parent / "results" / f"model_speed_work_{args.size}.json"
        dest.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["networks"], indent=1))
        return 0
    if args.only_app_ensemble:
        result["synthesis_s"], result["page_faults_per_app_ensemble"] = {}, {}
        app_ensembles(result, device, size, args.repeats)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        _write(result, device, size, "_app_ensemble")
        return 0
    if args.only_training:
        training_variants(result, torch.rand(2, 1, size, size, size, device=device), device,
                          args.repeats, "_training")
        if device.type == "cuda":
            result["app_training_epochs"] = app_training_epochs(device, size)
        _write(result, device, size, "_training")
        return 0
    net = TSPOUNet().to(device).eval()
    x1 = torch.rand(1, 1, size, size, size, device=device)
    with torch.no_grad():
        eager = timed(lambda: net(x1), device, args.repeats)
        # the app's path (bids_tspo.model.infer): its memory format (channels-last on CPU)
        net = net.to(memory_format=memory_format(device))
        xc = x1.contiguous(memory_format=memory_format(device))
        one = timed(lambda: net(xc), device, args.repeats)
        ens = timed(lambda: [net(torch.flip(xc, dims=[2])) for _ in range(10)], device,
                    max(1, args.repeats // 2))
        pair = torch.cat([xc, torch.flip(xc, dims=[2])]).contiguous(
            memory_format=memory_format(device))
        flips_seq = timed(lambda: (net(xc), net(torch.flip(xc, dims=[2]))), device, args.repeats)
        flips_batched = timed(lambda: net(pair), device, args.repeats)
    result["synthesis_s"] = {"one_model_eager": round(eager, 4), "one_model": round(one, 4),
                             "ensemble_5x2_flips": round(ens, 4),
                             "flip_pair_sequential": round(flips_seq, 4),
                             "flip_pair_batched": round(flips_batched, 4)}
    suffix = "_synthesis" if args.only_synthesis else ""
    _write(result, device, size, suffix, partial=True)
    result["page_faults_per_app_ensemble"] = {}
    app_ensembles(result, device, size, max(1, args.repeats // 2))
    _write(result, device, size, suffix, partial=True)
    if device.type == "cuda":
        result["synthesis_s"]["ensemble_vmap_5_folds_batched_flips"] = vmap_ensemble(
            device, size, args.repeats)
    if not args.no_compile:
        try:
            start = time.perf_counter()
            compiled = torch.compile(net)
            with torch.no_grad():
                compiled(xc)
                result["synthesis_s"]["compile_once"] = round(time.perf_counter() - start, 1)
                result["synthesis_s"]["one_model_compiled"] = round(
                    timed(lambda: compiled(xc), device, args.repeats), 4)
        except Exception as exc:  # noqa: BLE001 - compile needs a toolchain; record why not
            result["synthesis_s"]["compiled_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    if device.type == "cpu":
        result["synthesis_peak_rss_mb"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.only_synthesis:
        _write(result, device, size, "_synthesis")
        return 0
    if device.type == "cuda":
        result["synthesis_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)

    fwd_flops, written = flops_per_volume(net, size, device)
    peak = peak_flops(device)
    bandwidth = peak_bandwidth(device)
    result["roofline"] = {
        "forward_gflop_per_volume": round(fwd_flops / 1e9, 2),
        "training_gflop_per_volume": round(3 * fwd_flops / 1e9, 2),
        "activation_bytes_written_mb": round(written / 2**20, 1),
        "arithmetic_intensity_flop_per_byte": round(fwd_flops / written, 2),
        "measured_peak_gflops_gemm": round(peak / 1e9, 1),
        "measured_peak_gflops_gemm_bf16": round(peak_flops(device, dtype=torch.bfloat16) / 1e9,
                                                1),
        "measured_bandwidth_gb_per_s": round(bandwidth / 1e9, 1),
        "inference_fraction_of_peak": round(fwd_flops / one / peak, 4),
        "inference_fp32": roofline(fwd_flops, written, one, False, peak, bandwidth),
    }

    _write(result, device, size, partial=True)
    xb = torch.rand(2, 1, size, size, size, device=device)
    training = training_variants(result, xb, device, args.repeats)
    if not args.no_compile:
        try:
            model = torch.compile(TSPOUNet().to(device).train())
            seconds = timed(train_step_fn(model, xb, device, False, False), device,
                            args.repeats, warmup=2)
            training["torch_compile"] = {"volumes_per_s": round(2 / seconds, 3),
                                         "step_s": round(seconds, 3)}
        except Exception as exc:  # noqa: BLE001 - compile needs a toolchain; record why not
            training["torch_compile"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    for name, make in baselines().items():
        model = make().to(device).train()
        seconds = timed(train_step_fn(model, xb, device, False, False), device, args.repeats)
        training[name] = {"volumes_per_s": round(2 / seconds, 3), "step_s": round(seconds, 3),
                          "parameters": count_parameters(model)}
        if device.type == "cuda":  # the baselines at the app's CUDA setting too (fair ratio)
            model = make().to(device).train()
            seconds = timed(train_step_fn(model, xb, device, True, False), device, args.repeats)
            training[f"{name}_bf16"] = {"volumes_per_s": round(2 / seconds, 3),
                                        "step_s": round(seconds, 3)}
    training["TSPOUNet_parameters"] = count_parameters(TSPOUNet())
    eager = training["eager_fp32"]["step_s"]
    training["ratio_vs_BasicUNet"] = round(training["monai_BasicUNet"]["step_s"] / eager, 3)
    # the app's own training setting (bids_tspo.model.train: channels-last on CPU; contiguous
    # with bf16 autocast on CUDA) against BasicUNet at the same setting
    app, base = (("bf16_contiguous", "monai_BasicUNet_bf16")
                 if device.type == "cuda" else ("channels_last", "monai_BasicUNet"))
    training["app_setting"] = app
    training["app_ratio_vs_BasicUNet"] = round(training[base]["step_s"]
                                               / training[app]["step_s"], 3)
    result["work_per_volume"] = work_per_volume(size, device)
    per_flop(training, result["work_per_volume"])
    result["training"] = training
    result["training_fraction_of_peak"] = round(3 * fwd_flops * 2 / eager / peak, 4)
    best = min(v["step_s"] for k, v in training.items()
               if isinstance(v, dict) and "step_s" in v and not k.startswith("monai"))
    result["roofline"]["training_best_variant_fp32_roof"] = roofline(
        fwd_flops, written, best / 2, True, peak, bandwidth)
    if device.type == "cuda":
        result["training_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["app_training_epochs"] = app_training_epochs(device, size)
    _write(result, device, size)
    return 0


def _write(result: dict, device, size: int, suffix: str = "", partial: bool = False) -> None:
    """Write the results; ``partial``: so far (a run cut off by a time limit keeps them),
    marked ``"complete": false`` and not printed."""
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
    result["complete"] = not partial
    if result["malloc"] == "system default" and device.type == "cpu":
        suffix += "_system_malloc"
    elif result["malloc"].endswith(f"{1 << 30} B)") and device.type == "cpu":
        suffix += "_trim_1gib"
    dest = Path(__file__).parent / "results" / f"model_speed_{device.type}_{size}{suffix}.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")
    if not partial:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
