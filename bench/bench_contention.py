"""hipgrad's CPU threads next to busy neighbours: training steps (LeNet-5, MLP 784-256-10, batch
64; the GPT of bench_lm, 4 x 64 tokens) and the inference engine (LeNet, MLP, batch 256) at 1 and 2 threads, quiet and with one or
two busy neighbour processes (`while True: pass`, started and stopped here), side by side with
PyTorch's LeNet-5 / MLP / GPT steps under the same neighbours; plus a 1024^3 GEMM right after a NumPy
matmul (NumPy's OpenBLAS threads spin as a neighbour).

    PYTHONPATH=python python3 bench/bench_contention.py [--repeats 40] [--neighbours 0,1,2]

Each (framework, threads, neighbours) runs in a fresh process, so thread pools and environment
start clean; figures are medians of --repeats steps after --warmup. Every child also reports the
machine load it saw (hipgrad.profiling.machine_load); the parent records `uptime`. Goals
(issue 20): with one neighbour, hipgrad at 2 threads <= 1.2x its 1-thread figure and <= 2.5x its
quiet 2-thread figure; with two neighbours <= 1.5x the 1-thread figure; LeNet-5 step >= 2x
PyTorch's speed (same threads, same neighbour). Writes bench/results/contention-cpu-<date>.json/.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAIN = {"lenet5": ("lenet", {"dropout": 0.0}), "mlp": ("mlp", {"hidden": [256]})}
# The GPT training step row (issue 20): bench_lm's model (4 layers, 4 heads, 128 wide, byte
# vocabulary) on a smaller batch (4 windows of 64 tokens) so that 40 repeats stay short; forward,
# cross-entropy, backward, clipping and AdamW, the same weights and batch on both sides.
GPT = dict(vocab_size=256, block_size=64, n_layer=4, n_head=4, n_embd=128)
GPT_BATCH = 4


def _gpt_batch():
    import numpy as np
    rng = np.random.default_rng(0)
    ids = rng.integers(0, GPT["vocab_size"], (GPT_BATCH, GPT["block_size"] + 1)).astype(np.int64)
    return ids[:, :-1].copy(), ids[:, 1:].copy()


def _gpt_state():
    import hipgrad as hg
    hg.manual_seed(0)
    return hg.build_model("gpt", **GPT)


def _median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def child_hipgrad(threads: int, warmup: int, repeats: int) -> dict:
    import numpy as np

    import hipgrad as hg
    from hipgrad import InferenceEngine, build_model, nn, optim
    try:
        from hipgrad.profiling.machine_load import LoadMonitor
    except ImportError:  # --baseline: a build from before the thread pool
        import contextlib

        LoadMonitor = lambda: contextlib.nullcontext(argparse.Namespace(result=None))  # noqa: E731

    hg.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out: dict = {}
    with LoadMonitor() as load:
        for name, (model_name, opts) in TRAIN.items():
            hg.manual_seed(0)
            model = build_model(model_name, (1, 28, 28), 10, **opts)
            opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            loss = nn.CrossEntropyLoss()
            x = hg.tensor(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
            y = hg.tensor(rng.integers(0, 10, 64).astype(np.int64))

            def step():
                loss(model(x), y)
                model.zero_grad()
                model.backward(loss.backward())
                opt.step()

            out[f"train_{name}"] = _median_ms(step, warmup, repeats)
            model.eval()
            engine = InferenceEngine.from_model(model)
            xi = rng.standard_normal((256, 1, 28, 28)).astype(np.float32)
            out[f"infer_{name}"] = _median_ms(lambda: engine.forward(xi), warmup, repeats)
        try:
            from hipgrad.lm.train import LMTrainer
        except ImportError:   # --baseline: a build from before the GPT
            LMTrainer = None
        if LMTrainer is not None:
            model = _gpt_state()
            trainer = LMTrainer(model, None, None, None, lr=1e-3, batch_size=GPT_BATCH,
                                warmup_steps=1)
            x, y = _gpt_batch()
            out["train_gpt"] = _median_ms(lambda: trainer.train_step(x, y), warmup, repeats)
    out["load"] = load.result
    if hasattr(hg._C, "_thread_pool_stats"):
        out["pool"] = dict(hg._C._thread_pool_stats())
    return out


def child_gemm_after_numpy(threads: int, warmup: int, repeats: int) -> dict:
    """1024^3 hipgrad GEMM alone, and right after a NumPy matmul of the same size (NumPy
    imported first, as a user would, so its OpenBLAS keeps its own spin setting); also how much
    CPU the two OpenBLAS pools burn in the 50 ms after a call (spinning idle threads)."""
    import numpy as np

    import hipgrad as hg

    hg.set_num_threads(threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    ha, hb = hg.tensor(a), hg.tensor(b)
    gemm = lambda: hg.ops.gemm(ha, hb, impl="handwritten")  # noqa: E731

    def after_numpy():
        a @ b
        t = time.perf_counter()
        gemm()
        return (time.perf_counter() - t) * 1e3

    def spin_ms(call) -> float:
        call()
        r0 = os.times()
        time.sleep(0.05)
        r1 = os.times()
        return round((r1.user - r0.user + r1.system - r0.system) * 1e3, 1)

    alone = _median_ms(gemm, warmup, repeats)
    for _ in range(warmup):
        after_numpy()
    after = statistics.median(after_numpy() for _ in range(repeats))
    return {"gemm1024_alone": alone, "gemm1024_after_numpy": after,
            "numpy_openblas_idle_cpu_ms_per_50ms": spin_ms(lambda: a @ b),
            "hipgrad_openblas_idle_cpu_ms_per_50ms": spin_ms(lambda: hg.ops.gemm(ha, hb, impl="vendor")),
            "hipgrad_pool_idle_cpu_ms_per_50ms": spin_ms(gemm),
            "openblas_thread_timeout_env": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}


def child_torch(threads: int, warmup: int, repeats: int) -> dict:
    import numpy as np
    import torch
    import torch.nn as tnn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    models = {
        "lenet5": tnn.Sequential(
            tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5),
            tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
            tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10)),
        "mlp": tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 256), tnn.ReLU(), tnn.Linear(256, 10)),
    }
    out: dict = {}
    for name, model in models.items():
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        lossf = tnn.CrossEntropyLoss()
        x = torch.from_numpy(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
        y = torch.from_numpy(rng.integers(0, 10, 64).astype(np.int64))

        def step():
            opt.zero_grad(set_to_none=True)
            lossf(model(x), y).backward()
            opt.step()

        out[f"train_{name}"] = _median_ms(step, warmup, repeats)
    sys.path.insert(0, str(HERE.parent))
    from tests.lm import torch_gpt
    tm = torch_gpt.build(torch, **GPT)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in _gpt_state().state_dict().items()})
    topt = torch.optim.AdamW(tm.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)
    xg, yg = (torch.from_numpy(a) for a in _gpt_batch())

    def gpt_step():
        logits = tm(xg)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, GPT["vocab_size"]), yg.reshape(-1))
        topt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
        topt.step()

    out["train_gpt"] = _median_ms(gpt_step, warmup, repeats)
    return out


CHILDREN = {"hipgrad": child_hipgrad, "torch": child_torch, "gemm": child_gemm_after_numpy,
            "baseline": child_hipgrad}


def run_child(kind: str, threads: int, args) -> dict:
    env = dict(os.environ)
    python = args.baseline if kind == "baseline" else str(HERE.parent / "python")
    env["PYTHONPATH"] = python + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", kind, "--threads", str(threads),
           "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"child {kind} threads={threads} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def start_neighbours(n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.3)
    return procs


def stop_neighbours(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=10)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        with open("/proc/loadavg") as f:
            return f.read().strip()


def goals(res: dict) -> list[dict]:
    rows = []
    hg = res["hipgrad"]
    cases = [k for k in hg["0"]["1"] if k.startswith(("train_", "infer_"))]
    for case in cases:
        q2 = hg["0"]["2"][case]
        for nb, limit in (("1", 1.2), ("2", 1.5)):
            if nb not in hg:
                continue
            one, two = hg[nb]["1"][case], hg[nb]["2"][case]
            rows.append({"goal": f"{case}: {nb} neighbour(s), 2 threads <= {limit}x 1 thread",
                         "value": two / one, "met": two / one <= limit})
            if nb == "1":
                rows.append({"goal": f"{case}: 1 neighbour, 2 threads <= 2.5x quiet 2 threads",
                             "value": two / q2, "met": two / q2 <= 2.5})
    for nb in res.get("torch", {}):
        for t in res["torch"][nb]:
            for case in ("train_lenet5", "train_mlp", "train_gpt"):
                if case not in res["torch"][nb][t] or case not in hg[nb][t]:
                    continue
                speed = res["torch"][nb][t][case] / hg[nb][t][case]
                goal = 2.0 if case == "train_lenet5" and nb != "0" and t == "2" else None
                rows.append({"goal": f"{case}: {nb} neighbour(s), {t} thread(s), speed vs PyTorch"
                                     + (f" >= {goal}" if goal else " (info)"),
                             "value": speed, "met": None if goal is None else speed >= goal})
    return rows


def markdown(res: dict) -> str:
    md = [f"# CPU threads under contention ({res['date']})", "",
          f"- uptime before: `{res['uptime_before']}`", f"- uptime after: `{res['uptime_after']}`",
          f"- CPUs usable: {res['cpus']}; repeats {res['repeats']} after {res['warmup']} warm-up",
          "- Each cell: median ms of one step/forward, a fresh process per (framework, threads, "
          "neighbours); `other cores` = cores other processes (neighbours included) kept busy "
          "while the hipgrad child ran.", "",
          "| neighbours | threads | framework | " + " | ".join(res["cases"]) + " | other cores | pool stalls/regions, fall-backs |",
          "|" + "---|" * (len(res["cases"]) + 5)]
    for fw in ("hipgrad", "baseline", "torch"):
        for nb, by_t in res.get(fw, {}).items():
            for t, r in by_t.items():
                cells = [f"{r[c]:.2f}" if c in r else "" for c in res["cases"]]
                load = r.get("load") or {}
                pool = load.get("pool", {})
                extra = [str(load.get("other_cores", "")),
                         f"{pool.get('stalled_regions', '')}/{pool.get('regions', '')}, {pool.get('degradations', '')}" if pool else ""]
                md.append(f"| {nb} | {t} | {fw} | " + " | ".join(cells + extra) + " |")
    if "gemm" in res:
        md += ["", "GEMM 1024^3 (hipgrad handwritten, default threads): " +
               ", ".join(f"{k} {v}" for k, v in res["gemm"].items())]
    md += ["", "| goal | value | met |", "|---|---|---|"]
    md += [f"| {g['goal']} | {g['value']:.2f} | {'' if g['met'] is None else ('yes' if g['met'] else 'NO')} |"
           for g in res["goals"]]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--neighbours", default="0,1,2", help="neighbour counts, comma-separated")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--baseline", help="also run a hipgrad build from before the pool (its python/ dir)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.threads, args.warmup, args.repeats)))
        return
    res: dict = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                 "uptime_before": uptime(), "cpus": len(os.sched_getaffinity(0)),
                 "repeats": args.repeats, "warmup": args.warmup, "hipgrad": {}}
    kinds = ["hipgrad"] + ([] if args.no_torch else ["torch"]) + (["baseline"] if args.baseline else [])
    for nb in [int(v) for v in args.neighbours.split(",")]:
        procs = start_neighbours(nb)
        try:
            for kind in kinds:
                for t in (1, 2):
                    r = run_child(kind, t, args)
                    res.setdefault(kind, {}).setdefault(str(nb), {})[str(t)] = r
                    print(f"neighbours {nb} {kind:8s} threads {t}: " + ", ".join(
                        f"{k} {v:.2f}" for k, v in r.items() if isinstance(v, float)), flush=True)
        finally:
            stop_neighbours(procs)
    res["gemm"] = run_child("gemm", 2, args)
    print("gemm:", res["gemm"], flush=True)
    res["uptime_after"] = uptime()
    res["cases"] = [k for k in res["hipgrad"]["0"]["1"] if k.startswith(("train_", "infer_"))]
    res["goals"] = goals(res)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"contention-cpu-{datetime.date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1))
    stem.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
