"""bmm against float64 NumPy (every transpose case, odd sizes), and the gradient-clipping helpers
(sum_squares, scale_, clip_grad_norm_) against NumPy and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check, to_dev
from tests.reference import attention as ref


@pytest.mark.parametrize("trans", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["nn", "tn", "nt", "tt"])
@pytest.mark.parametrize("size", [(1, 1, 1, 1), (3, 7, 5, 9), (64, 33, 17, 32), (2, 129, 65, 31)],
                         ids=lambda s: "x".join(map(str, s)))
def test_bmm_matches_float64(device, impl, rng, size, trans):
    batch, M, N, K = size
    ta, tb = trans
    a = rng.standard_normal((batch, K, M) if ta else (batch, M, K)).astype(np.float32)
    b = rng.standard_normal((batch, N, K) if tb else (batch, K, N)).astype(np.float32)
    alpha = float(rng.uniform(-2, 2))
    y = hg.ops.bmm(to_dev(a, device), to_dev(b, device), trans_a=ta, trans_b=tb, alpha=alpha,
                   impl=impl)
    check(y, ref.bmm(a, b, ta, tb, np.float32(alpha)), rtol=1e-4, atol=1e-4 * np.sqrt(K), what="bmm")


def test_bmm_with_out_and_empty_inner(device, rng):
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((2, 4, 5)).astype(np.float32)
    out = hg.empty((2, 3, 5), device=device)
    assert hg.ops.bmm(to_dev(a, device), to_dev(b, device), out=out) is out
    check(out, ref.bmm(a, b), rtol=1e-5, atol=1e-5, what="out")
    z = hg.ops.bmm(to_dev(np.zeros((2, 3, 0), np.float32), device),
                   to_dev(np.zeros((2, 0, 5), np.float32), device))
    check(z, np.zeros((2, 3, 5)), rtol=0, atol=0, what="K=0")


def test_bmm_rejects_bad_inputs():
    a = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="a has batch 2 but b has batch 3"):
        hg.ops.bmm(a, np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="their inner sizes must match"):
        hg.ops.bmm(a, np.zeros((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match="b must have 3 dimensions"):
        hg.ops.bmm(a, np.zeros((4, 5), np.float32))
    with pytest.raises(TypeError, match="a must be float32"):
        hg.ops.bmm(a.astype(np.int64), np.zeros((2, 4, 5), np.float32))


def test_sum_squares_and_scale(device, impl, rng):
    xs = [rng.standard_normal(s).astype(np.float32) for s in [(3,), (7, 129), (50_000,), (0,)]]
    got = hg.ops.sum_squares([to_dev(x, device) for x in xs], impl=impl)
    check(got, np.array([np.sum(x.astype(np.float64) ** 2) for x in xs]), rtol=1e-5, atol=1e-6,
          what="sum_squares")
    t = to_dev(xs[1], device)
    assert hg.ops.scale_(t, 0.25, impl=impl) is t
    check(t, xs[1].astype(np.float64) * 0.25, rtol=1e-7, atol=0, what="scale_")


def test_clip_grad_norm_matches_torch(device, rng):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    xs = [rng.standard_normal(s).astype(np.float32) for s in [(5, 3), (129,), (2, 7, 9)]]
    for max_norm in (0.5, 1e3):
        ts = [to_dev(x, device) for x in xs]
        params = [torch.zeros(x.shape, requires_grad=True) for x in xs]
        for p, x in zip(params, xs):
            p.grad = torch.tensor(x)
        want = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        norm = hg.ops.clip_grad_norm_(ts, max_norm)
        assert abs(norm - want) <= 1e-5 * want
        for t, p in zip(ts, params):
            check(t, p.grad.numpy().astype(np.float64), rtol=1e-5, atol=1e-7, what="clipped")


def test_clip_rejects_bad_inputs():
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
        hg.ops.clip_grad_norm_([hg.zeros(3)], 0.0)
    with pytest.raises(TypeError, match=r"tensors\[1\] must be float32"):
        hg.ops.sum_squares([hg.zeros(3), hg.zeros(3, dtype=np.int64)])
    with pytest.raises(TypeError, match="x is updated in place and must be a hipgrad Tensor"):
        hg.ops.scale_(np.zeros(3, np.float32), 2.0)
