"""CPU benchmark of the fused forward ops: conv2d only, conv2d then activation (two ops), and
conv2d_bias_act (one op), likewise gemm (+ bias_add + activation) and linear_bias_act, for both
impls, on LeNet / ResNet / MobileNet-like shapes. Every fused result is checked against the
unfused one before it is timed. Timings are the minimum over rounds in which the variants take
turns (so a neighbour's load hits all of them alike).

Prints a Markdown table and writes bench/results/fused-<date>.json.

    PYTHONPATH=python python3 bench/bench_fused.py [--threads 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import hipgrad as hg
import numpy as np

CONVS = [  # name, x shape, w shape, padding, groups
    ("LeNet conv2 N=64 6->16 14x14 5x5", (64, 6, 14, 14), (16, 6, 5, 5), 0, 1),
    ("ResNet N=2 64->64 56x56 3x3 p1", (2, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    ("depthwise N=2 128 56x56 3x3 p1", (2, 128, 56, 56), (128, 1, 3, 3), 1, 128),
]
LINEARS = [(64, 120, 400), (64, 1024, 1024)]


def _interleaved(fs, rounds: int) -> list[float]:
    best = [float("inf")] * len(fs)
    for f in fs:
        f()
    for _ in range(rounds):
        for i, f in enumerate(fs):
            t = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t)
    return [b * 1e3 for b in best]


def _conv_variants(x, w, b, act: str, kw: dict) -> list:
    ops = hg.ops
    return [lambda: ops.conv2d(x, w, b, **kw),
            lambda: ops.activation(ops.conv2d(x, w, b, **kw), act, impl=kw["impl"]),
            lambda: ops.conv2d_bias_act(x, w, b, activation=act, **kw)]


def _linear_variants(x, w, b, impl: str) -> list:
    ops = hg.ops

    def unfused():
        y = ops.bias_add(ops.gemm(x, w, trans_b=True, impl=impl), b, impl=impl)
        return ops.activation(y, "relu", impl=impl)
    return [lambda: ops.gemm(x, w, trans_b=True, impl=impl), unfused,
            lambda: ops.linear_bias_act(x, w, b, activation="relu", impl=impl)]


def _measure(shape: str, act: str, impl: str, variants: list, rounds: int) -> dict:
    fused = variants[2]()
    kernel = hg.ops.last_impl()["impl"]
    np.testing.assert_allclose(fused.numpy(), variants[1]().numpy(), rtol=1e-4, atol=1e-4)
    ms = _interleaved(variants, rounds)
    return {"shape": shape, "act": act, "impl": impl, "kernel": kernel, "base_ms": ms[0],
            "unfused_ms": ms[1], "fused_ms": ms[2]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    hg.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for name, xs, ws, pad, g in CONVS:
        x, w = hg.tensor(rng.standard_normal(xs)), hg.tensor(rng.standard_normal(ws) / 10)
        b = hg.tensor(rng.standard_normal(ws[0]))
        for act in ("relu", "gelu"):
            for impl in ("handwritten", "vendor"):
                kw = {"padding": pad, "groups": g, "impl": impl}
                rows.append(_measure(name, act, impl, _conv_variants(x, w, b, act, kw),
                                     args.rounds))
    for M, N, K in LINEARS:
        x, w = hg.tensor(rng.standard_normal((M, K))), hg.tensor(rng.standard_normal((N, K)) / 30)
        b = hg.tensor(rng.standard_normal(N))
        for impl in ("handwritten", "vendor"):
            rows.append(_measure(f"linear M={M} N={N} K={K}", "relu", impl,
                                 _linear_variants(x, w, b, impl), args.rounds))
    print(f"threads={args.threads}; ms, minimum over {args.rounds} interleaved rounds")
    print("| shape | act | impl | conv2d / gemm only | + separate ops | fused |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['act']} | {r['impl']} | {r['base_ms']:.3f} | "
              f"{r['unfused_ms']:.3f} | {r['fused_ms']:.3f} |")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"fused-{datetime.date.today().isoformat()}.json")
    with open(path, "w") as f:
        json.dump({"threads": args.threads, "rounds": args.rounds, "rows": rows}, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
