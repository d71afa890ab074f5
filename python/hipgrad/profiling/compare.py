"""Training vs inference, measured side by side on the same model and batch: time per batch,
peak device memory, and the bytes of weights, gradients, optimizer state and activations each
phase keeps. The user-facing proof that inference is lighter than training."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import runtime
from ..engine.engine import InferenceEngine
from ..runtime import resolve_device
from .machine_load import LoadMonitor, summary as load_summary, warning as load_warning


def median_ms(fn: Callable[[], Any], device: str, repeats: int, warmup: int = 1) -> float:
    """Median wall-clock ms of `repeats` calls of fn (device synchronized after each), after
    `warmup` untimed calls: first-use costs (allocation, tuning) are not the steady state."""
    for _ in range(warmup):
        fn()
    runtime.synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runtime.synchronize(device)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def _peak_bytes(fn: Callable[[], Any], device: str) -> int:
    """Peak bytes above what was live before `fn` ran."""
    runtime.synchronize(device)
    base = runtime.memory_stats(device)["current"]
    runtime.reset_peak_memory_stats(device)
    fn()
    runtime.synchronize(device)
    return int(runtime.memory_stats(device)["peak"] - base)


def _nbytes(tensors: Any) -> int:
    return int(sum(t.nbytes for t in tensors if t is not None))


def compare(model: str = "lenet", batch: int = 256, device: str = "auto",
            input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, repeats: int = 10,
            seed: int = 0, out_dir: str | None = None) -> dict:
    """One training step vs one inference pass (fp32 and int8) of the same model and batch."""
    from .. import nn, optim
    from ..random import manual_seed
    from ..tensor import borrow
    from ..training.models import build_model

    if int(batch) < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = resolve_device(device)
    manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal((batch,) + tuple(input_shape)).astype(np.float32)
    y_np = rng.integers(0, num_classes, batch).astype(np.int64)
    net = build_model(model, tuple(input_shape), num_classes).to(device)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(net.parameters(), lr=1e-3)
    x, y = borrow(x_np, device=device), borrow(y_np, device=device)

    def train_step() -> None:
        net.train()
        opt.zero_grad()
        logits = net(x)
        loss_fn(logits, y)
        net.backward(loss_fn.backward())
        opt.step()

    rows: dict[str, dict] = {}
    load = LoadMonitor().start()
    train_ms = median_ms(train_step, device, repeats)
    rows["training"] = {"ms_per_batch": train_ms, **training_memory(net, opt, train_step, x, device)}
    for precision in ("fp32", "int8"):
        engine = InferenceEngine.from_model(net, device=device, precision=precision)
        if precision == "int8":
            engine.calibrate([x_np[: min(batch, 64)]])
        ms = median_ms(lambda engine=engine: engine.forward(x), device, repeats)
        rows[f"inference_{precision}"] = {"ms_per_batch": ms, **inference_memory(engine, x, device)}
    result = {"model": model, "batch": batch, "device": device, "input_shape": list(input_shape),
              "phases": rows, "machine_load": load.stop(),
              "ratios": {
                  "inference_fp32_speedup": rows["training"]["ms_per_batch"] / rows["inference_fp32"]["ms_per_batch"],
                  "inference_int8_speedup": rows["training"]["ms_per_batch"] / rows["inference_int8"]["ms_per_batch"],
                  "inference_fp32_peak_fraction": rows["inference_fp32"]["peak_bytes"] / max(1, rows["training"]["peak_bytes"]),
              }}
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "compare.json"), "w") as f:
            json.dump(result, f, indent=1)
        plot_compare(result, os.path.join(out_dir, "compare.png"))
    return result


def training_memory(net: Any, opt: Any, train_step: Callable[[], Any], x: Any, device: str) -> dict:
    """What training holds: the peak of one `train_step` above its weights, optimizer state and
    batch, the weights, the gradients it left, the optimizer's state, and the activations a
    forward pass of `net` on `x` keeps for backward (all in bytes). The previous step's
    activation caches and gradients are released first: they would sit in the baseline and be
    freed during the step, understating its peak."""
    net.eval()  # releases every layer's saved activations
    opt.zero_grad()  # and the gradients (set to None)
    peak = _peak_bytes(train_step, device)
    params = list(net.parameters())
    grads = _nbytes(p.grad for p in params)  # as the step left them
    before = runtime.memory_stats(device)["current"]
    net.train()
    logits = net(x)
    kept = runtime.memory_stats(device)["current"] - before - logits.nbytes
    del logits
    return {"peak_bytes": peak, "weights_bytes": _nbytes(p.data for p in params),
            "gradients_bytes": grads, "optimizer_state_bytes": _optimizer_bytes(opt),
            "activations_kept_bytes": int(kept)}


def inference_memory(engine: InferenceEngine, x: Any, device: str) -> dict:
    """What inference holds, in the same fields: its peak and its weights; nothing else. The
    engine keeps its activation buffers between calls, so the peak is that of a predict that
    allocates them afresh (a warm predict allocates nothing)."""
    return {"peak_bytes": engine.memory_report(x)["measured"]["peak_above_live_bytes"],
            "weights_bytes": engine.weight_bytes(), "gradients_bytes": 0,
            "optimizer_state_bytes": 0, "activations_kept_bytes": 0}


def _optimizer_bytes(opt: Any) -> int:
    state = opt.state_dict()
    total = 0

    def walk(v: Any) -> None:
        nonlocal total
        if isinstance(v, np.ndarray):
            total += v.nbytes
        elif isinstance(v, dict):
            for u in v.values():
                walk(u)
        elif isinstance(v, (list, tuple)):
            for u in v:
                walk(u)

    walk(state)
    return total


def format_compare(result: dict) -> str:
    rows = result["phases"]
    mib = 1024 * 1024
    lines = [f"{result['model']} batch {result['batch']} on {result['device']}",
             f"{'':<18}{'ms/batch':>10}{'peak MiB':>10}{'weights':>10}{'grads':>10}{'optim':>10}{'acts kept':>11}"]
    for name, r in rows.items():
        lines.append(f"{name:<18}{r['ms_per_batch']:>10.2f}{r['peak_bytes'] / mib:>10.2f}"
                     f"{r['weights_bytes'] / mib:>10.3f}{r['gradients_bytes'] / mib:>10.3f}"
                     f"{r['optimizer_state_bytes'] / mib:>10.3f}{r['activations_kept_bytes'] / mib:>11.3f}")
    q = result["ratios"]
    lines.append(f"inference fp32 is {q['inference_fp32_speedup']:.2f}x faster than a training step and "
                 f"peaks at {100 * q['inference_fp32_peak_fraction']:.0f}% of its memory; "
                 f"int8 is {q['inference_int8_speedup']:.2f}x faster than training")
    if "machine_load" in result:
        lines.append(load_summary(result["machine_load"]))
        lines += [w for w in [load_warning(result["machine_load"])] if w]
    return "\n".join(lines)


def plot_compare(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["phases"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].bar(names, [result["phases"][n]["ms_per_batch"] for n in names], color=["#c44e52", "#4c72b0", "#55a868"])
    axes[0].set_ylabel("ms per batch")
    axes[1].bar(names, [result["phases"][n]["peak_bytes"] / 2**20 for n in names], color=["#c44e52", "#4c72b0", "#55a868"])
    axes[1].set_ylabel("peak MiB")
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"{result['model']}, batch {result['batch']}, {result['device']}: training vs inference")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
