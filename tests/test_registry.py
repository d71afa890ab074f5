"""Every op in the native op table has a CPU handwritten kernel, a Python wrapper and tests."""

from __future__ import annotations

import inspect
import pathlib

import hipgrad as hg
import numpy as np
import pytest
from hipgrad import ops
from tests.op_cases import OPS
from tests.op_cases import REQUIRED_TENSORS as OP_CASES_REQUIRED

TESTS = pathlib.Path(__file__).parent


def _test_sources() -> str:
    files = [p for p in TESTS.rglob("test_*.py") if p.name != "test_registry.py"]
    return "\n".join(p.read_text() for p in files + [TESTS / "op_cases.py"])


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
                     "linear_bias_act": "test_linear_bias_act_every_candidate_matches_float64",
                     "conv2d_backward_data": "test_every_cpu_kernel_forced_by_name",
                     "conv2d_backward_weight": "test_every_cpu_kernel_forced_by_name",
                     "conv2d_bias_act": "test_residual_every_kernel_forced_by_name"}


def test_alternates_are_named_handwritten_kernels_with_tests():
    rows = hg.build_info()["kernels"]
    sources = _test_sources()
    # reference kernels (GPU v0s, run only when forced): tests/gpu/test_reference_kernels.py
    alternates = [r for r in rows if r["alternate"] and not r["note"].startswith("reference")]
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


# Every op wrapper with its required tensor arguments as the parameters of a call: from the op
# table (tests/op_cases.py), where an op added to hipgrad.ops must get its entry.
REQUIRED_TENSORS = OP_CASES_REQUIRED


def test_every_op_has_an_entry_in_the_op_table():
    wrappers = set(ops.__all__) - {"force_kernel", "last_impl"}
    missing, stale = wrappers - set(OPS), set(OPS) - wrappers
    assert not missing, f"ops without an entry in tests/op_cases.py: {sorted(missing)}"
    assert not stale, f"tests/op_cases.py entries for no hipgrad.ops function: {sorted(stale)}"


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_table_entry_is_complete(name):
    """Samples, a reference, a family suite, and a gradient check (the table's own, a test of
    that suite) or the reason there is none."""
    info = OPS[name]
    samples = info.samples(np.random.default_rng(0))
    assert samples, f"{name}: no samples"
    assert callable(info.reference) and callable(info.required)
    suite = TESTS / "ops" / f"test_{info.family}.py"
    assert suite.exists(), f"{name}: family suite {suite} missing"
    if info.gradient is None and not info.grad_check.startswith("none: "):
        assert f"def {info.grad_check}(" in suite.read_text(), (
            f"{name}: grad_check names {info.grad_check}, which {suite.name} does not define")
    for key, values in info.params.items():
        assert len(values) > 0, f"{name}: empty parameter list {key}"


@pytest.mark.parametrize("op", sorted(REQUIRED_TENSORS))
def test_none_for_a_required_tensor_names_the_op_and_argument(op):
    """Not pybind's 'incompatible function arguments' dump: a TypeError that names the argument
    and what it must be."""
    call = REQUIRED_TENSORS[op]
    names = list(inspect.signature(call).parameters)
    for missing in names:
        args = {n: None if n == missing else hg.tensor(np.ones((2, 2), np.float32)) for n in names}
        with pytest.raises(TypeError, match=rf"^{op}: {missing} (is updated in place and )?must be "
                                            rf"a hipgrad Tensor.*got None"):
            call(**args)


def test_every_nn_layer_has_a_case_in_the_table():
    """A layer exported by hipgrad.nn (losses aside: tests/nn/test_losses.py) appears in a case
    of LAYER_CASES (tests/op_cases.py), alone or inside a container."""
    from hipgrad import nn

    from tests.op_cases import LAYER_CASES

    seen = {type(m) for case in LAYER_CASES for m in case.make().modules()}
    layers = {getattr(nn, n) for n in nn.__all__ if isinstance(getattr(nn, n), type)
              and issubclass(getattr(nn, n), nn.Module)}
    missing = layers - seen - {nn.Module, nn.CrossEntropyLoss, nn.MSELoss}
    assert not missing, f"nn layers without a case in tests/op_cases.py: {sorted(c.__name__ for c in missing)}"
