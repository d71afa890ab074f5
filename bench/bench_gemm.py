"""SGEMM benchmark: hipgrad's handwritten GEMM vs its vendor path (cuBLAS / rocBLAS; OpenBLAS on
the CPU) vs PyTorch (when installed) vs the naive v0 kernel (GPU), at 1024..8192 and odd sizes.

Prints TFLOP/s and ratios side by side and writes bench/results/gemm-<device>-<date>.{json,md}.
Every hipgrad result is checked against float64 NumPy on sampled rows before it is timed.
Goal (issue 3): handwritten >= 0.7x cuBLAS SGEMM at 4096^3 on the H100.

    PYTHONPATH=python python3 bench/bench_gemm.py [--device gpu:0] [--quick] [--reps 20]
"""

from __future__ import annotations

import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _gpubench as gb  # noqa: E402
import hipgrad as hg  # noqa: E402
import numpy as np  # noqa: E402

SQUARE = [1024, 2048, 4096, 8192]
ODD = [(1000, 1000, 1000), (4097, 513, 771), (127, 4099, 1025), (333, 333, 8191)]


def check(y: hg.Tensor, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> float:
    """Max relative error over up to 64 sampled rows, against float64."""
    rows = rng.choice(a.shape[0], size=min(64, a.shape[0]), replace=False)
    want = a[rows].astype(np.float64) @ b.astype(np.float64)
    return gb.max_rel_err(y.numpy()[rows], want)


def main() -> None:
    args = gb.parse(__doc__.split("\n\n")[0])
    device, tdev = gb.setup(args)
    rng = np.random.default_rng(0)
    shapes = [(n, n, n) for n in (SQUARE[:2] if args.quick else SQUARE)]
    shapes += ODD[:1] if args.quick else ODD
    if device == "cpu":  # a smoke run: the CPU is ~100x slower
        shapes = [s for s in shapes if max(s) <= 2048 and s[0] * s[1] * s[2] <= 2048**3]
    rows = []
    for M, N, K in shapes:
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((K, N), dtype=np.float32)
        ha, hb = hg.tensor(a, device=device), hg.tensor(b, device=device)
        flop = 2.0 * M * N * K
        case = f"{M}x{N}x{K}"
        times = {}
        candidates = [("handwritten", None), ("vendor", None)]
        if device != "cpu":
            candidates.append(("naive v0", ("gemm",)))
        for impl, family in candidates:
            variant = "handwritten" if family else impl
            with gb.reference_kernels(*family) if family else contextlib.nullcontext():
                y = hg.ops.gemm(ha, hb, impl=variant)
                kernel = hg.ops.last_impl()["impl"]
                err = check(y, a, b, rng)
                t = gb.time_hg(lambda: hg.ops.gemm(ha, hb, impl=variant), device,
                               max(3, args.reps // 4) if family else args.reps)
            times[impl] = t["ms"]
            rows.append({"case": case, "impl": impl, "kernel": kernel, **t,
                         "tflops": flop / t["ms"] / 1e9, "max_rel_err": err})
        if tdev is not None:
            ta, tb = gb.to_torch(a, tdev), gb.to_torch(b, tdev)
            t = gb.time_torch(lambda: gb.torch.matmul(ta, tb), tdev, args.reps)
            times["torch"] = t["ms"]
            rows.append({"case": case, "impl": "torch", "kernel": "torch.matmul (TF32 off)", **t,
                         "tflops": flop / t["ms"] / 1e9,
                         "max_rel_err": check(hg.tensor(gb.torch.matmul(ta, tb).cpu().numpy()), a, b, rng)})
        for r in rows:
            if r["case"] == case:
                r["vs_vendor"] = times["vendor"] / r["ms"]
                r["vs_torch"] = times["torch"] / r["ms"] if "torch" in times else None
        print("  ".join(f"{r['impl']} {r['tflops']:.2f}" for r in rows if r["case"] == case),
              f"TFLOP/s  [{case}]", flush=True)

    cols = [("case", "M x N x K", ""), ("impl", "impl", ""), ("kernel", "kernel", ""),
            ("ms", "median ms", ".3f"), ("min_ms", "min ms", ".3f"), ("tflops", "TFLOP/s", ".2f"),
            ("vs_vendor", "x vendor", ".2f"), ("vs_torch", "x torch", ".2f"),
            ("max_rel_err", "max rel err", ".1e")]
    text, md = gb.table(rows, cols)
    print(text)
    goals = []
    at = [r for r in rows if r["case"] == "4096x4096x4096" and r["impl"] == "handwritten"]
    if at and device != "cpu":
        ratio = at[0]["vs_vendor"]
        goals.append(f"handwritten / vendor SGEMM at 4096^3: {ratio:.2f}x (goal >= 0.70x): "
                     f"{'met' if ratio >= 0.7 else 'NOT met'}")
    elif device == "cpu":
        goals.append("CPU smoke run: the GPU goal (>= 0.7x cuBLAS at 4096^3) needs a GPU run")
    gb.save(args, "gemm", gb.header(device, "bench_gemm"), rows, md, goals)


if __name__ == "__main__":
    main()
