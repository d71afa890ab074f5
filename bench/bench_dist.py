"""Data-parallel training on this machine (1 rank x 1 thread vs 2 ranks x 1 thread, same global
batch) and a ring all-reduce cost model for larger jobs.

    python3 bench/bench_dist.py [--steps 6] [--batch 64]     # runs mpiexec itself

Models: LeNet, ResNet-small (hg.Trainer) and the GPT of bench_lm (the LM trainer; samples are
windows of 128 tokens, global batch 8). Per model: samples/s at 1 and 2 ranks and their ratio; per step the seconds spent issuing
and waiting for gradient all-reduces and how much of it was waited for after the backward
(the part not overlapped); a blocking MPI_Allreduce of all the gradients timed alone. Then
predicted efficiency at 8, 64, 512 GPUs from
    T_comm = 2 (N-1)/N x gradient bytes / link bandwidth + 2 (N-1) x latency
against a compute time per step, without overlap (lower bound) and with full overlap of the
backward (upper bound). Writes bench/results/dist-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"lenet": ((1, 28, 28), {}), "resnet": ((3, 32, 32), {}), "gpt": (None, {})}
# The GPT of bench_lm (4 layers, 4 heads, 128 wide, block 128, byte vocabulary) through the LM
# trainer (AdamW, clipping); a global batch of GPT_BATCH windows (samples = windows).
GPT = dict(vocab_size=256, block_size=128, n_layer=4, n_head=4, n_embd=128)
GPT_BATCH = 8
# (name, bytes/s, latency s): stated link speeds
LINKS = [("NVLink/xGMI 300 GB/s", 300e9, 3e-6), ("InfiniBand 200 Gb/s", 25e9, 5e-6)]
# parameters and an assumed compute time per step for models we cannot time here (a GPU step)
PAPER = {"ResNet-18 (11.7 M params, batch 256/GPU, assumed 0.10 s/step on one GPU)": (11.7e6, 0.10),
         "GPT-2 small (124 M params, 16 x 1024 tokens/GPU, assumed 0.45 s/step)": (124e6, 0.45)}


def worker(args: argparse.Namespace) -> None:
    import hipgrad as hg
    import hipgrad.distributed as dist
    from hipgrad import nn, optim
    from hipgrad.data import DataLoader, Dataset
    from hipgrad.training.trainer import Trainer

    if int(os.environ.get("PMI_SIZE", "1")) > 1:
        dist.init(threads=False)
    hg.set_num_threads(1)
    shape, opts = MODELS[args.model]
    rng = np.random.default_rng(0)
    if args.model == "gpt":
        return worker_gpt(args, rng)
    n = args.batch * (args.steps + 1)
    data = Dataset(rng.standard_normal((n,) + shape).astype(np.float32),
                   rng.integers(0, 10, n).astype(np.int64))
    hg.manual_seed(0)
    model = hg.build_model(args.model, shape, 10, **opts)
    model.set_impl("handwritten")
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), 0.01, 0.9))
    warm = DataLoader(data.subset(np.arange(args.batch)), args.batch)
    trainer.train_epoch(warm, 0)                      # first-touch allocations, tuning
    red = trainer.reducer
    if red is not None:
        red.comm_s = red.wait_s = 0.0
    loader = DataLoader(data.subset(np.arange(args.batch, n)), args.batch)
    if red is not None:
        dist.barrier()
    t0 = time.perf_counter()
    trainer.train_epoch(loader, 1)
    seconds = time.perf_counter() - t0
    grads = sum(int(np.prod(p.data.shape)) for p in model.parameters())
    report(args.model, args.steps, args.batch, seconds, grads, red, {})

def worker_gpt(args: argparse.Namespace, rng: np.random.Generator) -> None:
    import hipgrad as hg
    import hipgrad.distributed as dist
    from hipgrad.data.windows import TokenWindows
    from hipgrad.lm.train import LMTrainer

    train = TokenWindows(rng.integers(0, GPT["vocab_size"], 200_000).astype(np.int64),
                         GPT["block_size"])
    hg.manual_seed(0)
    model = hg.build_model("gpt", **GPT)
    trainer = LMTrainer(model, None, train, None, lr=1e-3, batch_size=GPT_BATCH, warmup_steps=1)
    trainer.train_step(*train.random_batch(GPT_BATCH, 0, 0))     # first-touch allocations
    red = trainer.reducer
    if red is not None:
        red.comm_s = red.wait_s = 0.0
        dist.barrier()
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        trainer.train_step(*train.random_batch(GPT_BATCH, 0, step))
    seconds = time.perf_counter() - t0
    grads = sum(int(np.prod(p.data.shape)) for _, p in trainer.params)
    report("gpt", args.steps, GPT_BATCH, seconds, grads, red,
           {"tokens_per_s": args.steps * GPT_BATCH * GPT["block_size"] / seconds})


def report(model: str, steps: int, batch: int, seconds: float, grads: int, red, extra: dict) -> None:
    """Times one blocking all-reduce of all gradients (the no-overlap reference), then rank 0
    prints the run's JSON line: step time, throughput, the reducer's communication and wait."""
    import hipgrad.distributed as dist

    blocking = None
    if red is not None:
        from mpi4py import MPI
        buf = np.ones(grads, np.float32)
        dist.barrier()
        t1 = time.perf_counter()
        for _ in range(5):
            MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, buf, MPI.SUM)
        blocking = (time.perf_counter() - t1) / 5
    if dist.rank() == 0:
        print(json.dumps({"model": model, "ranks": dist.world_size(), "steps": steps,
                          "batch": batch, "step_s": seconds / steps,
                          "samples_per_s": steps * batch / seconds, **extra,
                          "comm_s_per_step": red.comm_s / steps if red else 0.0,
                          "wait_s_per_step": red.wait_s / steps if red else 0.0,
                          "blocking_allreduce_s": blocking, "grad_bytes": 4 * grads}))

def ring_seconds(nbytes: float, n: int, bw: float, lat: float) -> float:
    return 2 * (n - 1) / n * nbytes / bw + 2 * (n - 1) * lat


def predictions(cases: dict[str, tuple[float, float]]) -> list[dict]:
    rows = []
    for name, (nbytes, compute) in cases.items():
        for link, bw, lat in LINKS:
            for n in (2, 8, 64, 512):
                t = ring_seconds(nbytes, n, bw, lat)
                rows.append({"model": name, "link": link, "gpus": n, "comm_s": t,
                             "compute_s": compute, "eff_no_overlap": compute / (compute + t),
                             # the backward (about 2/3 of a step) can hide communication
                             "eff_full_overlap": compute / (compute / 3 + max(2 * compute / 3, t))})
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.model is not None:
        return worker(args)
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    load = os.getloadavg()
    runs = []
    for model in MODELS:
        for ranks in (1, 2):
            cmd = [sys.executable, __file__, "--model", model, "--steps", str(args.steps),
                   "--batch", str(args.batch)]
            if ranks > 1:
                cmd = [mpiexec, "-n", str(ranks)] + cmd
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]))
    cases = {}
    for model in MODELS:
        one = next(r for r in runs if r["model"] == model and r["ranks"] == 1)
        two = next(r for r in runs if r["model"] == model and r["ranks"] == 2)
        two["throughput_ratio"] = two["samples_per_s"] / one["samples_per_s"]
        # check of the model here: shared memory, measured blocking all-reduce as the "link"
        cases[f"{model} (measured here, 1 CPU thread/step)"] = (one["grad_bytes"], one["step_s"])
    cases.update({k: (4 * v[0], v[1]) for k, v in PAPER.items()})
    pred = predictions(cases)
    date = datetime.date.today().isoformat()
    result = {"date": date, "loadavg_at_start": load, "loadavg_at_end": os.getloadavg(),
              "cpu_count": os.cpu_count(), "runs": runs, "predictions": pred}
    res = ROOT / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / f"dist-{date}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# bench_dist {date} (load {load[0]:.1f} at start, {os.cpu_count()} cores: "
             "re-run on a quiet machine)", "", "| model | ranks | step s | samples/s | ratio | "
             "comm s/step | waited s/step | blocking all-reduce s |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['model']} | {r['ranks']} | {r['step_s']:.3f} | {r['samples_per_s']:.1f} | "
                     f"{r.get('throughput_ratio', 1.0):.2f} | {r['comm_s_per_step']:.4f} | "
                     f"{r['wait_s_per_step']:.4f} | {r['blocking_allreduce_s'] or 0:.4f} |")
    lines += ["", "| model | link | GPUs | comm s | compute s | eff. no overlap | eff. full overlap |",
              "|---|---|---|---|---|---|---|"]
    for r in pred:
        lines.append(f"| {r['model']} | {r['link']} | {r['gpus']} | {r['comm_s']:.5f} | "
                     f"{r['compute_s']:.3f} | {r['eff_no_overlap']:.3f} | {r['eff_full_overlap']:.3f} |")
    (res / f"dist-{date}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
