"""Inference throughput and memory: hipgrad's InferenceEngine (fp32 and int8) against PyTorch
eager under torch.no_grad() and against hipgrad's own training step, on one device and thread
count, for LeNet-5 (8x8 digits and 28x28), the MLP 784-256-10 and a small ResNet.

    PYTHONPATH=python python3 bench/bench_infer.py [--threads 1,2] [--repeats 50] [--note "..."]

Every figure is the median of `--repeats` timed calls after `--warmup` untimed ones; the engine's
fp32 forward and PyTorch's are timed in pairs (one call of each per repeat, alternating which
goes first: paired_ms), so both see the same moments of a shared machine; inputs are
NumPy arrays on the CPU (the engine's API; PyTorch gets torch.from_numpy views, no copy); on a
GPU (`--device gpu:0`) the batch is on the device for every side (hg.borrow / .to("cuda")), the
logits come back to the host, PyTorch is timed with torch.cuda.synchronize and runs FP32 (TF32
off for cuBLAS and cuDNN, as hipgrad's vendor path). Before timing,
the engine's logits are checked against PyTorch's (same weights). Throughput is images/s.
Peak memory is everything the phase holds at its highest point, measured by the device's
allocator (hg.memory_stats): weights, gradients, optimizer state and activations for a training
step (forward, loss, backward, SGD update); weights and planned activation buffers for
inference (InferenceEngine.memory_report). The input batch is treated alike in both phases: it
is the caller's memory and counted in neither. On the CPU both read the NumPy batch in place
(hg.borrow, as the training loop does; the engine does the same); on a GPU the batch is put on
the device (hg.borrow) before either phase is measured, and both read that copy. Goals (issue 5):
inference fp32 >= 1.0x PyTorch no_grad, >= 2.5x the training step, peak <= 0.33x training's.
Writes bench/results/infer-<device>-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys

ARGS = None
if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}" if os.cpu_count() > 1 else "1",
                    help="thread counts, comma-separated; each row uses one on every side")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--cases", default="lenet-digits,lenet-28,mlp-784-256-10,resnet-small")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ARGS = ap.parse_args()
    ARGS.threads = [int(t) for t in ARGS.threads.split(",")]
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):  # before NumPy loads its BLAS
        os.environ[var] = str(max(ARGS.threads))

import datetime
import gc
import json
import platform
import resource
import statistics
import time

import hipgrad as hg
import numpy as np
from hipgrad import InferenceEngine, nn, optim
from hipgrad.profiling.compare import median_ms as _median_ms
from hipgrad.training.models import build_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _sysinfo

try:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # hipgrad's fp32 is FP32 (no TF32 unless asked)
    torch.backends.cudnn.allow_tf32 = False
except ImportError:
    torch = None

CASES = {  # name: (model, options, input shape, batch, real digits as input)
    "lenet-digits": ("lenet", {"dropout": 0.0}, (1, 8, 8), 256, True),
    "lenet-28": ("lenet", {"dropout": 0.0}, (1, 28, 28), 256, False),
    "mlp-784-256-10": ("mlp", {"hidden": [256]}, (1, 28, 28), 256, False),
    "resnet-small": ("resnet", {}, (3, 16, 16), 64, False),  # no PyTorch twin here
}
GOALS = {"vs_torch": 1.0, "vs_train": 2.5, "peak_fraction": 0.33}


def torch_twin(model):
    """The same Sequential of Conv2d / Linear / ReLU / MaxPool2d / Flatten in PyTorch (eval), with
    the same state_dict keys; None when a layer has no twin here."""
    import torch.nn as tnn

    layers = []
    for m in model.children():
        kind = type(m).__name__
        if kind == "Conv2d":
            k, c, r, s = m.weight.data.shape
            layers.append(tnn.Conv2d(c * m.groups, k, (r, s), stride=m.stride, padding=m.padding,
                                     dilation=m.dilation, groups=m.groups, bias=m.bias is not None))
        elif kind == "Linear":
            n, k = m.weight.data.shape
            layers.append(tnn.Linear(k, n, bias=m.bias is not None))
        elif kind in ("ReLU", "Flatten", "Dropout"):
            layers.append(getattr(tnn, kind)())
        elif kind == "MaxPool2d":
            layers.append(tnn.MaxPool2d(m.kernel_size, m.stride, m.padding))
        else:
            return None
    return tnn.Sequential(*layers).eval()


def median_ms(fn, device: str, warmup: int, repeats: int) -> float:
    return _median_ms(fn, device, repeats, warmup=warmup)


def paired_ms(engine_fn, torch_fn, device: str, tdev: str, warmup: int, repeats: int) -> tuple[float, float]:
    """Median ms of the engine and of PyTorch, timed in pairs: each repeat times one call of
    each, back to back, in alternating order, so both meet the same moments of a shared
    machine (a VM whose speed drifts by 10-30% within seconds) and neither always runs right
    after the other. Each call is synchronized on its own device inside its timing (PyTorch runs
    on its own CUDA stream, which hg.synchronize does not wait for)."""
    tsync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
    calls = [(engine_fn, lambda: hg.synchronize(device)), (torch_fn, tsync)]
    for fn, sync in calls:
        for _ in range(warmup):
            fn()
        sync()
    times: list[list[float]] = [[], []]
    for r in range(repeats):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            fn, sync = calls[i]
            t0 = time.perf_counter()
            fn()
            sync()
            times[i].append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times[0]), statistics.median(times[1])


def inputs(case: str, rng: np.random.Generator) -> np.ndarray:
    _, _, shape, batch, digits = CASES[case]
    if digits:
        try:
            from hipgrad.data import load_digits

            train, _ = load_digits()
            x = np.asarray(train.images[:batch], np.float32).reshape((-1,) + shape)
            if len(x) == batch:
                return x
        except Exception as e:  # noqa: BLE001 - no scikit-learn: random inputs of the same shape
            print(f"{case}: no digits data ({e}); random inputs instead")
    return rng.standard_normal((batch,) + shape).astype(np.float32)


def train_step_figures(model, x, device, warmup, repeats, rng) -> tuple[float, int]:
    """(median ms, peak bytes) of forward + loss + backward + SGD(momentum) update; x is the
    batch as hg.borrow gives it (what hipgrad's training loop does with a batch)."""
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    y = hg.borrow(rng.integers(0, 10, len(x)).astype(np.int64), device=device)

    def step() -> None:
        model.train()
        loss(model(x), y)
        model.zero_grad()
        model.backward(loss.backward())
        opt.step()

    ms = median_ms(step, device, warmup, repeats)
    hg.synchronize(device)
    hg.reset_peak_memory_stats(device)
    step()
    hg.synchronize(device)
    return ms, hg.memory_stats(device)["peak"]


def bench_case(case: str, device: str, warmup: int, repeats: int) -> dict:
    """One row. Garbage from before the case is collected first, and the collector runs only where
    the case calls it: cyclic garbage of an earlier case freed in the middle of this one would
    lower the allocator's `current` below the case's baseline `start` and so understate every
    peak measured against it (what made the H100's ResNet training peak 7.8 MiB in one run and
    15.9 MiB in another, before the engine's arena-pool cycle was fixed)."""
    gc.collect()
    gc.disable()
    try:
        return _bench_case(case, device, warmup, repeats)
    finally:
        gc.enable()


def _bench_case(case: str, device: str, warmup: int, repeats: int) -> dict:
    model_name, options, shape, batch, _ = CASES[case]
    rng = np.random.default_rng(0)
    x_np = inputs(case, rng)
    hg.manual_seed(0)
    row: dict = {"case": case, "batch": batch, "input": list(shape)}
    # The batch as the training loop holds it (hg.borrow: on the CPU a view of x_np, on a GPU a
    # device copy), made before `start`. The engine reads x_np on the CPU (its NumPy path, also
    # in place) and that device copy on a GPU, where PyTorch also starts from the device; the
    # logits come back to the host (the engine returns NumPy).
    x_dev = hg.borrow(x_np, device=device)
    x_in = x_np if device == "cpu" else x_dev
    hg.synchronize(device)
    start = hg.memory_stats(device)["current"]  # nothing of this case but the batch exists yet
    model = build_model(model_name, shape, 10, **options).to(device)
    weights = model.state_dict()
    model.eval()
    fp32 = InferenceEngine.from_model(model, device=device)
    int8 = InferenceEngine.from_model(model, device=device, precision="int8").calibrate(x_np[:64])
    logits = fp32.forward(x_in)
    row["int8_top1_agreement"] = float((int8.predict(x_in) == logits.argmax(1)).mean())
    tdev = "cpu" if device == "cpu" else "cuda"
    usable = torch is not None and (tdev == "cpu" or torch.cuda.is_available())
    twin = torch_twin(model) if usable else None
    if twin is not None:  # timed in pairs with the engine (paired_ms), after a logits check
        twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        twin = twin.to(tdev)
        xt = torch.from_numpy(x_np).to(tdev)
        with torch.no_grad():
            ref = twin(xt).cpu().numpy()
            row["max_abs_diff_vs_torch"] = float(np.abs(ref - logits).max())
            if not np.allclose(ref, logits, rtol=1e-3, atol=1e-3):
                raise SystemExit(f"{case}: engine and PyTorch logits differ by {row['max_abs_diff_vs_torch']}")
            row["infer_fp32_ms"], row["torch_no_grad_ms"] = paired_ms(
                lambda: fp32.forward(x_in), lambda: twin(xt).cpu().numpy(), device, tdev, warmup, repeats)
        twin = xt = None
    else:
        row["infer_fp32_ms"] = median_ms(lambda: fp32.forward(x_in), device, warmup, repeats)
    row["infer_int8_ms"] = median_ms(lambda: int8.forward(x_in), device, warmup, repeats)
    report = fp32.memory_report(x_in)
    row["infer_peak_bytes"] = report["measured"]["peak_bytes"]
    row["infer_planned_bytes"] = report["measured"]["planned_peak_bytes"]
    row["infer_weights_bytes"] = report["weights_bytes"]
    row["int8_peak_bytes"] = int8.memory_report(x_in)["measured"]["peak_bytes"]
    fp32 = int8 = None  # frees their buffers before the training step is measured (with any
    gc.collect()  # cycles among them: made after `start`, so collecting them cannot move it)
    train_ms, train_peak = train_step_figures(model, x_dev, device, warmup, repeats, rng)
    row["train_step_ms"] = train_ms
    row["train_peak_bytes"] = int(train_peak - start)
    # The baseline check: with everything of this case dropped, the allocator is back at `start`
    # (only the batch, made before it, is alive); anything else would be held across cases.
    model = weights = None
    gc.collect()
    hg.synchronize(device)
    row["leftover_bytes"] = int(hg.memory_stats(device)["current"] - start)
    if row["leftover_bytes"]:
        print(f"{case}: {row['leftover_bytes']} bytes still held after the case (baseline moved)")
    ips = lambda ms: batch / ms * 1e3
    row["infer_fp32_img_s"], row["infer_int8_img_s"] = ips(row["infer_fp32_ms"]), ips(row["infer_int8_ms"])
    row["train_img_s"] = ips(train_ms)
    row["fp32_vs_torch"] = row["torch_no_grad_ms"] / row["infer_fp32_ms"] if "torch_no_grad_ms" in row else None
    row["fp32_vs_train"] = train_ms / row["infer_fp32_ms"]
    row["int8_vs_fp32"] = row["infer_fp32_ms"] / row["infer_int8_ms"]
    row["peak_fraction"] = row["infer_peak_bytes"] / row["train_peak_bytes"]
    row["goals"] = {"vs_torch": None if row["fp32_vs_torch"] is None else row["fp32_vs_torch"] >= GOALS["vs_torch"],
                    "vs_train": row["fp32_vs_train"] >= GOALS["vs_train"],
                    "peak_fraction": row["peak_fraction"] <= GOALS["peak_fraction"]}
    return row


def _met(v: bool | None) -> str:
    return "n/a" if v is None else ("met" if v else "NOT met")


HEAD = ["case", "threads", "batch", "fp32 ms (img/s)", "torch no_grad ms", "vs torch", "train step ms", "vs train",
        "int8 ms", "int8 vs fp32", "infer peak MiB", "train peak MiB", "peak ratio"]


def cells(r: dict) -> list[str]:
    mib = 2**20
    torch_ms = r.get("torch_no_grad_ms")
    return [r["case"], str(r["threads"]), str(r["batch"]), f"{r['infer_fp32_ms']:.2f} ({r['infer_fp32_img_s']:.0f})",
            "n/a" if torch_ms is None else f"{torch_ms:.2f}",
            "n/a" if r["fp32_vs_torch"] is None else f"{r['fp32_vs_torch']:.2f}x ({_met(r['goals']['vs_torch'])})",
            f"{r['train_step_ms']:.2f}", f"{r['fp32_vs_train']:.2f}x ({_met(r['goals']['vs_train'])})",
            f"{r['infer_int8_ms']:.2f}", f"{r['int8_vs_fp32']:.2f}x",
            f"{r['infer_peak_bytes'] / mib:.2f}", f"{r['train_peak_bytes'] / mib:.2f}",
            f"{r['peak_fraction']:.2f} ({_met(r['goals']['peak_fraction'])})"]


def main() -> None:
    info = _sysinfo.collect(max(ARGS.threads), None, torch)
    info["note"] = ARGS.note
    print(_sysinfo.header_text(info))
    load0, ru0, t0 = _sysinfo.cpu_ticks(), resource.getrusage(resource.RUSAGE_SELF), time.time()
    rows = []
    for threads in ARGS.threads:
        hg.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        for case in ARGS.cases.split(","):
            rows.append({"threads": threads, **bench_case(case, ARGS.device, ARGS.warmup, ARGS.repeats)})
            print(" | ".join(cells(rows[-1])), flush=True)
    info["other_load"] = _sysinfo.other_load(load0, ru0, t0)
    info["bench_seconds"] = round(time.time() - t0, 1)
    print(_sysinfo.load_text(info))
    date = datetime.date.today().isoformat()
    os.makedirs(ARGS.out, exist_ok=True)
    stem = os.path.join(ARGS.out, f"infer-{ARGS.device.split(':')[0]}-{date}")
    with open(stem + ".json", "w") as f:
        json.dump({"bench": "inference", "device": ARGS.device, "info": info, "goals": GOALS,
                   "warmup": ARGS.warmup, "repeats": ARGS.repeats, "statistic": "median",
                   "python": platform.python_version(), "argv": sys.argv[1:], "rows": rows}, f, indent=1)
    md = [f"# Inference: hipgrad engine vs PyTorch no_grad and vs hipgrad training ({ARGS.device}, {info['date']})", "",
          f"- CPU: {info['cpu_model']}, {info['logical_cpus']} logical CPUs, hipgrad ISA `{info['cpu_isa']}`",
          (f"- Threads: {', '.join(map(str, ARGS.threads))}; in each row hg.set_num_threads(t) and "
           "torch.set_num_threads(t) with the same t (BLAS and OpenMP pools sized for the largest)"),
          f"- OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}",
          f"- hipgrad {info['hipgrad']['version']}; PyTorch: {info['torch']}",
          f"- {_sysinfo.load_text(info)}; bench took {info['bench_seconds']} s",
          f"- Median of {ARGS.repeats} calls after {ARGS.warmup} warm-up calls; NumPy input and output. "
          "Engine fp32 and PyTorch no_grad timed in pairs (one call of each per repeat, alternating "
          "which goes first), so both meet the same moments of this shared machine.",
          ("- `vs torch` = PyTorch no_grad ms / engine fp32 ms; `vs train` = training step ms / engine "
           "fp32 ms; `int8 vs fp32` = fp32 ms / int8 ms; `peak ratio` = inference peak / training-step "
           "peak (each: every byte the phase holds at its highest, from hg.memory_stats)."),
          (f"- Goals: vs torch >= {GOALS['vs_torch']}, vs train >= {GOALS['vs_train']}, "
           f"peak ratio <= {GOALS['peak_fraction']}. ResNet has no PyTorch twin in this bench."),
          ("- CPU memory stats count tensors only: kernels' private scratch (im2col, GEMM packing) is "
           "host memory outside hg.memory_stats, on both sides."),
          *([f"- Note: {ARGS.note}"] if ARGS.note else []), "",
          "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    md += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    mib = 2**20
    first = [r for r in rows if r["threads"] == ARGS.threads[0]]  # memory does not depend on threads
    md += ["", ("Memory (MiB; the same at every thread count): inference = weights + planned "
                "activation buffers and any kernel workspace; training = weights + gradients + SGD "
                "momentum + kept activations and workspace. The batch is the caller's memory in both "
                "phases, counted in neither: on the CPU both read the NumPy batch in place (the "
                "training loop's hg.borrow; the engine's own wrap), on a GPU both read one device "
                "copy made before either is measured."), "",
           "| case | weights | inference buffers (planned) | inference peak | training peak | ratio |",
           "|---|---|---|---|---|---|"]
    md += [f"| {r['case']} | {r['infer_weights_bytes'] / mib:.2f} | "
           f"{(r['infer_planned_bytes'] - r['infer_weights_bytes']) / mib:.2f} | "
           f"{r['infer_peak_bytes'] / mib:.2f} | {r['train_peak_bytes'] / mib:.2f} | "
           f"{r['peak_fraction']:.2f} |" for r in first]
    held = [f"{r['case']} ({r['threads']} threads): {r['leftover_bytes']} bytes" for r in rows if r["leftover_bytes"]]
    md += ["", ("Baseline check (the allocator back at each case's starting point once the case's models "
                "and engines are dropped): " + ("every case, 0 bytes held." if not held else
                                                "NOT met: " + "; ".join(held) + " (peaks measured against a moved baseline)."))]
    md += ["", ("int8 top-1 agreement with fp32 (random weights): "
                + ", ".join(f"{r['case']} {r['int8_top1_agreement']:.3f}" for r in first)), ""]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(md))
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
