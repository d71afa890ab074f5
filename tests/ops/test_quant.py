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


def test_quantize_maps_nan_to_zero_and_inf_to_the_bounds(device, impl):
    x = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, 0.0, -0.0] * 5, np.float32)
    q = hg.ops.quantize(to_dev(x, device), 0.1, impl=impl).numpy()
    np.testing.assert_array_equal(q, np.array([0, 127, -127, 127, -127, 0, 0] * 5, np.int8))


@pytest.mark.parametrize("act", ACTS)
# Odd K (byte-wise tails), K % 4 == 0 (word loads, and the vendor int8 GEMM where N % 4 == 0),
# several tiles with ragged edges, K = 0, and a shape large enough for the 128 x 128 GPU tiles.
@pytest.mark.parametrize("mnk", [(1, 1, 1), (3, 7, 31), (31, 5, 129), (67, 33, 300), (130, 68, 36),
                                 (5, 3, 0), (1500, 1500, 21)])
def test_qgemm_matches_integer_reference(device, impl, rng, act, mnk):
    M, N, K = mnk
    xq, wq = _int8(rng, (M, K)), _int8(rng, (N, K))
    if act is not None and M * N > 10000 and device == "cpu":
        pytest.skip("the large shape runs once per impl without an activation on the CPU")
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
    dict(x=(2, 4, 10, 10), w=(8, 1, 3, 3), groups=4, dilation=(2, 1), padding=(2, 1)),
    dict(x=(2, 8, 6, 7), w=(12, 4, 1, 1), groups=2, stride=2),
    dict(x=(2, 16, 17, 17), w=(130, 16, 3, 3), padding=1),
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


@pytest.mark.parametrize("act", ACTS[2:])
def test_qconv2d_fuses_every_activation(device, impl, rng, act):
    for x, w, groups in (((2, 6, 9, 8), (4, 3, 3, 3), 2), ((1, 5, 7, 7), (5, 1, 3, 3), 5)):
        xq, wq = _int8(rng, x), _int8(rng, w)
        w_scale = rng.uniform(0.001, 0.01, w[0]).astype(np.float32)
        bias = rng.standard_normal(w[0]).astype(np.float32)
        y = hg.ops.qconv2d(to_dev(xq, device), to_dev(wq, device), 0.02, to_dev(w_scale, device),
                           to_dev(bias, device), padding=1, groups=groups, activation=act,
                           alpha=0.3, impl=impl)
        want = ref.qconv2d(xq, wq, 0.02, w_scale, bias, padding=(1, 1), groups=groups,
                           activation=act, alpha=0.3)
        check(y, want, rtol=1e-5, atol=1e-5, what=f"qconv2d {x} {w} {act}")


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
