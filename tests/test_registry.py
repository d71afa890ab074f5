"""Every op in the native op table has a CPU handwritten kernel, a Python wrapper and tests."""

from __future__ import annotations

import inspect
import pathlib

import hipgrad as hg
import numpy as np
import pytest
from hipgrad import ops

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


# Every op wrapper with its required tensor arguments as the parameters of a call (the other
# arguments fixed). An op added to hipgrad.ops must be added here.
REQUIRED_TENSORS = {
    "activation": lambda x: ops.activation(x, "relu"),
    "activation_backward": lambda dy, x, y: ops.activation_backward(dy, x, y, "relu"),
    "adam_step": lambda param, grad, m, v: ops.adam_step(param, grad, m, v, step=1, lr=0.1),
    "add": lambda a, b: ops.add(a, b),
    "add_": lambda a, b: ops.add_(a, b),
    "attention": lambda q, k, v: ops.attention(q, k, v),
    "attention_backward": lambda dout, q, k, v, out, lse: ops.attention_backward(
        dout, q, k, v, out, lse),
    "bmm": lambda a, b: ops.bmm(a, b),
    "clip_grad_norm_": lambda grads: ops.clip_grad_norm_(grads, 1.0),
    "layer_norm": lambda x: ops.layer_norm(x),
    "layer_norm_backward": lambda dy, x, mean, rstd: ops.layer_norm_backward(dy, x, None, mean, rstd),
    "scale_": lambda x: ops.scale_(x, 2.0),
    "sum_squares": lambda tensors: ops.sum_squares(tensors),
    "avg_pool2d": lambda x: ops.avg_pool2d(x, 2),
    "avg_pool2d_backward": lambda dy: ops.avg_pool2d_backward(dy, (1, 1, 2, 2), 2),
    "batch_norm": lambda x, gamma, beta, running_mean, running_var: ops.batch_norm(
        x, gamma, beta, running_mean, running_var, training=True),
    "batch_norm_backward": lambda dy, x, gamma, save_mean, save_invstd: ops.batch_norm_backward(
        dy, x, gamma, save_mean, save_invstd),
    "bias_add": lambda x, bias: ops.bias_add(x, bias),
    "bias_backward": lambda dy: ops.bias_backward(dy),
    "conv2d": lambda x, w: ops.conv2d(x, w),
    "conv2d_backward_data": lambda dy, w: ops.conv2d_backward_data(dy, w, (1, 1, 2, 2)),
    "conv2d_backward_weight": lambda dy, x: ops.conv2d_backward_weight(dy, x, (1, 1, 1, 1)),
    "conv2d_bias_act": lambda x, w: ops.conv2d_bias_act(x, w),
    "dropout": lambda x: ops.dropout(x, 0.5, 1),
    "dropout_backward": lambda dy, mask: ops.dropout_backward(dy, mask, 0.5),
    "embedding": lambda weight, idx: ops.embedding(weight, idx),
    "embedding_backward": lambda dy, idx: ops.embedding_backward(dy, idx, 3),
    "fill_": lambda t: ops.fill_(t, 1.0),
    "gemm": lambda a, b: ops.gemm(a, b),
    "linear_bias_act": lambda x, w: ops.linear_bias_act(x, w),
    "linear_bias_act_packed": lambda x, packed: ops.linear_bias_act_packed(x, packed, n=2),
    "max_pool2d": lambda x: ops.max_pool2d(x, 2),
    "max_pool2d_backward": lambda dy, argmax: ops.max_pool2d_backward(dy, argmax, (1, 1, 2, 2)),
    "mse_loss": lambda pred, target: ops.mse_loss(pred, target),
    "mse_loss_backward": lambda pred, target: ops.mse_loss_backward(pred, target),
    "pack_linear_weight": lambda w: ops.pack_linear_weight(w),
    "qconv2d": lambda xq, wq, w_scale: ops.qconv2d(xq, wq, 1.0, w_scale),
    "qgemm": lambda xq, wq, w_scale: ops.qgemm(xq, wq, 1.0, w_scale),
    "quantize": lambda x: ops.quantize(x, 1.0),
    "sgd_step": lambda param, grad: ops.sgd_step(param, grad, None, lr=0.1),
    "softmax": lambda x: ops.softmax(x),
    "softmax_cross_entropy": lambda logits, labels: ops.softmax_cross_entropy(logits, labels),
    "softmax_cross_entropy_backward": lambda probs, labels: ops.softmax_cross_entropy_backward(
        probs, labels),
}


def test_every_op_table_entry_is_listed_for_the_none_check():
    wrappers = set(ops.__all__) - {"force_kernel", "last_impl"}
    assert wrappers == set(REQUIRED_TENSORS), wrappers ^ set(REQUIRED_TENSORS)


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
