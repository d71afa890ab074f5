"""Convolution benchmark: forward, backward-data and backward-weight on real layer shapes (LeNet,
ResNet-18's stem and stages, depthwise), hipgrad handwritten vs vendor (cuDNN / MIOpen; im2col +
OpenBLAS on the CPU) vs PyTorch (when installed) vs the naive direct v0 kernel (GPU).

Prints TFLOP/s and ratios side by side and writes bench/results/conv-<device>-<date>.{json,md}.
Every hipgrad result is checked against PyTorch (or float64 NumPy for the forward) first.
Goals (issue 3): handwritten >= 0.4x cuDNN on the ResNet shapes and >= 10x the naive kernel;
the vendor path within 10% of PyTorch's.

    PYTHONPATH=python python3 bench/bench_conv.py [--device gpu:0] [--quick] [--batch 32]
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _gpubench as gb  # noqa: E402
import hipgrad as hg  # noqa: E402
import numpy as np  # noqa: E402

# name, (C, H, W), (K, R, S), stride, padding, groups; N is --batch
LAYERS = [
    ("lenet_conv1", (1, 28, 28), (6, 5, 5), 1, 0, 1),
    ("lenet_conv2", (6, 14, 14), (16, 5, 5), 1, 0, 1),
    ("resnet_stem", (3, 224, 224), (64, 7, 7), 2, 3, 1),
    ("resnet_s1_3x3", (64, 56, 56), (64, 3, 3), 1, 1, 1),
    ("resnet_s2_3x3", (128, 28, 28), (128, 3, 3), 1, 1, 1),
    ("resnet_s2_down", (64, 56, 56), (128, 3, 3), 2, 1, 1),
    ("resnet_s3_3x3", (256, 14, 14), (256, 3, 3), 1, 1, 1),
    ("resnet_s4_3x3", (512, 7, 7), (512, 3, 3), 1, 1, 1),
    ("resnet_s4_1x1", (256, 14, 14), (512, 1, 1), 2, 0, 1),
    ("depthwise_3x3", (128, 56, 56), (128, 3, 3), 1, 1, 128),
]
OPS = ("forward", "backward_data", "backward_weight")
CONV_OPS = ("conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight")


def hg_ops(x, w, dy, hyper, x_shape, w_shape):
    return {
        "forward": lambda impl: hg.ops.conv2d(x, w, impl=impl, **hyper),
        "backward_data": lambda impl: hg.ops.conv2d_backward_data(dy, w, x_shape, impl=impl, **hyper),
        "backward_weight": lambda impl: hg.ops.conv2d_backward_weight(dy, x, w_shape, impl=impl, **hyper),
    }


def torch_ops(x, w, dy, hyper, tdev):
    torch = gb.torch
    F = torch.nn.functional
    tx, tw, tdy = (gb.to_torch(a, tdev) for a in (x, w, dy))
    kw = dict(stride=hyper["stride"], padding=hyper["padding"], groups=hyper["groups"])
    return {
        "forward": lambda: F.conv2d(tx, tw, **kw),
        "backward_data": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdy, **kw),
        "backward_weight": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tdy, **kw),
    }


def main() -> None:
    args = gb.parse(__doc__.split("\n\n")[0],
                    lambda p: p.add_argument("--batch", type=int, default=None,
                                             help="batch size (default 32 on a GPU, 4 on the CPU)"))
    device, tdev = gb.setup(args)
    N = args.batch or (32 if device != "cpu" else 4)
    rng = np.random.default_rng(0)
    layers = [LAYERS[i] for i in (1, 3, 9)] if args.quick else LAYERS
    rows = []
    for name, (C, H, W), (K, R, S), stride, pad, groups in layers:
        P, Q = (H + 2 * pad - R) // stride + 1, (W + 2 * pad - S) // stride + 1
        x = rng.standard_normal((N, C, H, W), dtype=np.float32)
        w = (rng.standard_normal((K, C // groups, R, S)) / np.sqrt(C // groups * R * S)).astype(np.float32)
        dy = rng.standard_normal((N, K, P, Q), dtype=np.float32)
        flop = 2.0 * N * K * P * Q * (C // groups) * R * S
        hyper = {"stride": stride, "padding": pad, "groups": groups}
        mine = hg_ops(*(hg.tensor(a, device=device) for a in (x, w, dy)), hyper, x.shape, w.shape)
        peer = torch_ops(x, w, dy, hyper, tdev) if tdev is not None else {}
        case = f"{name} N{N} C{C} {H}x{W} K{K} {R}x{S} s{stride} p{pad} g{groups}"
        for op in OPS:
            want = peer[op]().cpu().numpy() if op in peer else None
            times = {}
            candidates = [("handwritten", None), ("vendor", None)]
            if device != "cpu" and name not in ("resnet_stem",):
                candidates.append(("naive v0", CONV_OPS))
            for impl, family in candidates:
                variant = "handwritten" if family else impl
                with gb.reference_kernels(*family) if family else contextlib.nullcontext():
                    y = mine[op](variant)
                    kernel = hg.ops.last_impl()["impl"]
                    err = gb.max_rel_err(y, want) if want is not None else None
                    t = gb.time_hg(lambda: mine[op](variant), device,
                                   max(3, args.reps // 4) if family else args.reps)
                times[impl] = t["ms"]
                rows.append({"case": case, "layer": name, "op": op, "impl": impl, "kernel": kernel,
                             **t, "tflops": flop / t["ms"] / 1e9, "max_rel_err": err})
            if op in peer:
                t = gb.time_torch(peer[op], tdev, args.reps)
                times["torch"] = t["ms"]
                rows.append({"case": case, "layer": name, "op": op, "impl": "torch",
                             "kernel": "torch (cuDNN)" if device != "cpu" else "torch (CPU)", **t,
                             "tflops": flop / t["ms"] / 1e9, "max_rel_err": 0.0})
            for r in rows:
                if r["case"] == case and r["op"] == op:
                    r["vs_vendor"] = times["vendor"] / r["ms"]
                    r["vs_torch"] = times["torch"] / r["ms"] if "torch" in times else None
                    r["vs_naive"] = times["naive v0"] / r["ms"] if "naive v0" in times else None
            print(f"{case:55s} {op:16s}", "  ".join(f"{k} {v:.3f} ms" for k, v in times.items()),
                  flush=True)

    cols = [("layer", "layer", ""), ("op", "op", ""), ("impl", "impl", ""), ("kernel", "kernel", ""),
            ("ms", "median ms", ".3f"), ("tflops", "TFLOP/s", ".3f"), ("vs_vendor", "x vendor", ".2f"),
            ("vs_torch", "x torch", ".2f"), ("vs_naive", "x naive", ".1f"),
            ("max_rel_err", "max rel err", ".1e")]
    text, md = gb.table(rows, cols)
    print(text)
    goals = []
    if device != "cpu":
        resnet = [r for r in rows if r["layer"].startswith("resnet")]
        hw = [r["vs_vendor"] for r in resnet if r["impl"] == "handwritten"]
        naive = [r["vs_naive"] for r in rows if r["impl"] == "handwritten" and r.get("vs_naive")]
        vend = [r["vs_torch"] for r in resnet if r["impl"] == "vendor" and r.get("vs_torch")]
        if hw:
            goals.append(f"handwritten / vendor on ResNet shapes: min {min(hw):.2f}x, median "
                         f"{statistics.median(hw):.2f}x (goal >= 0.4x): "
                         f"{'met' if min(hw) >= 0.4 else 'NOT met'}")
        if naive:
            goals.append(f"handwritten / naive v0: min {min(naive):.1f}x (goal >= 10x): "
                         f"{'met' if min(naive) >= 10 else 'NOT met'}")
        if vend:
            goals.append(f"vendor / PyTorch on ResNet shapes: min {min(vend):.2f}x (goal >= 0.9x): "
                         f"{'met' if min(vend) >= 0.9 else 'NOT met'}")
    else:
        goals.append("CPU smoke run: the GPU goals need a GPU run")
    gb.save(args, "conv", gb.header(device, "bench_conv"), rows, md, goals)


if __name__ == "__main__":
    main()
