"""What the phase trace costs: a LeNet-5 training step and inference pass (1x28x28, batch 64)
(a) never traced, (b) with the trace off after it has been on once, (c) traced; and the
per-op dispatch cost of a tiny op (ReLU on 16 elements) with the trace off and on.

    PYTHONPATH=python python3 bench/bench_trace.py [--threads 1] [--repeats 25] [--note "..."]

(a) runs first, before any trace has started in the process; then one traced step turns the
trace on and off again, and (b) and (c) alternate run by run, so machine drift hits both alike.
The training step is `Trainer.train_epoch` on a one-batch loader (the five phases, labelled);
inference is `InferenceEngine.forward` on a device tensor. A traced run includes starting and
stopping the trace and turning its records into Python dicts. Every figure is a median after
`--warmup` untimed runs. Writes bench/results/trace-<device>-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _sysinfo
import hipgrad as hg
import numpy as np
from hipgrad import nn, optim
from hipgrad.data import DataLoader, Dataset
from hipgrad.training.models import build_model
from hipgrad.training.trainer import Trainer

IN_SHAPE, CLASSES = (1, 28, 28), 10


def _ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def _traced(fn: Callable[[], object]) -> Callable[[], int]:
    def run() -> int:
        with hg.trace() as t:
            fn()
        return len(t.ops)
    return run


def make_cases(batch: int, device: str) -> dict[str, Callable[[], object]]:
    """name -> one run: the training step and the inference pass of the same model and batch."""
    hg.manual_seed(0)
    rng = np.random.default_rng(0)
    data = Dataset(rng.standard_normal((batch, *IN_SHAPE)).astype(np.float32),
                   rng.integers(0, CLASSES, batch))
    net = build_model("lenet", IN_SHAPE, CLASSES)
    trainer = Trainer(net, nn.CrossEntropyLoss(), optim.Adam(net.parameters(), lr=1e-3), device)
    loader = DataLoader(data, batch)
    engine = hg.InferenceEngine.from_model(net, device=device)
    x = hg.tensor(data.images, device=device)

    def train_step() -> None:
        trainer.train_epoch(loader, 1)
        hg.synchronize(device)

    def inference() -> None:
        engine.forward(x)
        hg.synchronize(device)

    return {"training step": train_step, "inference pass": inference}


def make_micro(device: str, calls: int) -> Callable[[], object]:
    x = hg.tensor(np.ones(16, np.float32), device=device)

    def relus() -> None:
        for _ in range(calls):
            hg.ops.activation(x, "relu")
    return relus


def micro_traced(fn: Callable[[], object]) -> Callable[[], float]:
    """Times the calls inside an open trace (collecting the records afterwards is not timed)."""
    def run() -> float:
        with hg.trace():
            ms = _ms(fn)
        return ms
    return run


def measure(args: argparse.Namespace) -> dict:
    """One process's runs: (a) before any trace, then (b) and (c) alternating; raw ms lists."""
    hg.set_num_threads(args.threads)
    cases = make_cases(args.batch, args.device)
    micro = make_micro(args.device, args.calls)
    times: dict[str, dict[str, list[float]]] = {n: {"a": [], "b": [], "c": []} for n in cases}
    utimes: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    records: dict[str, int] = {}
    # (a) never traced: before any trace starts in this process
    for _ in range(args.warmup):
        micro()
        for fn in cases.values():
            fn()
    utimes["a"] = [_ms(micro) for _ in range(args.rounds)]
    for name, fn in cases.items():
        times[name]["a"] = [_ms(fn) for _ in range(args.repeats)]
    # the trace on once, then (b) off and (c) on, alternating
    for name, fn in cases.items():
        records[name] = _traced(fn)()
    for _ in range(args.rounds):
        utimes["b"].append(_ms(micro))
        utimes["c"].append(micro_traced(micro)())
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name]["b"].append(_ms(fn))
            times[name]["c"].append(_ms(_traced(fn)))
    return {"times": times, "micro": utimes, "records": records}


def run_children(args: argparse.Namespace) -> list[dict]:
    """`--processes` fresh processes, one after another, so each has its own (a)."""
    argv = [sys.executable, __file__, "--child"]
    for k in ("device", "threads", "batch", "warmup", "repeats", "calls", "rounds"):
        argv += [f"--{k}", str(getattr(args, k))]
    out = []
    for _ in range(args.processes):
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        out.append(json.loads(done.stdout))
    return out


def pooled(runs: list[dict], *path: str) -> list[float]:
    values: list[float] = []
    for r in runs:
        v = r
        for k in path:
            v = v[k]
        values += v
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="hipgrad threads in every mode (default 1: steadier on a shared machine)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=25, help="timed runs per mode (>= 20)")
    ap.add_argument("--calls", type=int, default=2000, help="tiny-op calls per micro-bench round")
    ap.add_argument("--rounds", type=int, default=21, help="micro-bench rounds per mode")
    ap.add_argument("--processes", type=int, default=5,
                    help="fresh processes, each measuring (a) then (b)/(c); runs are pooled")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--note", default="", help="e.g. 'machine shared with other jobs'")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()

    if args.child:
        print(json.dumps(measure(args)))
        return
    hg.set_num_threads(args.threads)
    info = _sysinfo.collect(args.threads, None, None)
    info["torch"] = "not used"
    info["thread_setting"] = f"hg.set_num_threads({args.threads})"
    info["note"] = args.note
    print(_sysinfo.header_text(info))
    load0, ru0, t0 = _sysinfo.cpu_ticks(), resource.getrusage(resource.RUSAGE_SELF), time.time()

    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    runs = run_children(args)
    info["other_load"] = load = _sysinfo.other_load(load0, ru0, t0)
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cores = ((child.ru_utime - child0.ru_utime) + (child.ru_stime - child0.ru_stime)) / load["wall_s"]
    load["ours_cores"] = round(load["ours_cores"] + child_cores, 2)  # the measuring processes
    load["other_cores"] = round(max(load["other_cores"] - child_cores, 0.0), 2)
    info["bench_seconds"] = round(time.time() - t0, 1)
    records = runs[0]["records"]
    times = {n: {m: pooled(runs, "times", n, m) for m in "abc"} for n in records}
    utimes = {m: pooled(runs, "micro", m) for m in "abc"}
    ratio_spread = {n: [statistics.median(r["times"][n]["b"]) / statistics.median(r["times"][n]["a"])
                        for r in runs] for n in records}

    rows = []
    for name, t in times.items():
        a, b, c = (statistics.median(t[m]) for m in "abc")
        rows.append({"case": name, "records": records[name], "never_ms": a, "off_ms": b, "on_ms": c,
                     "off_vs_never": b / a, "on_vs_off": c / b,
                     "on_extra_us_per_record": (c - b) * 1e3 / max(records[name], 1),
                     "off_vs_never_per_process": ratio_spread[name]})
    ua, ub, uc = (statistics.median(utimes[m]) * 1e3 / args.calls for m in "abc")
    micro_row = {"case": f"relu on 16 elements x {args.calls} calls", "never_us_per_call": ua,
                 "off_us_per_call": ub, "on_us_per_call": uc, "off_vs_never": ub / ua,
                 "on_vs_off": uc / ub}

    lines = [(f"LeNet-5 {IN_SHAPE}, batch {args.batch}, {args.device}, {args.threads} threads; median "
              f"of {args.processes} processes x {args.repeats} runs, {args.warmup} warm-up runs each"),
             (f"{'case':<16} {'ops':>5} {'(a) never ms':>13} {'(b) off ms':>11} {'(c) on ms':>10} "
              f"{'b/a':>6} {'c/b':>6} {'on: us/op':>10}")]
    for r in rows:
        lines.append(f"{r['case']:<16} {r['records']:>5} {r['never_ms']:>13.3f} {r['off_ms']:>11.3f} "
                     f"{r['on_ms']:>10.3f} {r['off_vs_never']:>6.3f} {r['on_vs_off']:>6.3f} "
                     f"{r['on_extra_us_per_record']:>10.2f}")
        spread = r["off_vs_never_per_process"]
        lines.append(f"{'':<16} b/a per process: {min(spread):.3f} .. {max(spread):.3f}")
    lines += ["", (f"per-op dispatch, {micro_row['case']}, median of {args.processes} x "
                   f"{args.rounds} rounds:"),
              (f"  (a) never {ua:.3f} us/call, (b) off {ub:.3f} us/call ({ub / ua:.3f}x), "
               f"(c) on {uc:.3f} us/call ({uc / ub:.3f}x of off)")]
    print("\n".join(lines))
    print(_sysinfo.load_text(info))

    date = datetime.date.today().isoformat()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"trace-{args.device.split(':')[0]}-{date}"
    result = {"bench": "trace overhead", "date": date, "device": args.device, "args": vars(args),
              "statistic": "median", "info": info, "results": rows, "micro": micro_row,
              "raw_ms": times, "raw_micro_ms_per_round": utimes}
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    md = [f"# Trace overhead ({args.device}, {date})", "",
          f"- CPU: {info['cpu_model']}, {info['logical_cpus']} logical CPUs, ISA `{info['cpu_isa']}`",
          f"- hipgrad {hg.__version__}, {args.threads} threads in every mode; {info['hipgrad']['facts'].get('cpu.blas', '')}",
          f"- {_sysinfo.load_text(info)}; bench took {info['bench_seconds']} s",
          (f"- {args.processes} fresh processes, one after another; in each, (a) never traced "
           "(measured first), then (b) trace off after one traced run and (c) traced (including "
           "trace start/stop and turning the records into dicts), alternating run by run. Medians "
           "pool all processes' runs. `on: us/op` = (c - b) / op records of one run."),
          ("- micro: the calls timed inside an open trace; collecting the records afterwards is "
           "not timed there."),
          *([f"- note: {args.note}"] if args.note else []), "", "```", *lines, "```", ""]
    stem.with_suffix(".md").write_text("\n".join(md))
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
