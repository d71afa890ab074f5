"""Shared by the device benches (bench_gemm.py, bench_conv.py, bench_elementwise.py): picking the
device, timing by the issue's rules, the PyTorch peer, the system header and the result files.

Timing rules: warm-up calls first (vendor libraries compile and load on first use, auto tunes),
then every run timed on its own with the device's clock -- hg.time_ms, i.e. events on the GPU's
stream (the steady clock on the CPU) -- and the median of >= `reps` runs reported next to the
minimum. PyTorch is timed the same way with torch.cuda.Event on a GPU. TF32 is off on both
sides (hipgrad's cuBLAS path is FP32 unless asked; torch.backends.*.allow_tf32 = False).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable

import hipgrad as hg
import numpy as np

try:
    import torch
except ImportError:  # the benches run without PyTorch; its columns stay empty
    torch = None


def parse(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="auto", help="auto | cpu | gpu:0 (default auto: the GPU "
                   "when hipgrad sees one, else the CPU as a smoke run)")
    p.add_argument("--reps", type=int, default=20, help="timed runs per case (default 20)")
    p.add_argument("--quick", action="store_true", help="fewer and smaller cases (smoke run)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every library")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--no-save", action="store_true", help="print only, write no result files")
    p.add_argument("--note", default="", help="free text added to the Markdown report")
    if extra:
        extra(p)
    args = p.parse_args()
    if args.reps < 1:
        p.error("--reps must be >= 1")
    return args


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "gpu:0" if "gpu:0" in hg.devices() else "cpu"
    if requested not in hg.devices():
        raise SystemExit(f"device {requested!r} is not usable here ({hg.gpu_unavailable_reason()})")
    return requested


def setup(args) -> tuple[str, object]:
    """The device string and the matching torch device (None without PyTorch)."""
    device = pick_device(args.device)
    if args.threads:
        hg.set_num_threads(args.threads)
    tdev = None
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        if args.threads:
            torch.set_num_threads(args.threads)
        if device == "cpu":
            tdev = torch.device("cpu")
        elif torch.cuda.is_available():
            tdev = torch.device("cuda", 0)
    return device, tdev


def time_hg(fn: Callable[[], object], device: str, reps: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        fn()
    hg.synchronize(device)
    times = [hg.time_ms(fn, device) for _ in range(reps)]
    return {"ms": statistics.median(times), "min_ms": min(times), "reps": reps}


def time_torch(fn: Callable[[], object], tdev, reps: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        fn()
    times = []
    if tdev.type == "cuda":
        torch.cuda.synchronize()
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"ms": statistics.median(times), "min_ms": min(times), "reps": reps}


def to_torch(a: np.ndarray, tdev):
    return torch.from_numpy(np.ascontiguousarray(a)).to(tdev)


def max_rel_err(got, want) -> float:
    got = got.numpy() if isinstance(got, hg.Tensor) else np.asarray(got)
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))


@contextlib.contextmanager
def reference_kernels(*ops: str):
    """Runs each op's simple v0 GPU reference kernel inside the block (the naive peer), forced
    by name (build_info lists it with a note starting "reference")."""
    rows = hg.build_info()["kernels"]
    with contextlib.ExitStack() as stack:
        for op in ops:
            names = [r["kernel"] for r in rows if r["op"] == op and r["backend"] == "gpu"
                     and r["note"].startswith("reference")]
            if not names:
                raise ValueError(f"{op} has no GPU reference kernel in this build")
            stack.enter_context(hg.ops.force_kernel(op, names[0]))
        yield


def header(device: str, name: str) -> dict:
    facts = hg.build_info()["facts"]
    info = {
        "bench": name, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device, "device_name": facts.get("gpu.device") if device != "cpu" else platform.processor() or platform.machine(),
        "gpu_platform": facts.get("gpu.platform"), "gpu_runtime": facts.get("gpu.runtime_version"),
        "gpu_arch": facts.get("gpu.arch"), "hipgrad": hg.__version__,
        "threads": hg.get_num_threads(), "python": platform.python_version(),
        "torch": getattr(torch, "__version__", None), "numpy": np.__version__,
        "host": platform.node(), "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device != "cpu" and torch is not None and torch.cuda.is_available():
        info["torch_device"] = torch.cuda.get_device_name(0)
    return info


def table(rows: list[dict], cols: list[tuple[str, str, str]]) -> tuple[str, str]:
    """(text, markdown) for rows; cols: (key, title, format)."""
    def cell(r, k, f):
        v = r.get(k)
        if v is None:
            return "-"
        return format(v, f) if f else str(v)
    cells = [[cell(r, k, f) for k, _, f in cols] for r in rows]
    widths = [max(len(t), *(len(c[i]) for c in cells)) if cells else len(t)
              for i, (_, t, _) in enumerate(cols)]
    text = "  ".join(t.ljust(w) for (_, t, _), w in zip(cols, widths)) + "\n"
    text += "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells)
    md = "| " + " | ".join(t for _, t, _ in cols) + " |\n|" + "---|" * len(cols) + "\n"
    md += "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells)
    return text, md


def save(args, name: str, info: dict, rows: list[dict], md_body: str, goals: list[str]) -> None:
    tag = "cpu" if info["device"] == "cpu" else re.sub(r"[^a-z0-9]+", "-",
                                                        (info.get("device_name") or "gpu").lower()).strip("-")
    stem = os.path.join(args.out, f"{name}-{tag}-{info['date'][:10]}")
    print("\n".join(goals))
    if args.no_save:
        return
    os.makedirs(args.out, exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump({"info": info, "rows": rows, "goals": goals}, f, indent=1, default=str)
    lines = [f"# {name}: {info['device_name']} ({info['device']}), {info['date']}", "",
             "```", json.dumps(info, indent=1, default=str), "```", ""]
    if args.note:
        lines += [args.note, ""]
    lines += [md_body, "", "## Goals", ""] + [f"- {g}" for g in goals]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and {stem}.md")
