"""ONNX models on the CPU: hipgrad's InferenceEngine (fp32, and int8 on ResNet-18) against
onnxruntime (intra-op threads = hipgrad's threads; its own int8: quantize_static, QDQ) and
PyTorch eager under no_grad, on ResNet-18, MobileNetV2, SqueezeNet 1.1 and VGG-11-BN written the
torchvision way (tests/engine/zoo_models.py, random weights) and exported with
torch.onnx.export, at batch 1 and 8, side by side in one process.

    PYTHONPATH=python python3 bench/bench_onnx.py [--threads 2] [--size 64] [--repeats 30]
        [--block 1] [--models resnet18,mobilenet_v2,squeezenet1_1,vgg11_bn] [--batches 1,8]
        [--note "..."]

Every figure is the median of `--repeats` timed rounds after `--warmup` untimed ones; in each
round the three runtimes run one call each, back to back, in an order that rotates from round
to round, so all three meet the same moments of a shared machine. With `--block K` each runtime
runs K timed calls in a row per round, after one untimed call: every runtime's worker threads
(onnxruntime's and PyTorch's OpenMP ones spin for milliseconds after a call, hipgrad's for up to
1 ms) are still busy when the next runtime starts, and a one-call rotation measures each runtime
next to the others' spinning threads rather than as it runs alone in a deployment. Inputs are
NumPy arrays (each runtime's native host API; PyTorch gets torch.from_numpy views). Before
timing the engine's outputs are checked against onnxruntime's and PyTorch's (relative error <= 1e-4).
Memory: the engine's memory_report for ResNet-18 at batch 8 (weights, planned activation
buffers, measured peak), and the peak RSS growth of a fresh process that loads the model and
runs one batch, for the engine and for onnxruntime. Goals (issue 17): fp32 >= 1.0x
onnxruntime on every row (1.3x wanted), >= 1.3x PyTorch; int8 >= 1.0x onnxruntime's int8 and
top-1 agreement with fp32 >= 99%. Writes bench/results/onnx-cpu-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = None
if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--size", type=int, default=64, help="input height and width")
    ap.add_argument("--models", default="resnet18,mobilenet_v2,squeezenet1_1,vgg11_bn")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--exporter", default="legacy", choices=["legacy", "dynamo"])
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--block", type=int, default=1,
                    help="consecutive timed calls per runtime and round (> 1: after one untimed call)")
    ap.add_argument("--no-int8", action="store_true")
    ap.add_argument("--child-rss", nargs=4, metavar=("RUNTIME", "PATH", "BATCH", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ARGS = ap.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):  # before NumPy loads its BLAS
        os.environ[var] = str(ARGS.threads)

import datetime  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

GOALS = {"fp32_vs_ort": 1.0, "fp32_vs_ort_wanted": 1.3, "fp32_vs_torch": 1.3, "int8_vs_ort_int8": 1.0,
         "int8_top1": 0.99}


def _vm(key: str) -> int:
    """VmRSS / VmHWM of this process in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def child_rss(runtime: str, path: str, batch: int, size: int) -> None:
    """In a fresh process: RSS growth (peak) from before loading `path` to after one batch."""
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    if runtime == "ort":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = ARGS.threads, 1
        base = _vm("VmRSS")
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        sess.run(None, {"input": x})
    else:
        import hipgrad as hg
        from hipgrad import InferenceEngine

        hg.set_num_threads(ARGS.threads)
        import onnx  # noqa: F401 - the importer's dependency, loaded before the baseline

        base = _vm("VmRSS")
        InferenceEngine.load(path, device="cpu").forward(x)
    print(json.dumps({"rss_growth_bytes": _vm("VmHWM") - base}))


def rss_growth(runtime: str, path: str, batch: int) -> int | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--threads", str(ARGS.threads), "--child-rss",
           runtime, path, str(batch), str(ARGS.size)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    try:
        return int(json.loads(out.stdout.strip().splitlines()[-1])["rss_growth_bytes"])
    except (ValueError, IndexError, KeyError):
        print(f"rss child ({runtime}) failed: {out.stderr[-500:]}")
        return None


def live_pair_bytes(engine, shape: tuple) -> int:
    """The goal's activation term: the largest sum of two activations (float32 values the steps
    write; a reshape/flatten view counts as its source) live at one step, over the engine's
    optimized graph: each step's inputs and outputs, and every value still to be read."""
    from hipgrad.engine.shapes import check_shapes
    from hipgrad.engine.steps import VIEWS

    g = engine._plan
    shapes = check_shapes(g, {g.inputs[0]: tuple(shape)})
    root = {v: v for v in g.inputs}
    last: dict[str, int] = {v: len(g.steps) for v in g.outputs}
    for i, st in enumerate(g.steps):
        for v in st.outputs:
            root[v] = root[st.inputs[0]] if st.kind in VIEWS else v
        for v in st.inputs:
            last[root[v]] = max(last.get(root[v], i), i)
    best, live = 0, {}
    for i, st in enumerate(g.steps):
        for v in st.outputs:
            if root[v] == v:
                live[v] = int(np.prod(shapes[v])) * 4
        sizes = sorted((b for v, b in live.items() if v not in g.inputs), reverse=True)
        best = max(best, sum(sizes[:2]))
        live = {v: b for v, b in live.items() if last.get(v, -1) > i}
    return best


def rounds(fns: dict, warmup: int, repeats: int) -> dict:
    """Median ms of each callable, timed in rounds with a rotating order: per round each runs
    one untimed call (with --block > 1), then --block timed calls, until each has --repeats."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times = {n: [] for n in names}
    block = max(1, ARGS.block)
    for r in range(-(-repeats // block)):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            if block > 1:
                fns[n]()  # meets the previous runtime's still-spinning threads: not timed
            for _ in range(block):
                t0 = time.perf_counter()
                fns[n]()
                times[n].append((time.perf_counter() - t0) * 1e3)
    return {n: statistics.median(v) for n, v in times.items()}


def rel_err(got, want) -> float:
    return float(np.abs(np.asarray(got, np.float64) - want).max() / max(float(np.abs(want).max()), 1e-30))


def ort_session(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = ARGS.threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def ort_int8(path: str, calib: list[np.ndarray], out: str) -> str:
    """onnxruntime's static INT8 (QDQ, per-channel weights), calibrated on the same batches."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    quantize_static(path, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def bench_model(name: str, tmp: str, rng) -> list[dict]:
    import hipgrad as hg
    import torch
    from hipgrad import InferenceEngine

    from tests.engine import zoo_models

    model = zoo_models.build(name, num_classes=1000, size=ARGS.size)
    path = zoo_models.export(model, os.path.join(tmp, f"{name}.onnx"), ARGS.exporter, ARGS.opset, ARGS.size)
    t0 = time.perf_counter()
    engine = InferenceEngine.load(path, device="cpu")
    load_s = time.perf_counter() - t0
    sess = ort_session(path)
    rows = []
    for batch in ARGS.batches:
        x = rng.standard_normal((batch, 3, ARGS.size, ARGS.size)).astype(np.float32)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            ref = model(xt).numpy()
        got, ort_out = engine.forward(x), sess.run(None, {"input": x})[0]
        errs = {"vs_torch": rel_err(got, ref), "vs_ort": rel_err(got, ort_out)}
        if max(errs.values()) > 1e-4:
            raise SystemExit(f"{name} batch {batch}: engine outputs differ {errs}")

        def torch_call():
            with torch.no_grad():
                return model(xt).numpy()
        ms = rounds({"engine": lambda: engine.forward(x), "ort": lambda: sess.run(None, {"input": x}),
                     "torch": torch_call}, ARGS.warmup, ARGS.repeats)
        row = {"model": name, "batch": batch, "engine_ms": ms["engine"], "ort_ms": ms["ort"],
               "torch_ms": ms["torch"], "vs_ort": ms["ort"] / ms["engine"], "vs_torch": ms["torch"] / ms["engine"],
               "rel_err": errs, "load_s": load_s}
        if name == "resnet18" and batch == max(ARGS.batches):
            rep = engine.memory_report(x)
            row["memory"] = {"report": _jsonable(rep), "weights_bytes": engine.weight_bytes(),
                             "two_live_activations_bytes": live_pair_bytes(engine, x.shape),
                             "engine_rss_growth": rss_growth("engine", path, batch),
                             "ort_rss_growth": rss_growth("ort", path, batch)}
        rows.append(row)
        print(f"{name} b{batch}: engine {ms['engine']:.2f} ms, onnxruntime {ms['ort']:.2f} ms "
              f"({row['vs_ort']:.2f}x), torch {ms['torch']:.2f} ms ({row['vs_torch']:.2f}x)", flush=True)
    if name == "resnet18" and not ARGS.no_int8:
        rows += bench_int8(path, engine, sess, tmp, rng)
    hg.synchronize("cpu")
    return rows


def bench_int8(path: str, fp32, sess, tmp: str, rng) -> list[dict]:
    from hipgrad import InferenceEngine

    calib = [rng.standard_normal((8, 3, ARGS.size, ARGS.size)).astype(np.float32) for _ in range(4)]
    int8 = InferenceEngine.load(path, device="cpu", precision="int8").calibrate(calib)
    qsess = ort_session(ort_int8(path, calib, os.path.join(tmp, "resnet18-int8.onnx")))
    test = rng.standard_normal((256, 3, ARGS.size, ARGS.size)).astype(np.float32)
    ours = float((int8.predict(test) == fp32.predict(test)).mean())
    theirs = float((qsess.run(None, {"input": test})[0].argmax(1) == sess.run(None, {"input": test})[0].argmax(1)).mean())
    rows = []
    for batch in ARGS.batches:
        x = test[:batch]
        ms = rounds({"engine": lambda: int8.forward(x), "ort": lambda: qsess.run(None, {"input": x})},
                    ARGS.warmup, ARGS.repeats)
        rows.append({"model": "resnet18-int8", "batch": batch, "engine_ms": ms["engine"], "ort_ms": ms["ort"],
                     "vs_ort": ms["ort"] / ms["engine"], "top1_engine": ours, "top1_ort": theirs})
        print(f"resnet18 int8 b{batch}: engine {ms['engine']:.2f} ms, onnxruntime QDQ {ms['ort']:.2f} ms "
              f"({rows[-1]['vs_ort']:.2f}x); top-1 agreement with fp32: engine {ours:.3f}, "
              f"onnxruntime {theirs:.3f}", flush=True)
    return rows


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def markdown(info: dict, rows: list[dict], up: tuple[str, str]) -> str:
    mib = 2**20
    md = [f"# ONNX models on the CPU: hipgrad engine vs onnxruntime vs PyTorch ({info['date']})", "",
          f"- Machine: {info['cpu_model']}, {info['logical_cpus']} logical CPUs, hipgrad ISA `{info['cpu_isa']}`",
          f"- Threads: {ARGS.threads} everywhere (hg.set_num_threads, onnxruntime intra_op_num_threads with "
          "inter_op 1 and sequential execution, torch.set_num_threads)",
          f"- Versions: hipgrad {info['hipgrad']['version']}, onnxruntime {info['onnxruntime']}, "
          f"PyTorch {info['torch']['version']}",
          f"- Models: tests/engine/zoo_models.py (torchvision layouts, random weights, 1000 classes), "
          f"{ARGS.exporter} exporter, opset {ARGS.opset}, input {ARGS.size}x{ARGS.size}",
          f"- uptime before: `{up[0]}`", f"- uptime after: `{up[1]}`",
          f"- {info['load_text']}",
          "- The machine is shared with other work: ratios between columns of one row are meaningful "
          "(timed in rotating rounds), absolute times are not.",
          f"- Median of {ARGS.repeats} timed calls after {ARGS.warmup} warm-up calls; NumPy in, NumPy out; "
          + ("one call per runtime per round." if ARGS.block <= 1 else
             f"blocks of {ARGS.block} consecutive calls per runtime per round, each after one untimed "
             "call (the other runtimes' worker threads still spin for a while after their calls)."),
          f"- Goals: fp32 >= {GOALS['fp32_vs_ort']}x onnxruntime (wanted {GOALS['fp32_vs_ort_wanted']}x), "
          f">= {GOALS['fp32_vs_torch']}x PyTorch; int8 >= {GOALS['int8_vs_ort_int8']}x onnxruntime's int8, "
          f"top-1 agreement >= {GOALS['int8_top1']:.0%}.",
          *([f"- Note: {ARGS.note}"] if ARGS.note else []), "",
          "| model | batch | engine ms | onnxruntime ms | vs onnxruntime | PyTorch ms | vs PyTorch |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        torch_cells = (f"{r['torch_ms']:.2f} | {r['vs_torch']:.2f}x" if "torch_ms" in r else "n/a | n/a")
        md.append(f"| {r['model']} | {r['batch']} | {r['engine_ms']:.2f} | {r['ort_ms']:.2f} | "
                  f"{r['vs_ort']:.2f}x | {torch_cells} |")
    int8 = [r for r in rows if r["model"].endswith("int8")]
    if int8:
        md += ["", f"INT8 (ResNet-18): top-1 agreement with fp32 on 256 random inputs: engine "
                   f"{int8[0]['top1_engine']:.3f}, onnxruntime QDQ {int8[0]['top1_ort']:.3f}. Both calibrated "
                   "on the same 4 random batches of 8; onnxruntime: quantize_static, QDQ, per-channel "
                   "int8 weights, int8 activations."]
    mem = next((r["memory"] for r in rows if "memory" in r), None)
    if mem:
        rep = mem["report"]
        meas = rep.get("measured", {}) if isinstance(rep, dict) else {}
        fmt = lambda b: "n/a" if b is None else f"{b / mib:.2f} MiB"  # noqa: E731
        plan = next((p for p in rep.get("plans", []) if p.get("input_shape", [0])[0] == max(ARGS.batches)), {})
        md += ["", f"Memory, ResNet-18 batch {max(ARGS.batches)}: engine weights {fmt(mem['weights_bytes'])}; "
                   f"planned activation buffers {fmt(plan.get('activation_bytes'))} "
                   f"({plan.get('slots', '?')} buffers, against {fmt(plan.get('intermediate_bytes'))} for all "
                   f"intermediate values); measured peak of a forward (weights + buffers + workspace, "
                   f"hg.memory_stats) {fmt(meas.get('peak_bytes'))}, planned {fmt(meas.get('planned_peak_bytes'))}; "
                   f"goal: at most weights + the two largest simultaneously live activations "
                   f"({fmt(mem.get('two_live_activations_bytes'))}) + workspace = "
                   f"{fmt(mem['weights_bytes'] + (mem.get('two_live_activations_bytes') or 0))} + workspace. "
                   f"Process RSS growth (a fresh process: load the file, run one batch; allocator and "
                   f"library overheads included): engine {fmt(mem['engine_rss_growth'])}, onnxruntime "
                   f"{fmt(mem['ort_rss_growth'])}. The full memory_report is in the JSON file."]
    return "\n".join(md) + "\n"


def main() -> None:
    import hipgrad as hg
    import onnxruntime
    import torch

    sys.path.insert(0, os.path.dirname(HERE))  # tests.engine.zoo_models
    sys.path.insert(0, HERE)
    import _sysinfo

    hg.set_num_threads(ARGS.threads)
    torch.set_num_threads(ARGS.threads)
    ARGS.batches = [int(b) for b in ARGS.batches.split(",")]
    info = _sysinfo.collect(ARGS.threads, None, torch)
    info["onnxruntime"] = onnxruntime.__version__
    up0, load0, ru0, t0 = _uptime(), _sysinfo.cpu_ticks(), resource.getrusage(resource.RUSAGE_SELF), time.time()
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for name in ARGS.models.split(","):
            rows += bench_model(name, tmp, rng)
    info["other_load"] = _sysinfo.other_load(load0, ru0, t0)
    info["load_text"] = _sysinfo.load_text(info)
    up = (up0, _uptime())
    print(info["load_text"])
    date = datetime.date.today().isoformat()
    os.makedirs(ARGS.out, exist_ok=True)
    stem = os.path.join(ARGS.out, f"onnx-cpu-{date}")
    with open(stem + ".json", "w") as f:
        json.dump({"bench": "onnx", "info": _jsonable(info), "goals": GOALS, "uptime": up,
                   "args": {k: v for k, v in vars(ARGS).items() if k != "child_rss"}, "rows": _jsonable(rows)},
                  f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown(info, rows, up))
    print(f"wrote {stem}.md and .json")


if __name__ == "__main__":
    if ARGS.child_rss:
        child_rss(ARGS.child_rss[0], ARGS.child_rss[1], int(ARGS.child_rss[2]), int(ARGS.child_rss[3]))
    else:
        main()
