"""Liveness memory planning of the inference engine on graph models: planned activation bytes
against the sum of all intermediate values, the measured peak, and issue 17's bound for it
(weights + the two largest simultaneously live activations).

    PYTHONPATH=python python3 bench/bench_graph_memory.py [--batch 8] [--size 112] [--note "..."]

Models (nn, torchvision layouts, random weights, eval mode): ResNet-18 (BasicBlocks 2-2-2-2 with
1x1 stride-2 downsampling shortcuts), ResNet-ish small (hg.build_model("resnet")) and a
SqueezeNet-style net of Fire modules (nn.Concat). Figures are bytes from the engine's memory
plan and the CPU allocator's peak (hg.memory_stats via memory_report), so they do not depend on
the machine's load; the predict time is printed for orientation only (shared machine).
Writes bench/results/graph-memory-cpu-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import time

import numpy as np

import hipgrad as hg
from hipgrad import InferenceEngine, nn


def basic_block(cin: int, cout: int, stride: int) -> list:
    body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
    short = None if stride == 1 and cin == cout else nn.Sequential(
        nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
    return [nn.Residual(body, short), nn.ReLU()]


def resnet18(size: int) -> nn.Module:
    layers = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, stride=2, padding=1)]
    cin, s = 64, (size + 1) // 2
    s = (s + 1) // 2
    for i, width in enumerate((64, 128, 256, 512)):
        for j in range(2):
            stride = 2 if i > 0 and j == 0 else 1
            layers += basic_block(cin, width, stride)
            s = (s - 1) // stride + 1
            cin = width
    return nn.Sequential(*layers, nn.AvgPool2d(s), nn.Flatten(), nn.Linear(512, 1000))


def fire(cin: int, sq: int, ex: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, sq, 1), nn.ReLU(),
                         nn.Concat(nn.Sequential(nn.Conv2d(sq, ex, 1), nn.ReLU()),
                                   nn.Sequential(nn.Conv2d(sq, ex, 3, padding=1), nn.ReLU()), dim=1))


def squeezenet_ish(size: int) -> nn.Module:
    s = ((size - 3) // 2 + 1 - 3) // 2 + 1
    s2 = (s - 3) // 2 + 1
    return nn.Sequential(nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(), nn.MaxPool2d(3, stride=2),
                         fire(64, 16, 64), fire(128, 16, 64), nn.MaxPool2d(3, stride=2),
                         fire(128, 32, 128), fire(256, 32, 128), nn.Conv2d(256, 1000, 1), nn.ReLU(),
                         nn.AvgPool2d(s2), nn.Flatten())


def live_bound(engine: InferenceEngine, shape: tuple) -> int:
    """The two largest activations live at once, over the run (bytes): the issue's bound."""
    plan = engine.memory_plan(shape)
    sizes = {v: 4 * int(np.prod(s)) for v, s in plan.step_shapes}
    graph = engine._plan
    views = {s.outputs[0] for s in graph if s.kind in ("flatten", "reshape")}
    first, last = {}, {}
    for i, s in enumerate(graph):
        for v in s.inputs:
            last[v] = i
        for v in s.outputs:
            first[v], last[v] = i, i
    for v in graph.outputs:
        last[v] = len(graph)
    best = 0
    for i in range(len(graph)):
        live = sorted((sizes[v] for v in sizes if v not in views and first[v] <= i <= last[v]), reverse=True)
        best = max(best, sum(live[:2]))
    return best


def row(name: str, model: nn.Module, shape: tuple) -> dict:
    model.eval()
    engine = InferenceEngine.from_model(model, device="cpu")
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    report = engine.memory_report(x)
    plan = engine.memory_plan(shape)
    engine.forward(x)
    t = time.perf_counter()
    for _ in range(3):
        engine.forward(x)
    ms = (time.perf_counter() - t) / 3 * 1e3
    weights = engine.weight_bytes()
    return {"model": name, "input": list(shape), "steps": len(engine._plan), "buffers": plan.slots,
            "planned_bytes": plan.activation_bytes, "intermediate_bytes": plan.intermediate_bytes,
            "weights_bytes": weights, "peak_bytes": report["measured"]["peak_bytes"],
            "bound_bytes": weights + live_bound(engine, shape), "predict_ms": round(ms, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    hg.manual_seed(0)
    load_before = os.getloadavg()
    b, s = args.batch, args.size
    rows = [row("resnet18", resnet18(s), (b, 3, s, s)),
            row("resnet-small", hg.build_model("resnet", (3, 32, 32), 10), (b, 3, 32, 32)),
            row("squeezenet-ish", squeezenet_ish(s), (b, 3, s, s))]
    meta = {"date": datetime.date.today().isoformat(), "machine": os.uname().nodename,
            "threads": hg._C.get_num_threads() if hasattr(hg._C, "get_num_threads") else None,
            "load_before": load_before, "load_after": os.getloadavg(), "note": args.note}
    mib = 1 / 2**20
    lines = [f"# Engine memory plans on graphs (CPU, {meta['date']})", "",
             f"Load average before/after: {load_before[0]:.1f} / {meta['load_after'][0]:.1f} "
             f"(shared machine: predict times are for orientation only). {args.note}", "",
             "| model | input | steps | buffers | planned MiB | sum of intermediates MiB | ratio | "
             "weights MiB | peak MiB | bound MiB | predict ms |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['model']} | {tuple(r['input'])} | {r['steps']} | {r['buffers']} | "
                     f"{r['planned_bytes'] * mib:.2f} | {r['intermediate_bytes'] * mib:.2f} | "
                     f"{r['planned_bytes'] / r['intermediate_bytes']:.2f} | {r['weights_bytes'] * mib:.2f} | "
                     f"{r['peak_bytes'] * mib:.2f} | {r['bound_bytes'] * mib:.2f} | {r['predict_ms']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = pathlib.Path(__file__).parent / "results" / f"graph-memory-cpu-{meta['date']}"
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
