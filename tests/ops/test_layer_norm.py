"""layer_norm / layer_norm_backward against float64 NumPy, finite differences and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check, to_dev
from tests.ops.test_loss import numeric_grad
from tests.reference import attention as ref

SHAPES = [(1, 1), (7, 8), (3, 129), (2, 7, 33), (4, 5, 3, 128), (600, 96)]  # the last threaded


@pytest.mark.parametrize("affine", ["both", "weight", "none"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_layer_norm_and_backward_match_float64(device, impl, rng, shape, affine):
    C = shape[-1]
    x = (rng.standard_normal(shape) * 3 + 5).astype(np.float32)
    w = rng.uniform(0.5, 1.5, C).astype(np.float32) if affine != "none" else None
    b = rng.standard_normal(C).astype(np.float32) if affine == "both" else None
    eps = float(rng.choice([1e-5, 1e-3]))
    tw = None if w is None else to_dev(w, device)
    tb = None if b is None else to_dev(b, device)
    y, mean, rstd = hg.ops.layer_norm(to_dev(x, device), tw, tb, eps=eps, impl=impl)
    wy, wmean, wrstd = ref.layer_norm(x, w, b, eps)
    check(y, wy, rtol=1e-4, atol=1e-4, what="y")
    check(mean, wmean, rtol=1e-5, atol=1e-5, what="mean")
    check(rstd, wrstd, rtol=1e-4, atol=1e-5, what="rstd")
    dy = rng.standard_normal(shape).astype(np.float32)
    dx, dw, db = hg.ops.layer_norm_backward(to_dev(dy, device), to_dev(x, device), tw, mean, rstd,
                                            impl=impl)
    wdx, wdw, wdb = ref.layer_norm_backward(dy, x, w, eps)
    check(dx, wdx, rtol=1e-3, atol=1e-3, what="dx")
    check(dw, wdw, rtol=1e-3, atol=1e-3, what="dweight")
    check(db, wdb, rtol=1e-4, atol=1e-4, what="dbias")


def test_layer_norm_backward_matches_finite_differences(device, impl, rng):
    shape = (3, 2, 6)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 6).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    g = rng.standard_normal(shape)

    def f(x_, w_, b_):
        y = hg.ops.layer_norm(to_dev(x_, device), to_dev(w_, device), to_dev(b_, device), impl=impl)[0]
        return float((y.numpy().astype(np.float64) * g).sum())

    _, mean, rstd = hg.ops.layer_norm(to_dev(x, device), to_dev(w, device), to_dev(b, device), impl=impl)
    dx, dw, db = hg.ops.layer_norm_backward(to_dev(g.astype(np.float32), device), to_dev(x, device),
                                            to_dev(w, device), mean, rstd, impl=impl)
    tol = {"rtol": 2e-2, "atol": 3e-3}
    check(dx, numeric_grad(lambda v: f(v, w, b), x.copy(), 1e-2), **tol, what="dx fd")
    check(dw, numeric_grad(lambda v: f(x, v, b), w.copy(), 1e-2), **tol, what="dweight fd")
    check(db, numeric_grad(lambda v: f(x, w, v), b.copy(), 1e-2), **tol, what="dbias fd")


def test_layer_norm_matches_torch(rng):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    x = rng.standard_normal((4, 9, 48)).astype(np.float32)
    w = rng.standard_normal(48).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    want = torch.nn.functional.layer_norm(tx, (48,), tw, tb, 1e-5)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    want.backward(torch.tensor(dy))
    y, mean, rstd = hg.ops.layer_norm(x, w, b)
    dx, dw, db = hg.ops.layer_norm_backward(dy, x, w, mean, rstd)
    check(y, want.detach().numpy().astype(np.float64), rtol=1e-4, atol=1e-5, what="y")
    for name, got, t in (("dx", dx, tx), ("dweight", dw, tw), ("dbias", db, tb)):
        check(got, t.grad.numpy().astype(np.float64), rtol=1e-3, atol=1e-4, what=name)


def test_layer_norm_rejects_bad_inputs():
    x = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match=r"weight must have shape \(5,\) to match x's last axis"):
        hg.ops.layer_norm(x, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"bias must have shape \(5,\)"):
        hg.ops.layer_norm(x, None, np.ones((1, 5), np.float32))
    with pytest.raises(TypeError, match="x must be float32, got int64"):
        hg.ops.layer_norm(x.astype(np.int64))
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        hg.ops.layer_norm(x, eps=-1.0)
    with pytest.raises(ValueError, match="C >= 1"):
        hg.ops.layer_norm(np.zeros((2, 0), np.float32))
    _, mean, rstd = hg.ops.layer_norm(x)
    with pytest.raises(ValueError, match=r"rstd must have shape \(2,\)"):
        hg.ops.layer_norm_backward(x, x, None, mean, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 5\)"):
        hg.ops.layer_norm_backward(x[:1], x, None, mean, rstd)
