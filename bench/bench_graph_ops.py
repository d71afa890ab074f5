"""Graph-plan ops against PyTorch (when installed) and NumPy, side by side in one process with the
same threads: binary broadcasting (same shape, NCHW * C11, both sides broadcast), concat along
channels, split, transpose NCHW -> NHWC, reduce_mean over the spatial axes, pad2d, and the
pools in ceil mode. Each result is checked against the peer before it is timed. Writes
bench/results/graph-ops-<device>-<date>.{json,md}.

    PYTHONPATH=python python3 bench/bench_graph_ops.py [--device gpu:0] [--threads 2]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _gpubench as gb  # noqa: E402
import hipgrad as hg  # noqa: E402
import numpy as np  # noqa: E402

torch = gb.torch


def cases(rng, n: int):
    """(name, hipgrad call, torch call or None, numpy call, inputs as NumPy arrays)."""
    x = rng.standard_normal((n, 64, 56, 56)).astype(np.float32)
    c = rng.standard_normal((64, 1, 1)).astype(np.float32)
    z = rng.standard_normal((n, 64, 56, 56)).astype(np.float32)
    r = rng.standard_normal((n, 1, 56, 1)).astype(np.float32)
    s = rng.standard_normal((1, 64, 1, 56)).astype(np.float32)
    parts = [rng.standard_normal((n, 32, 28, 28)).astype(np.float32) for _ in range(4)]
    small = rng.standard_normal((n, 512, 7, 7)).astype(np.float32)
    sq = rng.standard_normal((n, 96, 55, 55)).astype(np.float32)
    F = torch.nn.functional if torch is not None else None
    return [
        ("add same shape", lambda t: hg.ops.binary(t[0], t[1], "add"),
         lambda t: t[0] + t[1], lambda a: a[0] + a[1], [x, z]),
        ("mul NCHW * C11", lambda t: hg.ops.binary(t[0], t[1], "mul"),
         lambda t: t[0] * t[1], lambda a: a[0] * a[1], [x, c]),
        ("sub N1H1 - 1C1W", lambda t: hg.ops.binary(t[0], t[1], "sub"),
         lambda t: t[0] - t[1], lambda a: a[0] - a[1], [r, s]),
        ("concat 4 x 32 ch", lambda t: hg.ops.concat(t, 1),
         lambda t: torch.cat(t, 1), lambda a: np.concatenate(a, 1), parts),
        ("split 64 ch -> 3", lambda t: hg.ops.split(t[0], 1, [16, 16, 32])[2],
         lambda t: torch.split(t[0], [16, 16, 32], 1)[2].contiguous(),
         lambda a: np.ascontiguousarray(np.split(a[0], [16, 32], 1)[2]), [x]),
        ("transpose NCHW->NHWC", lambda t: hg.ops.transpose(t[0], [0, 2, 3, 1]),
         lambda t: t[0].permute(0, 2, 3, 1).contiguous(),
         lambda a: np.ascontiguousarray(a[0].transpose(0, 2, 3, 1)), [x]),
        ("reduce_mean HW", lambda t: hg.ops.reduce_mean(t[0], [2, 3], keepdims=True),
         lambda t: t[0].mean((2, 3), keepdim=True), lambda a: a[0].mean((2, 3), keepdims=True),
         [small]),
        ("pad2d (0, 0, 1, 1)", lambda t: hg.ops.pad2d(t[0], [0, 0, 1, 1]),
         lambda t: F.pad(t[0], (0, 1, 0, 1)),
         lambda a: np.pad(a[0], ((0, 0), (0, 0), (0, 1), (0, 1))), [x]),
        ("max_pool 3x3 s2 ceil", lambda t: hg.ops.max_pool2d(t[0], 3, stride=2, ceil_mode=True,
                                                             with_argmax=False)[0],
         lambda t: F.max_pool2d(t[0], 3, 2, ceil_mode=True), None, [sq]),
        ("avg_pool 3x3 s2 ceil excl", lambda t: hg.ops.avg_pool2d(
            t[0], 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
         lambda t: F.avg_pool2d(t[0], 3, 2, 1, ceil_mode=True, count_include_pad=False), None,
         [sq]),
    ]


def main() -> None:
    args = gb.parse(__doc__.split("\n\n")[0], lambda p: p.add_argument(
        "--batch", type=int, default=8, help="N of the NCHW inputs (default 8)"))
    device, tdev = gb.setup(args)
    info = gb.header(device, "graph-ops")
    n = 2 if args.quick else args.batch
    rows = []
    for name, hg_call, torch_call, np_call, arrays in cases(np.random.default_rng(0), n):
        t = [hg.tensor(a, device=device) for a in arrays]
        got = hg_call(t)
        row = {"op": name, "kernel": hg.ops.last_impl()["impl"],
               "hipgrad_ms": gb.time_hg(lambda: hg_call(t), device, args.reps)["ms"]}
        if tdev is not None:
            tt = [gb.to_torch(a, tdev) for a in arrays]
            want = torch_call(tt)
            row["err"] = gb.max_rel_err(got, want.cpu().numpy())
            row["torch_ms"] = gb.time_torch(lambda: torch_call(tt), tdev, args.reps)["ms"]
            row["vs_torch"] = row["torch_ms"] / row["hipgrad_ms"]
        if np_call is not None and device == "cpu":
            row["err_np"] = gb.max_rel_err(got, np_call(arrays))
            row["numpy_ms"] = gb.time_torch(lambda: np_call(arrays), _Cpu(), args.reps)["ms"]
            row["vs_numpy"] = row["numpy_ms"] / row["hipgrad_ms"]
        rows.append(row)
        print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                     if k != "op"})
    info["load_average_after"] = os.getloadavg()
    text, md = gb.table(rows, [("op", "op", ""), ("hipgrad_ms", "hipgrad ms", ".3f"),
                               ("torch_ms", "torch ms", ".3f"), ("vs_torch", "x torch", ".2f"),
                               ("numpy_ms", "numpy ms", ".3f"), ("vs_numpy", "x numpy", ".2f"),
                               ("kernel", "kernel", "")])
    print(text)
    gb.save(args, "graph-ops", info, rows, md,
            ["x torch / x numpy > 1: hipgrad faster (median of --reps runs, same threads; the "
             "load averages before and after are in the header)"])


class _Cpu:  # time_torch's CPU branch times any callable with perf_counter
    type = "cpu"


if __name__ == "__main__":
    main()
