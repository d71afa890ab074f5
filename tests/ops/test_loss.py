from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check, to_dev
from tests.op_cases import OPS
from tests.reference import loss as ref

SIZES = OPS["softmax_cross_entropy"].params["sizes"]


def numeric_grad(f, x: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar f at x (float64 result)."""
    g = np.zeros(x.shape)
    flat = x.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f(x)
        flat[i] = old - eps
        lo = f(x)
        flat[i] = old
        g.reshape(-1)[i] = (hi - lo) / (2 * eps)
    return g


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("nc", SIZES)
def test_softmax_cross_entropy_matches_float64(device, impl, rng, nc, label_dtype):
    N, C = nc
    logits = (rng.standard_normal((N, C)) * 3).astype(np.float32)
    labels = rng.integers(0, C, N).astype(label_dtype)
    loss, probs = hg.ops.softmax_cross_entropy(to_dev(logits, device), to_dev(labels, device),
                                               impl=impl)
    want_loss, want_probs = ref.softmax_cross_entropy(logits, labels)
    assert loss.shape == () and loss.dtype == "float32" and loss.device == device
    check(loss, np.array(want_loss), rtol=1e-5, atol=1e-6, what=f"loss {nc}")
    check(probs, want_probs, rtol=1e-5, atol=1e-7, what=f"probs {nc}")
    dlogits = hg.ops.softmax_cross_entropy_backward(probs, to_dev(labels, device), impl=impl)
    check(dlogits, ref.softmax_cross_entropy_backward(want_probs, labels), rtol=1e-5, atol=1e-7,
          what=f"dlogits {nc}")


@pytest.mark.parametrize("shape", [(2, 7, 11), (1, 1, 1, 3), (4, 129, 256)])
def test_softmax_cross_entropy_accepts_nd_logits(device, impl, rng, shape):
    """(..., C) logits with (...) labels: the mean over every position; the gradient has the
    logits' shape and equals the flattened (N, C) one."""
    logits = (rng.standard_normal(shape) * 2).astype(np.float32)
    labels = rng.integers(0, shape[-1], shape[:-1]).astype(np.int64)
    loss, probs = hg.ops.softmax_cross_entropy(to_dev(logits, device), to_dev(labels, device),
                                               impl=impl)
    flat = logits.reshape(-1, shape[-1])
    want_loss, want_probs = ref.softmax_cross_entropy(flat, labels.reshape(-1))
    check(loss, np.array(want_loss), rtol=1e-5, atol=1e-6, what="nd loss")
    check(probs, want_probs.reshape(shape), rtol=1e-5, atol=1e-7, what="nd probs")
    dlogits = hg.ops.softmax_cross_entropy_backward(probs, to_dev(labels, device), impl=impl)
    want = ref.softmax_cross_entropy_backward(want_probs, labels.reshape(-1)).reshape(shape)
    check(dlogits, want, rtol=1e-5, atol=1e-8, what="nd dlogits")
    with pytest.raises(ValueError, match=r"labels must have shape"):
        hg.ops.softmax_cross_entropy(to_dev(logits, device), to_dev(labels.reshape(-1), device))


def test_softmax_cross_entropy_is_stable_for_large_logits(device, impl):
    logits = np.array([[1000.0, 0.0, -1000.0], [-500.0, 500.0, 499.0]], np.float32)
    labels = np.array([2, 1])
    loss, probs = hg.ops.softmax_cross_entropy(to_dev(logits, device), to_dev(labels, device),
                                               impl=impl)
    want_loss, want_probs = ref.softmax_cross_entropy(logits, labels)
    check(loss, np.array(want_loss), rtol=1e-6, what="large-logit loss")
    check(probs, want_probs, atol=1e-7, what="large-logit probs")


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
def test_softmax_cross_entropy_backward_matches_finite_differences(device, impl, rng, label_dtype):
    N, C = 3, 7
    logits = rng.standard_normal((N, C)).astype(np.float32)
    labels = rng.integers(0, C, N).astype(label_dtype)
    lab = to_dev(labels, device)

    def f(x):
        return float(hg.ops.softmax_cross_entropy(to_dev(x, device), lab, impl=impl)[0].numpy())

    _, probs = hg.ops.softmax_cross_entropy(to_dev(logits, device), lab, impl=impl)
    got = hg.ops.softmax_cross_entropy_backward(probs, lab, impl=impl)
    check(got, numeric_grad(f, logits.copy(), 1e-2), rtol=1e-2, atol=5e-4, what="xent fd")


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 31), (2, 3, 129), (5, 1, 1, 7)])
def test_softmax_matches_float64(device, impl, rng, shape):
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    y = hg.ops.softmax(to_dev(x, device), impl=impl)
    check(y, ref.softmax(x), rtol=1e-5, atol=1e-7, what=f"softmax {shape}")


def test_softmax_far_below_the_max_underflows_to_zero():
    x = np.array([0.0, -80.0, -200.0, -1e30], np.float32)
    y = hg.ops.softmax(x).numpy()
    np.testing.assert_allclose(y.astype(np.float64), ref.softmax(x), rtol=1e-5, atol=1e-37)
    assert y[0] == 1.0 and y[-1] < 1e-37


@pytest.mark.parametrize("shape", [(1,), (3,), (7, 31), (129, 3, 7), (100_003,)])
def test_mse_loss_and_backward_match_float64(device, impl, rng, shape):
    pred = rng.standard_normal(shape).astype(np.float32)
    target = rng.standard_normal(shape).astype(np.float32)
    p, t = to_dev(pred, device), to_dev(target, device)
    loss = hg.ops.mse_loss(p, t, impl=impl)
    assert loss.shape == ()
    check(loss, np.array(ref.mse_loss(pred, target)), rtol=1e-6, what=f"mse {shape}")
    check(hg.ops.mse_loss_backward(p, t, impl=impl), ref.mse_loss_backward(pred, target),
          rtol=1e-6, atol=1e-12, what=f"dmse {shape}")


def test_mse_loss_backward_matches_finite_differences(device, impl, rng):
    pred = rng.standard_normal((3, 7)).astype(np.float32)
    target = rng.standard_normal((3, 7)).astype(np.float32)
    t = to_dev(target, device)

    def f(x):
        return float(hg.ops.mse_loss(to_dev(x, device), t, impl=impl).numpy())

    got = hg.ops.mse_loss_backward(to_dev(pred, device), t, impl=impl)
    check(got, numeric_grad(f, pred.copy(), 1e-2), rtol=1e-2, atol=5e-4, what="mse fd")


def test_reductions_do_not_depend_on_the_thread_count(rng):
    logits = rng.standard_normal((4099, 37)).astype(np.float32)
    labels = rng.integers(0, 37, 4099)
    pred = rng.standard_normal(300_001).astype(np.float32)
    before = hg.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            hg.set_num_threads(threads)
            runs.append((hg.ops.softmax_cross_entropy(logits, labels)[0].numpy(),
                         hg.ops.mse_loss(pred, np.zeros_like(pred)).numpy()))
    finally:
        hg.set_num_threads(before)
    assert runs[0] == runs[1]


def test_loss_ops_report_the_cpu_kernel(impl, rng):
    hg.ops.softmax_cross_entropy(rng.standard_normal((2, 3)).astype(np.float32), [0, 2], impl=impl)
    ran = hg.ops.last_impl()
    assert ran["op"] == "softmax_cross_entropy" and ran["impl"].startswith("cpu.softmax_xent")
    assert ("vendor fallback" in ran["impl"]) == (impl == "vendor")


@pytest.mark.parametrize("bad", [-1, 5, 100])
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
def test_out_of_range_labels_raise(device, impl, bad, label_dtype):
    logits = to_dev(np.zeros((3, 5), np.float32), device)
    labels = to_dev(np.array([0, bad, 1], label_dtype), device)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, C\) = \[0, 5\)"):
        hg.ops.softmax_cross_entropy(logits, labels, impl=impl)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, C\) = \[0, 5\)"):
        hg.ops.softmax_cross_entropy_backward(logits, labels, impl=impl)


def test_loss_ops_reject_bad_inputs():
    x = np.zeros((3, 5), np.float32)
    with pytest.raises(TypeError, match="labels must be int64 or int32"):
        hg.ops.softmax_cross_entropy(x, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        hg.ops.softmax_cross_entropy(x, np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"logits must be \(N, C\) or \(\.\.\., C\)"):
        hg.ops.softmax_cross_entropy(np.zeros(5, np.float32), np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"logits must be \(N, C\) or \(\.\.\., C\) with every size >= 1"):
        hg.ops.softmax_cross_entropy(np.zeros((0, 5), np.float32), np.zeros(0, np.int64))
    with pytest.raises(TypeError, match="logits must be float32"):
        hg.ops.softmax_cross_entropy(x.astype(np.int64), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="probs must be float32"):
        hg.ops.softmax_cross_entropy_backward(x.astype(np.int32), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="softmax: x must have at least 1 dimension"):
        hg.ops.softmax(np.float32(1.0))
    with pytest.raises(ValueError, match=r"target must have shape \(3, 5\)"):
        hg.ops.mse_loss(x, np.zeros((5, 3), np.float32))
    with pytest.raises(TypeError, match="target must be float32"):
        hg.ops.mse_loss_backward(x, np.zeros((3, 5), np.int64))
    with pytest.raises(ValueError, match="pred must hold at least one element"):
        hg.ops.mse_loss(np.zeros(0, np.float32), np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="impl must be"):
        hg.ops.softmax(x, impl="fast")
