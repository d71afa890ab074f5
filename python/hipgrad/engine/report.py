"""What an engine holds and uses: weight digest and bytes, a readable description, and the
memory report (planned buffers next to the measured peak)."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from .. import runtime
from ..tensor import Tensor, try_borrow
from .steps import Graph


def weights_digest(plan: Graph) -> str:
    """SHA-256 over every weight the plan holds, read back from the device."""
    h = hashlib.sha256()
    for s in plan:
        for k in sorted(s.tensors):
            h.update(f"{s.name}.{k}".encode())
            h.update(s.tensors[k].numpy().tobytes())
    return h.hexdigest()


def weight_bytes(plan: Graph) -> int:
    """Bytes of the weights the plan holds on its device."""
    return sum(v.nbytes for s in plan for v in s.tensors.values())


def describe(plan: Graph, header: str, int8: bool = False) -> str:
    """`header`, then one line per step in run order: name, kind, fused residual and
    activation, folded BatchNorm, and the values it reads where that is not just the value
    written by the line before (a branch, a residual, a concat). With `int8`, which steps
    compute in int8 and that the others run on dequantized float32 values."""
    lines = [header]
    prev = plan.inputs[:1]
    for s in plan:
        residual = " + residual" if s.kind == "conv" and len(s.inputs) > 1 else ""
        extra = f" + {s.attrs['act']}" if s.attrs.get("act") else ""
        folded = " (BatchNorm folded)" if s.attrs.get("folded_bn") else ""
        q = ""
        if int8 and s.kind in ("conv", "linear"):  # int8, or kept in float32 (quantize.mark_fp32)
            q = f" [fp32: {s.attrs['fp32']}]" if s.attrs.get("fp32") else " [int8]"
        reads = "" if s.inputs == prev else f"  <- {', '.join(s.inputs)}"
        lines.append(f"  {s.name}: {s.kind}{residual}{extra}{folded}{q}{reads}")
        prev = s.outputs[:1]
    if plan.outputs != prev:
        lines.append(f"  outputs: {', '.join(plan.outputs)}")
    if int8:
        lines.append("  (int8: conv and linear steps but those marked fp32; add, concat and the other "
                     "steps run in float32 on their dequantized outputs)")
    return "\n".join(lines)


def memory_line(plan: Any) -> str:
    """One line on a MemoryPlan: its buffers and bytes against the sum of all intermediate values."""
    kib = 1024.0
    return (f"  memory for a batch of {tuple(plan.input_shape)}: {plan.slots} activation buffers, "
            f"{plan.activation_bytes / kib:.1f} KiB planned for {plan.intermediate_bytes / kib:.1f} KiB "
            f"of intermediate values (buffers reused after each value's last reader)"
            + (f", int8 scratch {plan.int8_numel / kib:.1f} KiB" if plan.int8_numel else ""))


def stages(engine: Any, arr: np.ndarray | Tensor, bs: int) -> bool:
    """Whether engine.forward(arr) (as check_input returns it) copies its batches into the
    arenas' staging buffers: a tensor on the engine's device in one batch is read as it is, and
    so on the CPU is a NumPy batch it can wrap (float32, C-contiguous: Arena.stage)."""
    if isinstance(arr, Tensor):
        if arr.device == engine.device and bs >= arr.shape[0]:
            return False
        if not engine.device.startswith("cpu"):
            return True
        arr = arr.numpy()
    if not engine.device.startswith("cpu"):
        return True
    return try_borrow(arr[:bs], "cpu", engine._input_dtype()) is None


def memory_report(engine: Any, x: Any = None) -> dict:
    """See InferenceEngine.memory_report."""
    weights = engine.weight_bytes()
    report: dict[str, Any] = {"device": engine.device, "precision": engine.precision,
                              "plan_memory": engine.plan_memory, "weights_bytes": weights}
    if x is not None:
        arr = engine._check_input(x)
        n = arr.shape[0]
        bs = min(engine.batch_size or n, n)
        engine._arenas.drop()
        runtime.synchronize(engine.device)
        base = runtime.memory_stats(engine.device)["current"]
        runtime.reset_peak_memory_stats(engine.device)
        engine.forward(arr)
        runtime.synchronize(engine.device)
        peak = int(runtime.memory_stats(engine.device)["peak"] - base)
        measured = {"input_shape": list(arr.shape), "peak_above_live_bytes": peak,
                    "peak_bytes": weights + peak}
        if engine.plan_memory:  # one buffer set per chunk shape (the last chunk may be smaller)
            chunks = {bs} | ({n % bs} if n % bs else set())
            plans = [engine.memory_plan((c,) + tuple(arr.shape[1:])) for c in chunks]
            staged = stages(engine, arr, bs)
            measured["planned_peak_bytes"] = weights + sum(
                p.activation_bytes + p.int8_numel
                + (math.prod(p.input_shape) * np.dtype(p.input_dtype).itemsize if staged else 0)
                for p in plans)
        report["measured"] = measured
    report["plans"] = [dict(plan.as_dict(), idle_sets=idle) for plan, idle in engine._arenas.plans()]
    report["buffer_sets_allocated"] = engine._arenas.arenas_created
    report["buffers_allocated"] = engine._arenas.buffers_allocated
    report["buffer_bytes_allocated"] = engine._arenas.bytes_allocated
    return report
