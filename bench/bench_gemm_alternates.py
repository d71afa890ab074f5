"""Time every CPU candidate of the gemm op (default packed kernel, handwritten alternates,
OpenBLAS) on a few shapes, each checked against float64 first, and print which wins where.

    PYTHONPATH=python python3 bench/bench_gemm_alternates.py [--reps 20] [--threads 1] \
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import hipgrad as hg

SHAPES = [  # (M, N, K, trans_a, trans_b): LeNet-sized conv/linear GEMMs, then larger ones
    (6, 784, 25, False, False), (16, 100, 150, False, False), (64, 800, 150, False, False),
    (64, 120, 400, False, True), (64, 10, 84, False, True), (150, 800, 64, True, False),
    (256, 500, 800, False, False), (1024, 1024, 1024, False, False),
]


def candidates() -> list[str]:
    return [r["kernel"] for r in hg.build_info()["kernels"]
            if r["op"] == "gemm" and r["backend"] == "cpu" and "fallback" not in r["note"]]


def time_kernel(name: str, a, b, ta: bool, tb: bool, reps: int) -> float:
    with hg.ops.force_kernel("gemm", name):
        hg.ops.gemm(a, b, trans_a=ta, trans_b=tb)
        best = float("inf")
        for _ in range(reps):  # the kernel's own wall time, without the Python call overhead
            hg.ops.gemm(a, b, trans_a=ta, trans_b=tb)
            best = min(best, hg.ops.last_impl()["ms"])
    return best


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: the default)")
    p.add_argument("--json", default="")
    args = p.parse_args()
    if args.threads:
        hg.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    names, rows = candidates(), []
    print(f"threads={hg.get_num_threads()}  kernel wall time, best of {args.reps}, ms")
    print("| M x N x K (ta, tb) | " + " | ".join(names) + " | winner |")
    print("|---" * (len(names) + 2) + "|")
    for M, N, K, ta, tb in SHAPES:
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
        times = {}
        for name in names:
            with hg.ops.force_kernel("gemm", name):
                y = hg.ops.gemm(a, b, trans_a=ta, trans_b=tb).numpy()
            np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.sqrt(K), err_msg=name)
            reps = max(3, args.reps // (1 + M * N * K // 50_000_000))
            times[name] = time_kernel(name, a, b, ta, tb, reps)
        win = min(times, key=times.get)
        rows.append({"M": M, "N": N, "K": K, "trans_a": ta, "trans_b": tb, "ms": times,
                     "winner": win})
        cells = " | ".join(f"{times[n]:.4f}" for n in names)
        print(f"| {M}x{N}x{K} ({int(ta)},{int(tb)}) | {cells} | {win} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": hg.get_num_threads(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
