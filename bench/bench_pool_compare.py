"""Old build against new, interleaved: the quiet-machine regression check of issue 20.

    PYTHONPATH=python python3 bench/bench_pool_compare.py --baseline /work/wt/pool-old/python \
        [--threads 1,2] [--pairs 8] [--repeats 40] [--cases mlp-train,lenet28-infer,digits-infer]
        [--torch-between]

Each pair runs one child process of each build (alternating which goes first), so both meet the
same moments of a shared machine; each child times every case at every thread count in rounds
(median of --repeats calls per round) and records one traced call per case: the wall time of each
op (hg.trace) summed by op name. The parent prints per case and thread count the median over
children of each build and their ratio, and per op the median traced time. Cases: the MLP
784-256-10 training step (batch 64, SGD momentum: bench_train.py's), the engine's LeNet-5
inference on 1x28x28 (batch 256) and on 8x8 digits (batch 256) (bench_infer.py's).
`--torch-between` runs a PyTorch LeNet-5 forward (batch 256, same threads, untimed) before every
timed call, as bench_train.py / bench_infer.py do when they pair hipgrad with PyTorch in one
process: PyTorch's OpenMP workers keep spinning for a while after each of its calls, a
neighbour inside the process (a build that itself links libgomp shares PyTorch's copy instead).
Prints `uptime` before and after; writes nothing unless --json is given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cases(rng):
    import numpy as np

    import hipgrad as hg
    from hipgrad import nn, optim

    def mlp_train():
        hg.manual_seed(0)
        model = hg.build_model("mlp", (1, 28, 28), 10, hidden=[256])
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss = nn.CrossEntropyLoss()
        x = hg.tensor(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
        y = hg.tensor(rng.integers(0, 10, 64).astype(np.int64))

        def step():
            model.train()
            loss(model(x), y)
            model.zero_grad()
            model.backward(loss.backward())
            opt.step()
        return step

    def lenet_infer(shape, digits):
        hg.manual_seed(0)
        model = hg.build_model("lenet", shape, 10, dropout=0.0)
        model.eval()
        engine = hg.InferenceEngine.from_model(model)
        x = rng.standard_normal((256,) + shape).astype(np.float32)
        if digits:
            from hipgrad.data import load_digits
            train, _ = load_digits()
            x = np.asarray(train.images[:256], np.float32).reshape((-1,) + shape)
        return lambda: engine.forward(x)

    return {"mlp-train": mlp_train, "lenet28-infer": lambda: lenet_infer((1, 28, 28), False),
            "digits-infer": lambda: lenet_infer((1, 8, 8), True)}


def _torch_between(rng):
    """A PyTorch LeNet-5 forward on a batch of 256 (no grad): the in-process neighbour."""
    import torch

    tn = torch.nn
    model = tn.Sequential(tn.Conv2d(1, 6, 5), tn.ReLU(), tn.MaxPool2d(2), tn.Conv2d(6, 16, 5),
                          tn.ReLU(), tn.MaxPool2d(2), tn.Flatten(), tn.Linear(256, 120), tn.ReLU(),
                          tn.Linear(120, 10)).eval()
    x = torch.from_numpy(rng.standard_normal((256, 1, 28, 28)).astype("float32"))

    def run():
        with torch.no_grad():
            model(x)
    return run


def child(args) -> dict:
    import numpy as np

    import hipgrad as hg

    rng = np.random.default_rng(0)
    makers = _cases(rng)
    between = _torch_between(rng) if args.torch_between else (lambda: None)
    out: dict = {}
    for threads in args.threads:
        hg.set_num_threads(threads)
        if args.torch_between:
            import torch
            torch.set_num_threads(threads)
        for case in args.cases:
            fn = makers[case]()
            for _ in range(args.warmup):
                between()
                fn()
            stats = getattr(hg._C, "_thread_pool_stats", lambda: {})
            s0 = dict(stats())
            times, cpu = [], []
            for _ in range(args.repeats):
                between()
                c, t = time.process_time(), time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1e3)
                cpu.append((time.process_time() - c) * 1e3)
            s1 = dict(stats())
            pool = {k: round((s1[k] - s0[k]) / args.repeats, 4) for k in
                    ("regions", "serial_regions", "stalled_regions", "caller_sleeps", "stall_ms",
                     "off_cpu_ms", "degradations") if k in s1}
            ops: dict = {}
            for _ in range(5):  # per-op wall times: the median of 5 traced calls, per op name
                with hg.trace() as tr:
                    fn()
                per = {}
                for r in tr.ops:
                    name = f"{r['op']} [{r['impl']}]"
                    per[name] = per.get(name, 0.0) + r["ms"] * 1e3
                per["(outside ops)"] = tr.total_ms * 1e3 - sum(per.values())
                for k, v in per.items():
                    ops.setdefault(k, []).append(v)
            out[f"{case}/{threads}"] = {"ms": statistics.median(times),
                                        "cpu_ms": statistics.median(cpu), "pool": pool,
                                        "ops_us": {k: statistics.median(v) for k, v in ops.items()}}
    if hasattr(hg._C, "_thread_pool_stats"):
        out["pool"] = dict(hg._C._thread_pool_stats())
    return out


def run_child(build: str, python: str, args) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = python
    if args.cache_dir:  # one tuning cache per build: both keep the kernels they tuned first
        env["HIPGRAD_CACHE_DIR"] = f"{args.cache_dir}-{build}"
    cmd = [sys.executable, __file__, "--child", "--threads", ",".join(map(str, args.threads)),
           "--cases", ",".join(args.cases), "--warmup", str(args.warmup), "--repeats",
           str(args.repeats)] + (["--torch-between"] if args.torch_between else [])
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"child {python} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--baseline", help="the old build's python/ directory")
    ap.add_argument("--new", help="the new build's python/ directory (default: this checkout's)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--cases", default="mlp-train,lenet28-infer,digits-infer")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--torch-between", action="store_true",
                    help="a PyTorch forward before every timed call (PyTorch's threads as a neighbour)")
    ap.add_argument("--json", help="write every child's figures here")
    ap.add_argument("--cache-dir", help="tuning caches: <this>-old and <this>-new")
    args = ap.parse_args()
    args.threads = [int(t) for t in str(args.threads).split(",")]
    args.cases = args.cases.split(",")
    if args.child:
        print(json.dumps(child(args)))
        return
    builds = {"new": args.new or str(HERE.parent / "python"), "old": args.baseline}
    print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    res: dict = {"old": [], "new": []}
    for p in range(args.pairs):
        order = ("old", "new") if p % 2 == 0 else ("new", "old")
        for b in order:
            res[b].append(run_child(b, builds[b], args))
        print(f"pair {p + 1}/{args.pairs} done", file=sys.stderr, flush=True)
    print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    for key in res["new"][0]:
        if key == "pool":
            continue
        o = statistics.median(r[key]["ms"] for r in res["old"])
        n = statistics.median(r[key]["ms"] for r in res["new"])
        oc = statistics.median(r[key]["cpu_ms"] for r in res["old"])
        nc = statistics.median(r[key]["cpu_ms"] for r in res["new"])
        print(f"\n{key:22s} wall: old {o:8.3f} ms  new {n:8.3f} ms  new/old {n / o:5.2f}"
              f"   process CPU: old {oc:8.3f} ms  new {nc:8.3f} ms  new/old {nc / oc:5.2f}")
        for b in ("old", "new"):
            if res[b][0][key].get("pool"):
                keys = res[b][0][key]["pool"]
                print(f"    {b} pool per call (median over children): " + ", ".join(
                    f"{k} {statistics.median(r[key]['pool'][k] for r in res[b]):g}" for k in keys))
        names = sorted(set().union(*(r[key]["ops_us"] for r in res["old"] + res["new"])))
        for name in names:
            ov = [r[key]["ops_us"].get(name, 0.0) for r in res["old"]]
            nv = [r[key]["ops_us"].get(name, 0.0) for r in res["new"]]
            om, nm = statistics.median(ov), statistics.median(nv)
            print(f"    {name:34s} old {om:9.1f} us  new {nm:9.1f} us  diff {nm - om:+8.1f}")
    if "pool" in res["new"][-1]:
        print("\nnew pool stats (last child):", res["new"][-1]["pool"])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
