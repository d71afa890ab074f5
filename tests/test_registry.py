"""Every op in the native op table has a CPU handwritten kernel, a Python wrapper and tests."""

from __future__ import annotations

import pathlib

import hipgrad as hg

TESTS = pathlib.Path(__file__).parent


def _test_sources() -> str:
    return "\n".join(p.read_text() for p in TESTS.rglob("test_*.py") if p.name != "test_registry.py")


def test_every_op_has_a_cpu_kernel_and_a_python_wrapper_and_a_test():
    kernels = {(r["op"], r["backend"], r["variant"]) for r in hg.build_info()["kernels"]}
    sources = _test_sources()
    alias = {"conv2d_forward": "conv2d"}
    for op in hg._C.op_names():
        name = alias.get(op, op)
        assert (op, "cpu", "handwritten") in kernels, f"{op}: no CPU handwritten kernel registered"
        assert (op, "cpu", "vendor") in kernels, f"{op}: CPU vendor variant neither registered nor declared a fallback"
        assert hasattr(hg.ops, name), f"{op}: no hipgrad.ops.{name} wrapper"
        assert f"ops.{name}(" in sources, f"{op}: no test calls hg.ops.{name}"


# Ops whose tests run every candidate by name (hg.ops.force_kernel); an op that gains an
# alternate must be added here with such a test.
ALTERNATES_TESTED = {"gemm": "test_gemm_every_alternate_matches_float64",
                     "conv2d_forward": "test_conv2d_every_forward_candidate_matches_float64",
                     "linear_bias_act": "test_linear_bias_act_every_candidate_matches_float64"}


def test_alternates_are_named_handwritten_kernels_with_tests():
    rows = hg.build_info()["kernels"]
    sources = _test_sources()
    alternates = [r for r in rows if r["alternate"]]
    assert any(r["op"] == "gemm" and r["backend"] == "cpu" for r in alternates)
    for r in alternates:
        assert r["variant"] == "handwritten" and r["kernel"].startswith(r["backend"] + "."), r
        assert r["op"] in ALTERNATES_TESTED, f"{r['op']}: alternate {r['kernel']} has no test"
        assert ALTERNATES_TESTED[r["op"]] in sources
    for op in {r["op"] for r in rows}:
        for backend in ("cpu", "gpu"):
            names = [r["kernel"] for r in rows if r["op"] == op and r["backend"] == backend
                     and "fallback" not in r["note"]]
            assert len(names) == len(set(names)), f"{op} {backend}: duplicate kernel names {names}"
