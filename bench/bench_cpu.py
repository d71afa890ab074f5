"""CPU benchmark: GEMM and conv2d (forward, backward-data, backward-weight), hipgrad's handwritten
and vendor (OpenBLAS) kernels next to NumPy's matmul and PyTorch's CPU convolution.

Prints a table and writes bench/results/cpu-<date>.json and cpu-<date>.md. Every timing is the
median of repeated runs after a warm-up run; every result is checked against NumPy/PyTorch
before it is timed. Both sides use the same thread count: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS
are set before NumPy loads its OpenBLAS, hg.set_num_threads(n) sets hipgrad's OpenMP kernels
and its own OpenBLAS, torch.set_num_threads(n) sets PyTorch.

    PYTHONPATH=python python3 bench/bench_cpu.py [--threads 2] [--quick] [--conv-only]
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and sizes (smoke run)")
    p.add_argument("--conv-only", action="store_true", help="the convolutions only (no GEMM rows)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--note", default="", help="free text added to the Markdown report")
    p.add_argument("--flops-per-cycle", type=float, default=None,
                   help="per-core FP32 FLOP/cycle for the peak (default: from the CPU's ISA)")
    return p.parse_args()


ARGS = _parse()
# Before NumPy (and its OpenBLAS) loads: the thread count must be fixed at load time.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import datetime
import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from functools import partial

import _sysinfo
import hipgrad as hg
import numpy as np

try:
    import torch
except ImportError:  # the bench runs without PyTorch; its columns stay empty
    torch = None


def timed(fn: Callable[[], object], min_time: float, min_reps: int) -> dict:
    """Median (and min) seconds of `fn` over >= min_reps runs and >= min_time, after a warm-up."""
    fn()
    times: list[float] = []
    while len(times) < min_reps or (sum(times) < min_time and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "reps": len(times)}


def row(kind: str, case: str, impl: str, flop: float, t: dict, ref_s: float | None,
        peak: float, err: float | None, kernel: str = "") -> dict:
    gflops = flop / t["median_s"] / 1e9
    return {"kind": kind, "case": case, "impl": impl, "kernel": kernel, "gflop": flop / 1e9,
            "ms": t["median_s"] * 1e3, "min_ms": t["min_s"] * 1e3, "reps": t["reps"],
            "gflops": gflops, "vs_ref": (ref_s / t["median_s"]) if ref_s else None,
            "frac_peak": gflops / peak, "max_rel_err": err}


def rel_err(got, want) -> float:
    got = got.numpy() if isinstance(got, hg.Tensor) else np.asarray(got)
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def bench_gemm(peak: float, rng: np.random.Generator) -> list[dict]:
    rows = []
    min_time, min_reps = (0.1, 3) if ARGS.quick else (0.6, 5)
    sizes = [512, 1024] if ARGS.quick else [512, 1024, 2048]
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        ta, tb = hg.tensor(a), hg.tensor(b)
        want = a.astype(np.float64) @ b.astype(np.float64) if n <= 1024 else None
        flop, case = 2.0 * n**3, f"{n}x{n}x{n}"
        t_np = timed(partial(np.matmul, a, b), min_time, min_reps)
        rows.append(row("gemm", case, "numpy", flop, t_np, t_np["median_s"], peak,
                        rel_err(a @ b, want) if want is not None else None, "numpy.matmul"))
        isas = ["handwritten"] + ([f"handwritten:{i}" for i in _sysinfo.lesser_isas()] if n == 1024 else [])
        for impl in isas + ["vendor"]:
            variant, _, isa = impl.partition(":")
            hg._C._set_cpu_isa(isa or hg._C._cpu_isa_detected())
            out = hg.ops.gemm(ta, tb, impl=variant)
            kernel = hg.ops.last_impl()["impl"]
            err = rel_err(out, want) if want is not None else None
            t = timed(partial(hg.ops.gemm, ta, tb, impl=variant), min_time, min_reps)
            rows.append(row("gemm", case, impl, flop, t, t_np["median_s"], peak, err, kernel))
        hg._C._set_cpu_isa(hg._C._cpu_isa_detected())
    return rows


CONV_LAYERS = [  # name, (N, C, H, W), (K, R, S), stride, padding[, groups]
    ("lenet_conv1", (64, 1, 28, 28), (6, 5, 5), 1, 0),
    ("lenet_conv2", (64, 6, 14, 14), (16, 5, 5), 1, 0),
    ("resnet_stem", (8, 3, 224, 224), (64, 7, 7), 2, 3),
    ("resnet_3x3", (8, 64, 56, 56), (64, 3, 3), 1, 1),
    # MobileNetV2 at 224x224: a depthwise 3x3 of the 56x56 stage (stride 1), the first strided
    # depthwise (112x112 -> 56x56), and a pointwise 1x1 expansion (24 -> 144)
    ("mobilenet_dw_s1", (8, 144, 56, 56), (144, 3, 3), 1, 1, 144),
    ("mobilenet_dw_s2", (8, 96, 112, 112), (96, 3, 3), 2, 1, 96),
    ("mobilenet_pw", (8, 24, 56, 56), (144, 1, 1), 1, 0),
]
# impl="auto" picks per shape among the handwritten kernel, its alternates (Winograd, direct) and
# the vendor kernel (timed once, best of 3); its row names the kernel it kept.
CONV_IMPLS = ("auto", "handwritten", "vendor")


def bench_conv(peak: float, rng: np.random.Generator) -> list[dict]:
    if not hasattr(hg.ops, "conv2d"):
        print("conv: not available in this build")
        return []
    rows = []
    min_time, min_reps = (0.1, 3) if ARGS.quick else (0.4, 5)
    hg._C.clear_tuning()  # auto times the candidates here, not a cached choice of another build
    for name, (N, C, H, W), (K, R, S), stride, pad, *groups in CONV_LAYERS[: 2 if ARGS.quick else None]:
        g = groups[0] if groups else 1
        P, Q = (H + 2 * pad - R) // stride + 1, (W + 2 * pad - S) // stride + 1
        x = rng.standard_normal((N, C, H, W), dtype=np.float32)
        w = (rng.standard_normal((K, C // g, R, S)) / np.sqrt(C // g * R * S)).astype(np.float32)
        dy = rng.standard_normal((N, K, P, Q), dtype=np.float32)
        flop = 2.0 * N * K * P * Q * (C // g) * R * S
        hx, hw, hdy = hg.tensor(x), hg.tensor(w), hg.tensor(dy)
        hyper = {"stride": stride, "padding": pad, "groups": g}
        ops = {
            "forward": partial(hg.ops.conv2d, hx, hw, **hyper),
            "backward_data": partial(hg.ops.conv2d_backward_data, hdy, hw, x.shape, **hyper),
            "backward_weight": partial(hg.ops.conv2d_backward_weight, hdy, hx, w.shape, **hyper),
        }
        torch_ops = _torch_conv_ops(x, w, dy, stride, pad, g) if torch is not None else {}
        case = f"{name} N{N} C{C} {H}x{W} K{K} {R}x{S} s{stride} p{pad}" + (f" g{g}" if g > 1 else "")
        for op, fn in ops.items():
            ref_t, want = None, None
            if op in torch_ops:
                want = torch_ops[op]().numpy()
                ref_t = timed(torch_ops[op], min_time, min_reps)
                rows.append(row(f"conv.{op}", case, "torch", flop, ref_t, ref_t["median_s"], peak, 0.0,
                                f"torch {torch.__version__}"))
            for impl in CONV_IMPLS:
                out = fn(impl=impl)
                kernel = hg.ops.last_impl()["impl"]
                want = out.numpy() if want is None else want  # no torch: the first impl is the reference
                t = timed(partial(fn, impl=impl), min_time, min_reps)
                rows.append(row(f"conv.{op}", case, impl, flop, t, ref_t["median_s"] if ref_t else None,
                                peak, rel_err(out, want), kernel))
    return rows


def _torch_conv_ops(x, w, dy, stride, pad, groups=1) -> dict[str, Callable]:
    tx, tw, tdy = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)
    conv_bwd = torch.ops.aten.convolution_backward

    def bwd(mask: list[bool], which: int):
        return conv_bwd(tdy, tx, tw, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], groups,
                        mask)[which]

    return {
        "forward": partial(torch.nn.functional.conv2d, tx, tw, stride=stride, padding=pad,
                           groups=groups),
        "backward_data": partial(bwd, [True, False, False], 0),
        "backward_weight": partial(bwd, [False, True, False], 1),
    }


def main() -> None:
    hg.set_num_threads(ARGS.threads)
    if torch is not None:
        torch.set_num_threads(ARGS.threads)
    info = _sysinfo.collect(ARGS.threads, ARGS.flops_per_cycle, torch)
    info["note"] = ARGS.note
    peak = info["peak_gflops"]
    print(_sysinfo.header_text(info))
    rng = np.random.default_rng(0)
    load0, ru0, t0 = _sysinfo.cpu_ticks(), resource.getrusage(resource.RUSAGE_SELF), time.time()
    rows = [] if ARGS.conv_only else bench_gemm(peak, rng)
    rows += bench_conv(peak, rng)
    info["other_load"] = _sysinfo.other_load(load0, ru0, t0)
    info["bench_seconds"] = round(time.time() - t0, 1)
    print(_sysinfo.table(rows))
    print(_sysinfo.goals_text(rows), _sysinfo.load_text(info), sep="\n")
    os.makedirs(ARGS.out, exist_ok=True)
    stem = os.path.join(ARGS.out, f"cpu-{datetime.date.today().isoformat()}")
    with open(stem + ".json", "w") as f:
        json.dump({"info": info, "rows": rows, "python": platform.python_version(),
                   "argv": sys.argv[1:]}, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(_sysinfo.markdown(info, rows))
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
