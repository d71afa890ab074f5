"""Elementwise bandwidth benchmark: activations forward/backward and the fused SGD/Adam steps at
2^26 float32 elements, as a fraction of the device's measured copy bandwidth (a device-to-device
copy into a preallocated tensor, bytes read + written), with PyTorch's equivalents (when installed) side by side.

Bytes counted per element: activation 8 (read x, write y), activation backward 12 (dy, x -> dx),
SGD with momentum 20 (param, grad, buf read; param, buf written), Adam 28 (param, grad, m, v
read; param, m, v written). Writes bench/results/elementwise-<device>-<date>.{json,md}.
Goal (issue 3): >= 80% of the measured copy bandwidth at 2^26 elements.

    PYTHONPATH=python python3 bench/bench_elementwise.py [--device gpu:0] [--log2n 26]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _gpubench as gb  # noqa: E402
import hipgrad as hg  # noqa: E402
import numpy as np  # noqa: E402

ACTS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "elu")


def main() -> None:
    args = gb.parse(__doc__.split("\n\n")[0],
                    lambda p: p.add_argument("--log2n", type=int, default=None,
                                             help="elements = 2^log2n (default 26; 24 on the CPU)"))
    device, tdev = gb.setup(args)
    n = 1 << (args.log2n or (26 if device != "cpu" else 24))
    if args.quick:
        n = min(n, 1 << 22)
    rng = np.random.default_rng(0)
    host = rng.standard_normal(n, dtype=np.float32)
    x = hg.tensor(host, device=device)
    dy = hg.tensor(rng.standard_normal(n, dtype=np.float32), device=device)
    rows = []

    def add(name: str, kernel: str, t: dict, nbytes_per_elem: int, peer: str = "hipgrad"):
        rows.append({"op": name, "by": peer, "kernel": kernel, **t,
                     "gb_s": nbytes_per_elem * n / t["ms"] / 1e6})

    dst = hg.empty([n], device=device)
    t = gb.time_hg(lambda: dst.copy_(x), device, args.reps)
    add("copy", "Tensor.copy_ (device to device)", t, 8)
    copy_bw = rows[-1]["gb_s"]
    for kind in ACTS:
        y = hg.ops.activation(x, kind)
        add(f"{kind}", hg.ops.last_impl()["impl"],
            gb.time_hg(lambda: hg.ops.activation(x, kind), device, args.reps), 8)
        hg.ops.activation_backward(dy, x, y, kind)
        add(f"{kind} backward", hg.ops.last_impl()["impl"],
            gb.time_hg(lambda: hg.ops.activation_backward(dy, x, y, kind), device, args.reps), 12)
    p, g, buf = x.clone(), dy.clone(), hg.zeros([n], device=device)
    hg.ops.sgd_step(p, g, buf, lr=1e-3, momentum=0.9)
    add("sgd_step (momentum)", hg.ops.last_impl()["impl"],
        gb.time_hg(lambda: hg.ops.sgd_step(p, g, buf, lr=1e-3, momentum=0.9), device, args.reps), 20)
    m, v = hg.zeros([n], device=device), hg.zeros([n], device=device)
    step = [0]

    def adam():
        step[0] += 1
        hg.ops.adam_step(p, g, m, v, step=step[0], lr=1e-3)
    adam()
    add("adam_step", hg.ops.last_impl()["impl"], gb.time_hg(adam, device, args.reps), 28)

    if tdev is not None:
        torch = gb.torch
        F = torch.nn.functional
        tx = gb.to_torch(host, tdev)
        tdst = torch.empty_like(tx)
        add("copy", "torch copy_", gb.time_torch(lambda: tdst.copy_(tx), tdev, args.reps), 8, "torch")
        for kind, fn in (("relu", F.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                         ("gelu", F.gelu)):
            add(kind, f"torch {kind}", gb.time_torch(lambda: fn(tx), tdev, args.reps), 8, "torch")
        tp = tx.clone().requires_grad_(True)
        tp.grad = gb.to_torch(dy.numpy(), tdev)
        opt = torch.optim.Adam([tp], lr=1e-3, foreach=False, fused=tdev.type == "cuda")
        add("adam_step", "torch.optim.Adam" + (" (fused)" if tdev.type == "cuda" else ""),
            gb.time_torch(opt.step, tdev, args.reps), 28, "torch")

    for r in rows:
        r["of_copy_bw"] = r["gb_s"] / copy_bw
    cols = [("op", "op", ""), ("by", "by", ""), ("kernel", "kernel", ""), ("ms", "median ms", ".3f"),
            ("gb_s", "GB/s", ".1f"), ("of_copy_bw", "of copy BW", ".2f")]
    text, md = gb.table(rows, cols)
    print(f"n = 2^{n.bit_length() - 1} elements; copy bandwidth {copy_bw:.1f} GB/s")
    print(text)
    mine = [r for r in rows if r["by"] == "hipgrad" and not r["op"].startswith("copy")]
    worst = min(mine, key=lambda r: r["of_copy_bw"])
    goals = [f"elementwise kernels at 2^{n.bit_length() - 1}: worst {worst['op']} at "
             f"{worst['of_copy_bw']:.0%} of the copy bandwidth (goal >= 80%): "
             f"{'met' if worst['of_copy_bw'] >= 0.8 else 'NOT met'}"
             + (" (CPU smoke run; the goal is for the GPU)" if device == "cpu" else "")]
    gb.save(args, "elementwise", gb.header(device, "bench_elementwise"), rows,
            f"n = {n} elements; copy bandwidth {copy_bw:.1f} GB/s\n\n" + md, goals)


if __name__ == "__main__":
    main()
