from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check, to_dev
from tests.op_cases import OPS
from tests.ops.test_loss import numeric_grad
from tests.reference import layers as ref

NO_TORCH = "torch is not installed (pip install torch==2.13.0)"

BN_SHAPES = OPS["batch_norm"].params["shapes"]
EMBEDDING_CASES = OPS["embedding"].params["cases"]


def _running(C: int, rng, device: str):
    rm = rng.standard_normal(C).astype(np.float32)
    rv = rng.uniform(0.5, 2.0, C).astype(np.float32)
    return rm, rv, to_dev(rm, device), to_dev(rv, device)


# ---- add, add_, fill_ ------------------------------------------------------------------------
@pytest.mark.parametrize("shape", OPS["add"].params["shapes"])
def test_add_add_and_fill_match_float64(device, impl, rng, shape):
    a = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32)
    alpha = float(rng.uniform(-2, 2))
    ta, tb = to_dev(a, device), to_dev(b, device)
    want = a.astype(np.float64) + np.float64(np.float32(alpha)) * b
    check(hg.ops.add(ta, tb, alpha=alpha, impl=impl), want, rtol=1e-6, atol=1e-6, what="add")
    check(hg.ops.add(ta, tb, impl=impl), a.astype(np.float64) + b, rtol=1e-6, what="add alpha=1")
    assert hg.ops.add_(ta, tb, alpha=alpha, impl=impl) is ta
    check(ta, want, rtol=1e-6, atol=1e-6, what="add_")
    assert hg.ops.fill_(tb, -2.5, impl=impl) is tb
    check(tb, np.full(shape, -2.5), rtol=0, atol=0, what="fill_")


def test_add_rejects_bad_inputs():
    a = hg.tensor(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"b must have shape \(2, 3\)"):
        hg.ops.add(a, np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="b must be float32"):
        hg.ops.add_(a, np.ones((2, 3), np.int64))
    with pytest.raises(TypeError, match="a is updated in place and must be a hipgrad Tensor"):
        hg.ops.add_(np.ones((2, 3), np.float32), a)
    with pytest.raises(TypeError, match="fill_: t must be float32"):
        hg.ops.fill_(hg.zeros(3, dtype=np.int64), 1.0)


# ---- batch norm ------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_matches_float64(device, impl, rng, shape, training):
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 3).astype(np.float32)
    gamma = rng.standard_normal(C).astype(np.float32)
    beta = rng.standard_normal(C).astype(np.float32)
    rm, rv, trm, trv = _running(C, rng, device)
    y, mean, invstd = hg.ops.batch_norm(to_dev(x, device), to_dev(gamma, device),
                                        to_dev(beta, device), trm, trv, training=training,
                                        momentum=0.2, eps=1e-4, impl=impl)
    want = ref.batch_norm(x, gamma, beta, rm, rv, training, momentum=0.2, eps=1e-4)
    check(y, want[0], rtol=1e-4, atol=1e-4, what="y")
    check(mean, want[1], rtol=1e-5, atol=1e-6, what="save_mean")
    check(invstd, want[2], rtol=1e-4, what="save_invstd")
    check(trm, want[3], rtol=1e-5, atol=1e-6, what="running_mean")
    check(trv, want[4], rtol=1e-5, what="running_var")
    dy = rng.standard_normal(shape).astype(np.float32)
    dx, dgamma, dbeta = hg.ops.batch_norm_backward(to_dev(dy, device), to_dev(x, device),
                                                   to_dev(gamma, device), mean, invstd,
                                                   training=training, impl=impl)
    want_dx, want_dg, want_db = ref.batch_norm_backward(dy, x, gamma, want[1], want[2], training)
    M = x.size // C
    check(dx, want_dx, rtol=1e-3, atol=1e-4, what="dx")
    check(dgamma, want_dg, rtol=1e-4, atol=1e-5 * M, what="dgamma")
    check(dbeta, want_db, rtol=1e-4, atol=1e-5 * M, what="dbeta")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 2, 3)])
def test_batch_norm_backward_matches_finite_differences(device, impl, rng, shape, training):
    C = shape[1]
    x = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, C).astype(np.float32)
    beta = rng.standard_normal(C).astype(np.float32)
    w = rng.standard_normal(shape)
    rm, rv, _, _ = _running(C, rng, device)

    def forward(x_, gamma_, beta_):
        return hg.ops.batch_norm(to_dev(x_, device), to_dev(gamma_, device), to_dev(beta_, device),
                                 to_dev(rm, device), to_dev(rv, device), training=training,
                                 impl=impl)

    def objective(x_, gamma_, beta_):
        return float((forward(x_, gamma_, beta_)[0].numpy() * w).sum())

    _, mean, invstd = forward(x, gamma, beta)
    dx, dgamma, dbeta = hg.ops.batch_norm_backward(
        to_dev(w.astype(np.float32), device), to_dev(x, device), to_dev(gamma, device), mean,
        invstd, training=training, impl=impl)
    tol = {"rtol": 2e-2, "atol": 2e-3}
    check(dx, numeric_grad(lambda v: objective(v, gamma, beta), x.copy(), 1e-2), **tol,
          what="dx fd")
    check(dgamma, numeric_grad(lambda v: objective(x, v, beta), gamma.copy(), 1e-2), **tol,
          what="dgamma fd")
    check(dbeta, numeric_grad(lambda v: objective(x, gamma, v), beta.copy(), 1e-2), **tol,
          what="dbeta fd")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(7, 3), (4, 3, 5, 7)])
def test_batch_norm_matches_torch(rng, shape, training):
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    F = torch.nn.functional
    C = shape[1]
    x = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.standard_normal(C).astype(np.float32)
    beta = rng.standard_normal(C).astype(np.float32)
    rm, rv, trm, trv = _running(C, rng, "cpu")
    torch_rm, torch_rv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tg = torch.from_numpy(gamma.copy()).requires_grad_(True)
    tb = torch.from_numpy(beta.copy()).requires_grad_(True)
    ty = F.batch_norm(tx, torch_rm, torch_rv, tg, tb, training=training, momentum=0.3, eps=1e-3)
    dy = rng.standard_normal(shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    y, mean, invstd = hg.ops.batch_norm(x, gamma, beta, trm, trv, training=training, momentum=0.3,
                                        eps=1e-3)
    check(y, ty.detach().numpy().astype(np.float64), rtol=1e-5, atol=1e-5, what="y vs torch")
    check(trm, torch_rm.numpy().astype(np.float64), rtol=1e-6, atol=1e-6, what="running_mean")
    check(trv, torch_rv.numpy().astype(np.float64), rtol=1e-6, atol=1e-6, what="running_var")
    dx, dgamma, dbeta = hg.ops.batch_norm_backward(dy, x, gamma, mean, invstd, training=training)
    check(dx, tx.grad.numpy().astype(np.float64), rtol=1e-4, atol=1e-5, what="dx vs torch")
    check(dgamma, tg.grad.numpy().astype(np.float64), rtol=1e-4, atol=1e-5, what="dgamma vs torch")
    check(dbeta, tb.grad.numpy().astype(np.float64), rtol=1e-5, atol=1e-5, what="dbeta vs torch")


def test_batch_norm_rejects_bad_inputs():
    x = np.ones((4, 3), np.float32)
    c3 = np.ones(3, np.float32)

    def running():
        return hg.tensor(np.zeros(3, np.float32)), hg.tensor(np.ones(3, np.float32))

    with pytest.raises(ValueError, match=r"x must be \(N, C\) or \(N, C, H, W\)"):
        hg.ops.batch_norm(np.ones((4, 3, 2), np.float32), c3, c3, *running(), training=True)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        hg.ops.batch_norm(x, np.ones(4, np.float32), c3, *running(), training=True)
    with pytest.raises(TypeError, match="beta must be float32"):
        hg.ops.batch_norm(x, c3, np.ones(3, np.int64), *running(), training=True)
    with pytest.raises(ValueError, match=r"running_var must have shape \(3,\)"):
        hg.ops.batch_norm(x, c3, c3, running()[0], hg.zeros(2), training=True)
    with pytest.raises(TypeError, match="running_mean is updated in place"):
        hg.ops.batch_norm(x, c3, c3, np.zeros(3, np.float32), running()[1], training=True)
    with pytest.raises(ValueError, match="more than one value per channel"):
        hg.ops.batch_norm(np.ones((1, 3), np.float32), c3, c3, *running(), training=True)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        hg.ops.batch_norm(x, c3, c3, *running(), training=True, momentum=1.5)
    with pytest.raises(ValueError, match=r"dy must have shape \(4, 3\)"):
        hg.ops.batch_norm_backward(np.ones((3, 4), np.float32), x, c3, c3, c3)
    with pytest.raises(ValueError, match=r"save_invstd must have shape \(3,\)"):
        hg.ops.batch_norm_backward(x, x, c3, c3, np.ones(2, np.float32))


# ---- dropout ---------------------------------------------------------------------------------
@pytest.mark.parametrize("p", OPS["dropout"].params["ps"])
@pytest.mark.parametrize("shape", OPS["dropout"].params["shapes"])
def test_dropout_applies_its_mask(device, impl, rng, shape, p):
    x = rng.standard_normal(shape).astype(np.float32)
    seed = int(rng.integers(0, 2**63))
    y, mask = hg.ops.dropout(to_dev(x, device), p, seed, impl=impl)
    assert mask.dtype == "uint8" and mask.shape == shape
    m = mask.numpy()
    assert set(np.unique(m)) <= {0, 1}
    if p == 0.0:
        assert m.all()
    check(y, ref.dropout_apply(x, m, np.float32(p)), rtol=1e-6, atol=0, what="dropout y")
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = hg.ops.dropout_backward(to_dev(dy, device), mask, p, impl=impl)
    check(dx, ref.dropout_apply(dy, m, np.float32(p)), rtol=1e-6, atol=0, what="dropout dx")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.75])
def test_dropout_mask_fraction_and_seeds(device, impl, p):
    x = to_dev(np.ones(1_000_003, np.float32), device)
    _, m1 = hg.ops.dropout(x, p, 1234, impl=impl)
    _, m2 = hg.ops.dropout(x, p, 1234, impl=impl)
    _, m3 = hg.ops.dropout(x, p, 1235, impl=impl)
    a1, a3 = m1.numpy(), m3.numpy()
    n = a1.size
    assert abs(a1.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)  # five standard deviations
    np.testing.assert_array_equal(a1, m2.numpy())
    assert (a1 != a3).mean() > 0.5 * 2 * p * (1 - p)  # independent masks disagree often
    # A mask does not depend on the thread count (a pure function of seed and index).
    before = hg.get_num_threads()
    try:
        hg.set_num_threads(1)
        np.testing.assert_array_equal(hg.ops.dropout(x, p, 1234, impl=impl)[1].numpy(), a1)
    finally:
        hg.set_num_threads(before)


def test_dropout_backward_matches_finite_differences(device, impl, rng):
    x = rng.standard_normal((3, 7)).astype(np.float32)
    w = rng.standard_normal((3, 7))
    p, seed = 0.4, 77

    def objective(v):
        return float((hg.ops.dropout(to_dev(v, device), p, seed, impl=impl)[0].numpy() * w).sum())

    _, mask = hg.ops.dropout(to_dev(x, device), p, seed, impl=impl)
    dx = hg.ops.dropout_backward(to_dev(w.astype(np.float32), device), mask, p, impl=impl)
    check(dx, numeric_grad(objective, x.copy(), 1e-2), rtol=1e-2, atol=1e-3, what="dropout fd")


def test_dropout_rejects_bad_inputs():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        hg.ops.dropout(x, 1.0, 0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        hg.ops.dropout(x, -0.1, 0)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*64\)"):
        hg.ops.dropout(x, 0.5, -1)
    with pytest.raises(TypeError, match="seed must be an int"):
        hg.ops.dropout(x, 0.5, 1.5)
    with pytest.raises(TypeError, match="mask must be uint8"):
        hg.ops.dropout_backward(x, np.ones(4, np.float32), 0.5)
    with pytest.raises(ValueError, match=r"mask must have shape \(4,\)"):
        hg.ops.dropout_backward(x, np.ones(3, np.uint8), 0.5)
    with pytest.raises(ValueError, match=r"dropout_backward: p must be in \[0, 1\)"):
        hg.ops.dropout_backward(x, np.ones(4, np.uint8), 1.0)


# ---- embedding -------------------------------------------------------------------------------
@pytest.mark.parametrize("num, dim, idx_shape", EMBEDDING_CASES)
def test_embedding_and_backward_match_float64(device, impl, rng, num, dim, idx_shape):
    weight = rng.standard_normal((num, dim)).astype(np.float32)
    idx = rng.integers(0, num, idx_shape)
    y = hg.ops.embedding(to_dev(weight, device), to_dev(idx, device), impl=impl)
    check(y, ref.embedding(weight, idx), rtol=0, atol=0, what="embedding")
    dy = rng.standard_normal(idx_shape + (dim,)).astype(np.float32)
    dw = hg.ops.embedding_backward(to_dev(dy, device), to_dev(idx, device), num, impl=impl)
    check(dw, ref.embedding_backward(dy, idx, num), rtol=1e-5, atol=1e-5, what="embedding dW")


def test_embedding_backward_is_deterministic_and_zero_for_unused_rows(rng):
    idx = np.concatenate([np.zeros(5000, np.int64), rng.integers(2, 9, 5000)])
    dy = rng.standard_normal((idx.size, 64)).astype(np.float32)
    before = hg.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 2):
            hg.set_num_threads(threads)
            runs.append(hg.ops.embedding_backward(dy, idx, 10).numpy())
    finally:
        hg.set_num_threads(before)
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[1], runs[2])
    assert not runs[0][1].any() and not runs[0][9].any()


def test_embedding_backward_matches_finite_differences(device, impl, rng):
    weight = rng.standard_normal((5, 3)).astype(np.float32)
    idx = np.array([[0, 4, 4], [2, 0, 4]])
    w = rng.standard_normal((2, 3, 3))
    ti = to_dev(idx, device)

    def objective(v):
        return float((hg.ops.embedding(to_dev(v, device), ti, impl=impl).numpy() * w).sum())

    dw = hg.ops.embedding_backward(to_dev(w.astype(np.float32), device), ti, 5, impl=impl)
    check(dw, numeric_grad(objective, weight.copy(), 1e-2), rtol=1e-3, atol=1e-3, what="emb fd")


@pytest.mark.parametrize("bad", [-1, 10, 2**40])
def test_embedding_out_of_range_raises(device, impl, bad):
    weight = to_dev(np.ones((10, 4), np.float32), device)
    idx = to_dev(np.array([[1, 2], [bad, 3]]), device)
    with pytest.raises(ValueError, match=r"idx must lie in \[0, num\) = \[0, 10\)"):
        hg.ops.embedding(weight, idx, impl=impl)
    with pytest.raises(ValueError, match=r"idx must lie in \[0, num\) = \[0, 10\)"):
        hg.ops.embedding_backward(to_dev(np.ones((2, 2, 4), np.float32), device), idx, 10,
                                  impl=impl)


def test_embedding_rejects_bad_inputs():
    w = np.ones((10, 4), np.float32)
    with pytest.raises(TypeError, match="idx must be int64"):
        hg.ops.embedding(w, np.array([1, 2], np.int32))
    with pytest.raises(ValueError, match="weight must have 2 dimensions"):
        hg.ops.embedding(np.ones(10, np.float32), np.array([1]))
    with pytest.raises(ValueError, match=r"dy must have shape idx.shape \+ \(dim,\)"):
        hg.ops.embedding_backward(np.ones((3, 4), np.float32), np.array([1, 2]), 10)
    with pytest.raises(ValueError, match="num must be >= 0"):
        hg.ops.embedding_backward(np.ones((2, 4), np.float32), np.array([1, 2]), -1)
    with pytest.raises(TypeError, match="num must be an int"):
        hg.ops.embedding_backward(np.ones((2, 4), np.float32), np.array([1, 2]), 2.0)
