from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check, to_dev
from tests.reference import quant as ref

ACTS = [None, "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "elu"]


def _int8(rng, shape):
    return rng.integers(-127, 128, size=shape).astype(np.int8)


@pytest.mark.parametrize("n", [1, 7, 129, 70001])
def test_quantize_rounds_half_even_and_clamps(device, impl, rng, n):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[: min(n, 4)] = np.array([0.5, 1.5, -2.5, 1000.0], np.float32)[: min(n, 4)]
    q = hg.ops.quantize(to_dev(x, device), 0.5, impl=impl)
    assert q.dtype == np.int8 and q.shape == x.shape
    np.testing.assert_array_equal(q.numpy(), ref.quantize(x, 0.5))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("mnk", [(1, 1, 1), (3, 7, 31), (31, 5, 129), (67, 33, 300)])
def test_qgemm_matches_integer_reference(device, impl, rng, act, mnk):
    M, N, K = mnk
    xq, wq = _int8(rng, (M, K)), _int8(rng, (N, K))
    x_scale = 0.01
    w_scale = rng.uniform(0.001, 0.01, N).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    y = hg.ops.qgemm(to_dev(xq, device), to_dev(wq, device), x_scale, to_dev(w_scale, device),
                     to_dev(bias, device), activation=act, alpha=0.2, impl=impl)
    check(y, ref.qgemm(xq, wq, x_scale, w_scale, bias, act, 0.2), rtol=1e-5, atol=1e-5,
          what=f"qgemm {mnk} {act}")


@pytest.mark.parametrize("cfg", [
    dict(x=(1, 1, 5, 5), w=(1, 1, 3, 3)),
    dict(x=(3, 3, 9, 7), w=(5, 3, 3, 3), stride=(2, 1), padding=(1, 2)),
    dict(x=(2, 4, 11, 11), w=(6, 2, 3, 3), groups=2, dilation=2, padding=1),
    dict(x=(2, 7, 8, 9), w=(7, 1, 3, 3), groups=7, padding=1, stride=3),
    dict(x=(1, 6, 31, 31), w=(16, 6, 5, 5)),
])
@pytest.mark.parametrize("act", [None, "relu"])
def test_qconv2d_matches_integer_reference(device, impl, rng, cfg, act):
    xq, wq = _int8(rng, cfg["x"]), _int8(rng, cfg["w"])
    K = cfg["w"][0]
    w_scale = rng.uniform(0.001, 0.01, K).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32)
    kw = {k: cfg.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1))}
    y = hg.ops.qconv2d(to_dev(xq, device), to_dev(wq, device), 0.02, to_dev(w_scale, device),
                       to_dev(bias, device), activation=act, impl=impl, **kw)
    pairs = {k: (v, v) if isinstance(v, int) and k != "groups" else v for k, v in kw.items()}
    check(y, ref.qconv2d(xq, wq, 0.02, w_scale, bias, activation=act, **pairs), rtol=1e-5,
          atol=1e-5, what=f"qconv2d {cfg} {act}")


def test_quantized_ops_reject_bad_input():
    xq = np.zeros((2, 3), np.int8)
    with pytest.raises(TypeError, match="xq must be int8"):
        hg.ops.qgemm(xq.astype(np.float32), xq, 0.1, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="w_scale must have shape"):
        hg.ops.qgemm(xq, xq, 0.1, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="x_scale must be a finite positive scale"):
        hg.ops.qgemm(xq, xq, 0.0, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="kind must be one of .*got .swish."):
        hg.ops.qgemm(xq, xq, 0.1, np.ones(2, np.float32), activation="swish")
    with pytest.raises(ValueError, match="scale must be a finite positive scale"):
        hg.ops.quantize(np.ones(3, np.float32), float("nan"))
    with pytest.raises(ValueError, match="wq has 2 input channels per group"):
        hg.ops.qconv2d(np.zeros((1, 3, 5, 5), np.int8), np.zeros((2, 2, 3, 3), np.int8), 0.1,
                       np.ones(2, np.float32))
