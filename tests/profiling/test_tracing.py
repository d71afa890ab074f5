"""The phase trace records what ran, per phase and layer, and exports Chrome trace JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hipgrad as hg


def test_trace_records_ops_with_phase_layer_and_impl(tmp_path, rng):
    a = hg.tensor(rng.standard_normal((33, 17)))
    b = hg.tensor(rng.standard_normal((17, 9)))
    with hg.trace() as t:
        with hg.phase("forward"), hg.layer("fc1"):
            hg.ops.gemm(a, b, impl="handwritten")
        with hg.phase("backward"):
            hg.ops.gemm(a, b, impl="vendor")
    ops = [r for r in t.ops if not r["tuning"]]
    assert [(r["phase"], r["layer"], r["op"]) for r in ops] == [("forward", "fc1", "gemm"), ("backward", "", "gemm")]
    assert ops[0]["impl"].startswith("cpu.gemm") and ops[1]["impl"] == "cpu.openblas_sgemm"
    assert ops[0]["bytes_allocated"] == 33 * 9 * 4 and ops[1]["bytes_allocated"] == 33 * 9 * 4
    assert all(r["ms"] >= 0 and r["key"] == "M=33,N=9,K=17,ta=0,tb=0" for r in ops)
    totals = t.phase_totals()
    assert list(totals) == ["forward", "backward"] and totals["forward"]["ops"] == 1
    text = t.summary()
    assert "forward" in text and "backward" in text and max(map(len, text.splitlines())) <= 100
    path = tmp_path / "trace.json"
    t.save(str(path))
    events = json.loads(path.read_text())["traceEvents"]
    assert {e["name"] for e in events} >= {"forward", "backward", "gemm"}
    assert all(e["ph"] == "X" and e["dur"] >= 0 for e in events)


def test_nothing_is_recorded_outside_a_trace(rng):
    a = rng.standard_normal((4, 4)).astype(np.float32)
    with hg.trace() as t:
        pass
    hg.ops.gemm(a, a)
    assert t.ops == []
    with hg.trace() as t2:
        hg.ops.gemm(a, a)
    assert len([r for r in t2.ops if not r["tuning"]]) == 1


def test_plot_writes_png(tmp_path, rng):
    pytest.importorskip("matplotlib", reason="matplotlib not installed")
    a = rng.standard_normal((8, 8)).astype(np.float32)
    with hg.trace() as train:
        with hg.phase("forward"):
            hg.ops.gemm(a, a)
        with hg.phase("backward"):
            hg.ops.gemm(a, a)
    with hg.trace() as infer:
        with hg.phase("forward"):
            hg.ops.gemm(a, a)
    path = tmp_path / "phases.png"
    train.plot(str(path), other=infer)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nested_traces_each_record_their_ops(rng):
    """An inner trace neither clears nor ends the outer one: each gets the ops run while it was
    open (counted against a trace of the same calls on their own)."""
    from hipgrad import nn

    m = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    x = rng.standard_normal((3, 5)).astype(np.float32)
    m(x)  # tuned before any trace
    with hg.trace() as alone:
        m(x)
    per_call = [r["op"] for r in alone.ops]
    assert per_call
    with hg.trace() as outer:
        m(x)
        with hg.trace() as inner:
            m(x)
            with hg.trace() as innermost:
                m(x)
        m(x)
    assert [r["op"] for r in innermost.ops] == per_call
    assert [r["op"] for r in inner.ops] == per_call * 2
    assert [r["op"] for r in outer.ops] == per_call * 4
    assert outer.start_us <= inner.start_us <= innermost.end_us <= inner.end_us <= outer.end_us
