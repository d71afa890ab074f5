"""The phase trace: what ran in each step of training and inference, where, and for how long.

    with hg.trace() as t:
        with hg.phase("forward"):
            y = model(x)
    print(t.summary()); t.save("trace.json"); t.plot("phases.png")

Every op call inside the block is recorded by the native dispatcher (op, kernel or library call
that ran, shapes key, device, start, duration, bytes allocated) together with the phase and layer
set by `phase()` / `layer()`. Phase spans themselves are timed too, so Python-side work (data
loading, bookkeeping) shows in the phase totals. On a GPU the device is synchronised around each
op while tracing, so durations are device times. Off, the trace costs one atomic load per op.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterator

from .._native import _C

PHASES = ("data", "forward", "loss", "backward", "update")

_active: list["Trace"] = []
_lock = threading.Lock()  # around the native recording's start/stop and _active


@dataclass
class Span:
    phase: str
    start_us: float
    end_us: float = 0.0

    @property
    def ms(self) -> float:
        return (self.end_us - self.start_us) / 1000.0


@dataclass
class Trace:
    """Records of one traced block: `ops` (one dict per op call) and `spans` (phase intervals)."""

    ops: list[dict] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    start_us: float = 0.0
    end_us: float = 0.0

    @property
    def total_ms(self) -> float:
        return (self.end_us - self.start_us) / 1000.0

    def phase_totals(self) -> "OrderedDict[str, dict]":
        """Per phase: wall ms (its spans), op ms, op count, bytes allocated."""
        out: OrderedDict[str, dict] = OrderedDict()
        for s in self.spans:
            row = out.setdefault(s.phase, {"ms": 0.0, "op_ms": 0.0, "ops": 0, "bytes": 0})
            row["ms"] += s.ms
        for r in self.ops:
            if r["tuning"]:
                continue
            row = out.setdefault(r["phase"] or "(none)", {"ms": 0.0, "op_ms": 0.0, "ops": 0, "bytes": 0})
            row["op_ms"] += r["ms"]
            row["ops"] += 1
            row["bytes"] += r["bytes_allocated"]
        for row in out.values():
            row["ms"] = max(row["ms"], row["op_ms"])
        return out

    def summary(self, width: int = 100) -> str:
        """A table grouped by phase, each phase's share of the traced time, then the ops."""
        totals = self.phase_totals()
        whole = sum(r["ms"] for r in totals.values()) or 1e-9
        lines = [f"{'phase':<10} {'time ms':>9} {'share':>6} {'ops':>5} {'op ms':>9} {'allocated':>11}"]
        for name, r in totals.items():
            lines.append(f"{name:<10} {r['ms']:>9.3f} {100 * r['ms'] / whole:>5.1f}% {r['ops']:>5} "
                         f"{r['op_ms']:>9.3f} {_bytes(r['bytes']):>11}")
        lines.append("")
        lines.append(f"{'phase':<9} {'layer':<14} {'op':<24} {'ran':<{width - 62}} {'ms':>8}")
        for r in self.ops:
            if r["tuning"]:
                continue
            ran = r["impl"] if len(r["impl"]) <= width - 62 else r["impl"][: width - 65] + "..."
            lines.append(f"{r['phase'][:9]:<9} {r['layer'][:14]:<14} {r['op'][:24]:<24} "
                         f"{ran:<{width - 62}} {r['ms']:>8.3f}")
        return "\n".join(line[:width] for line in lines)

    def chrome_events(self) -> list[dict]:
        events = []
        for s in self.spans:
            events.append({"name": s.phase, "cat": "phase", "ph": "X", "ts": s.start_us,
                           "dur": s.end_us - s.start_us, "pid": 0, "tid": 0})
        for r in self.ops:
            events.append({"name": r["op"], "cat": "tuning" if r["tuning"] else "op", "ph": "X",
                           "ts": r["start_us"], "dur": r["ms"] * 1000.0, "pid": 0, "tid": 1,
                           "args": {"impl": r["impl"], "key": r["key"], "device": r["device"],
                                    "phase": r["phase"], "layer": r["layer"],
                                    "bytes_allocated": r["bytes_allocated"]}})
        return events

    def save(self, path: str) -> None:
        """Chrome trace-event JSON (opens in Perfetto or chrome://tracing)."""
        with open(path, "w") as f:
            json.dump({"traceEvents": self.chrome_events(), "displayTimeUnit": "ms"}, f)

    def plot(self, path: str, other: "Trace | None" = None, labels: tuple[str, str] = ("training", "inference")) -> None:
        """Per-phase bars (ms); with `other`, its bars beside this one's (training vs inference)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        traces = [(labels[0], self)] + ([(labels[1], other)] if other is not None else [])
        fig, ax = plt.subplots(figsize=(7, 3.5))
        bottom_names = [name for name, _ in traces]
        lefts = [0.0] * len(traces)
        colors = {"data": "#999999", "forward": "#4c72b0", "loss": "#dd8452", "backward": "#c44e52",
                  "update": "#55a868"}
        for ph in list(PHASES) + ["(none)"]:
            widths = [t.phase_totals().get(ph, {}).get("ms", 0.0) for _, t in traces]
            if not any(widths):
                continue
            ax.barh(bottom_names, widths, left=lefts, label=ph, color=colors.get(ph, "#8172b2"))
            lefts = [a + b for a, b in zip(lefts, widths)]
        ax.set_xlabel("milliseconds")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("time per phase")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@contextlib.contextmanager
def trace() -> Iterator[Trace]:
    """Record every op call and phase span inside the block. Blocks may nest (or overlap from
    several threads): the native recorder runs while any is open, and each op recorded goes to
    every block open at the time."""
    t = Trace(start_us=_C.steady_us())
    with _lock:
        _drain()  # what ran so far belongs to the blocks already open
        _active.append(t)
        _C.trace_start()
    try:
        yield t
    finally:
        with _lock:
            _drain()
            t.end_us = _C.steady_us()
            _active.remove(t)
            if _active:
                _C.trace_start()


def _drain() -> None:
    """Stop the native recorder (if on) and hand its records to every open block."""
    if _active:
        rows = list(_C.trace_stop())
        for t in _active:
            t.ops.extend(rows)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Label the ops inside as one phase (data, forward, loss, backward, update)."""
    old_phase, old_layer = _C.trace_context()
    _C.trace_set_context(name, old_layer)
    span = Span(name, _C.steady_us()) if _active else None
    try:
        yield
    finally:
        if span is not None:
            span.end_us = _C.steady_us()
            with _lock:  # _active may change under another thread's trace()
                for t in _active:
                    t.spans.append(span)
        _C.trace_set_context(old_phase, old_layer)


@contextlib.contextmanager
def layer(name: str) -> Iterator[None]:
    """Label the ops inside with a layer name (nn.Module does this for its children)."""
    old_phase, old_layer = _C.trace_context()
    _C.trace_set_context(old_phase, name)
    try:
        yield
    finally:
        _C.trace_set_context(old_phase, old_layer)
