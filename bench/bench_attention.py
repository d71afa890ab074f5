"""Attention forward + backward: hipgrad's handwritten blocked kernel ("flash": never forms the
(T, T) matrix) vs its composed vendor variant (GEMM + softmax, (T, T) per head) vs PyTorch's
scaled_dot_product_attention, causal, same inputs and thread count, at T = 128, 512, 2048; then
the peak memory one call (forward + backward) adds (one fresh process per path and T: a warm-up
call, then the peak RSS reset by writing 5 to /proc/self/clear_refs, then VmHWM - VmRSS around
the measured call, from /proc/self/status), which grows linearly in T for the handwritten path
and quadratically for the composed vendor path.

Usage: PYTHONPATH=python python3 bench/bench_attention.py [--device cpu|gpu:0] [--threads N]
       [--repeats R] [--out bench/results/attention-<device>-<date>]
Every variant is checked against the float64 reference before it is timed. The machine's load
(uptime) is recorded with the figures: on a shared machine they need a quiet re-run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import numpy as np

import hipgrad as hg

# (B, H, T, D): the GPT shape of bench_lm (16 x 4 heads x 128, head size 32), then longer contexts
# with the same number of scores per call divided among fewer sequences.
SHAPES = [(16, 4, 128, 32), (4, 4, 512, 32), (1, 4, 2048, 32)]
MEMORY_T = [128, 512, 2048]


def _inputs(B, H, T, D, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((B, H, T, D), dtype=np.float32) for _ in range(4)]


def _reference_check(q, k, v, dout, got, what):
    """Float64 check of (out, dq, dk, dv) on the first (batch, head)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from tests.reference import attention as ref
    s = (slice(0, 1), slice(0, 1))
    want_out, _, _ = ref.attention(q[s], k[s], v[s], True)
    want = (want_out,) + ref.attention_backward(dout[s], q[s], k[s], v[s], True)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        g = np.asarray(g)[s]
        err = float(np.max(np.abs(g - w)) / max(1e-6, float(np.max(np.abs(w)))))
        if not err < 1e-3:
            raise SystemExit(f"{what}: {name} differs from the float64 reference (rel. error {err:.2e})")


def _hg_step(tensors, impl):
    q, k, v, dout = tensors
    out, lse = hg.ops.attention(q, k, v, causal=True, impl=impl)
    dq, dk, dv = hg.ops.attention_backward(dout, q, k, v, out, lse, causal=True, impl=impl)
    return out, dq, dk, dv


def _torch_step(torch, tensors):
    q, k, v, dout = tensors
    for t in (q, k, v):
        t.grad = None
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    out.backward(dout)
    return out, q.grad, k.grad, v.grad


def _time(fn, repeats, sync=lambda: None):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def _load():
    return os.getloadavg()


def run_timings(device, repeats, torch):
    rows = []
    sync = (lambda: hg.synchronize(device)) if device != "cpu" else (lambda: None)
    for B, H, T, D in SHAPES:
        arrays = _inputs(B, H, T, D)
        tensors = [hg.tensor(a, device=device) for a in arrays]
        flops = 2 * 2 * B * H * T * T * D / 2 * (1 + 2.5)  # causal half; backward ~2.5x forward
        row = {"B": B, "H": H, "T": T, "D": D, "load_before": _load()}
        for impl in ("handwritten", "vendor"):
            got = [t.numpy() for t in _hg_step(tensors, impl)]
            _reference_check(*arrays, got, f"hipgrad {impl}")
            best, med = _time(lambda: _hg_step(tensors, impl), repeats, sync)
            row[impl] = {"ms_min": best * 1e3, "ms_median": med * 1e3,
                         "gflops": flops / best / 1e9,
                         "kernel": hg.ops.last_impl()["impl"]}
        if torch is not None and device == "cpu":
            tt = [torch.tensor(a, requires_grad=i < 3) for i, a in enumerate(arrays)]
            got = [t.detach().numpy() for t in _torch_step(torch, tt)]
            _reference_check(*arrays, got, "torch sdpa")
            best, med = _time(lambda: _torch_step(torch, tt), repeats)
            row["torch_sdpa"] = {"ms_min": best * 1e3, "ms_median": med * 1e3,
                                 "gflops": flops / best / 1e9}
        row["load_after"] = _load()
        rows.append(row)
        print(_timing_line(row), flush=True)
    return rows


def _timing_line(r):
    parts = [f"B={r['B']:2d} H={r['H']} T={r['T']:4d} D={r['D']}:"]
    for key in ("handwritten", "vendor", "torch_sdpa"):
        if key in r:
            parts.append(f"{key} {r[key]['ms_min']:8.2f} ms (median {r[key]['ms_median']:.2f})")
    if "torch_sdpa" in r:
        parts.append(f"handwritten/torch speed-up x{r['torch_sdpa']['ms_min'] / r['handwritten']['ms_min']:.2f}")
    return "  ".join(parts)


# ---- peak memory, one fresh process per measurement ------------------------------------------
_CHILD = r"""
import os, sys, json
import numpy as np
which, T, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
B, H, D = 1, 4, 32
rng = np.random.default_rng(0)
arrays = [rng.standard_normal((B, H, T, D), dtype=np.float32) for _ in range(4)]
if which == "torch":
    import torch
    torch.set_num_threads(threads)
    q, k, v = (torch.from_numpy(a).requires_grad_() for a in arrays[:3])
    dout = torch.from_numpy(arrays[3])
    def step():
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.backward(dout)
        return out
else:
    import hipgrad as hg
    hg.set_num_threads(threads)
    q, k, v, dout = (hg.borrow(a) for a in arrays)
    def step():
        out, lse = hg.ops.attention(q, k, v, causal=True, impl=which)
        grads = hg.ops.attention_backward(dout, q, k, v, out, lse, causal=True, impl=which)
        return out, lse, grads
def status(key):
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith(key + ":"))
step()                     # warm-up: thread pool, code pages, first-touch of the libraries
import gc; gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")           # VmHWM (the peak RSS) := the current RSS
base = status("VmRSS")
assert status("VmHWM") <= base + (1 << 20), "clear_refs did not reset VmHWM"
keep = step()
peak = status("VmHWM")
outputs = (4 * T * D + T) * B * H * 4
print(json.dumps({"base": base, "peak": peak, "extra": peak - base, "outputs": outputs}))
"""


def run_memory(threads):
    rows = []
    # Fixed mmap threshold of a page: glibc then maps every block of a page or more on its own and
    # returns it to the system when it is freed (by default the threshold grows after a free and
    # such blocks stay on the heap), so the peak RSS of the measured call counts what that call
    # allocates, not what the warm-up left behind.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "4096"}
    for T in MEMORY_T:
        row = {"B": 1, "H": 4, "T": T, "D": 32}
        for which in ("handwritten", "vendor", "torch"):
            if which == "torch" and not _has_torch():
                continue
            res = subprocess.run([sys.executable, "-c", _CHILD, which, str(T), str(threads)],
                                 capture_output=True, text=True, env=env, timeout=600)
            if res.returncode != 0:
                row[which] = {"error": res.stderr.strip().splitlines()[-1:]}
                continue
            m = json.loads(res.stdout.strip().splitlines()[-1])
            row[which] = {"extra_mb": m["extra"] / 2**20,
                          "workspace_mb": max(0, m["extra"] - m["outputs"]) / 2**20,
                          "outputs_mb": m["outputs"] / 2**20}
        rows.append(row)
        print(f"T={T:5d}: " + "  ".join(
            f"{w} +{row[w]['extra_mb']:.1f} MB (beyond outputs {row[w]['workspace_mb']:.1f})"
            for w in ("handwritten", "vendor", "torch") if w in row and "extra_mb" in row[w]),
            flush=True)
    return rows


def _has_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    p.add_argument("--out", default=None, help="write <out>.json and <out>.md")
    a = p.parse_args(argv)
    hg.set_num_threads(a.threads)
    torch = None
    if _has_torch():
        import torch
        torch.set_num_threads(a.threads)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"device {a.device}, {a.threads} threads, torch {getattr(torch, '__version__', 'absent')}; "
          f"uptime: {uptime}", flush=True)
    result = {"device": a.device, "threads": a.threads, "uptime_start": uptime,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
              "torch": getattr(torch, "__version__", None),
              "timings": run_timings(a.device, a.repeats, torch)}
    if not a.no_memory and a.device == "cpu":
        result["memory"] = run_memory(a.threads)
    result["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"uptime: {result['uptime_end']}")
    if a.out:
        with open(a.out + ".json", "w") as f:
            json.dump(result, f, indent=1)
        with open(a.out + ".md", "w") as f:
            f.write(_markdown(result))
        print(f"wrote {a.out}.json and {a.out}.md")


def _markdown(r):
    lines = [f"# Attention forward + backward (causal), {r['device']}, {r['threads']} threads, {r['date']}",
             "", f"Load: `{r['uptime_start']}` at the start, `{r['uptime_end']}` at the end "
             "(a shared machine: re-run quietly before quoting).", "",
             "| B | H | T | D | handwritten ms | vendor (composed) ms | torch SDPA ms | torch / handwritten |",
             "|---|---|---|---|---|---|---|---|"]
    for t in r["timings"]:
        th = t.get("torch_sdpa", {}).get("ms_min")
        hw = t["handwritten"]["ms_min"]
        torch_ms = "" if th is None else f"{th:.2f}"
        ratio = "" if th is None else f"{th / hw:.2f}x"
        lines.append(f"| {t['B']} | {t['H']} | {t['T']} | {t['D']} | {hw:.2f} | "
                     f"{t['vendor']['ms_min']:.2f} | {torch_ms} | {ratio} |")
    if "memory" in r:
        lines += ["", "Peak RSS growth of one forward + backward after a warm-up call (B=1, H=4, D=32; "
                  "fresh process; VmHWM after /proc/self/clear_refs minus VmRSS before; MB, and in "
                  "parentheses beyond the outputs (out, lse, dq, dk, dv) the call keeps):", "",
                  "| T | handwritten | vendor (composed) | torch SDPA |", "|---|---|---|---|"]
        for m in r["memory"]:
            cell = lambda w: (f"{m[w]['extra_mb']:.1f} ({m[w]['workspace_mb']:.1f})"
                              if w in m and "extra_mb" in m[w] else "")
            lines.append(f"| {m['T']} | {cell('handwritten')} | {cell('vendor')} | {cell('torch')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
