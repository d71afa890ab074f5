"""The production GPU kernels against their v0 reference kernels (HIPGRAD_GPU_<FAMILY>_VARIANT=v0)
and against float64 NumPy, over the shapes where their code paths differ: tile sizes, ragged
edges, unaligned leading dimensions, transposes, groups, depthwise, split-K."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check
from tests.reference import gemm as gemm_ref

DEV = "gpu:0"


def run_both(monkeypatch, family: str, fn):
    """fn() with the production kernels, then with the v0 reference kernels."""
    monkeypatch.delenv(f"HIPGRAD_GPU_{family}_VARIANT", raising=False)
    fast = fn().numpy()
    monkeypatch.setenv(f"HIPGRAD_GPU_{family}_VARIANT", "v0")
    ref = fn().numpy()
    monkeypatch.delenv(f"HIPGRAD_GPU_{family}_VARIANT")
    return fast, ref


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("mnk", [(1, 1, 1), (7, 3, 31), (129, 130, 37), (64, 64, 64),
                                 (257, 511, 129), (1000, 1000, 300), (4, 2049, 3)])
def test_gemm_tiled_matches_v0_and_float64(monkeypatch, rng, ta, tb, mnk):
    M, N, K = mnk
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    ga, gb, gc = (hg.tensor(v, device=DEV) for v in (a, b, c))
    fast, ref = run_both(monkeypatch, "GEMM", lambda: hg.ops.gemm(
        ga, gb, gc, trans_a=ta, trans_b=tb, alpha=0.5, beta=-1.25, impl="handwritten"))
    want = gemm_ref.gemm(a, b, c, ta, tb, 0.5, -1.25)
    tol = 1e-4 * np.sqrt(K)
    check(fast, want, rtol=1e-4, atol=tol, what=f"tiled gemm {mnk} ta={ta} tb={tb}")
    check(ref, want, rtol=1e-4, atol=tol, what=f"v0 gemm {mnk} ta={ta} tb={tb}")


def test_gemm_variant_switch_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv("HIPGRAD_GPU_GEMM_VARIANT", "fastest")
    a = hg.tensor(np.ones((2, 2), np.float32), device=DEV)
    with pytest.raises(ValueError, match="HIPGRAD_GPU_GEMM_VARIANT must be 'v0'"):
        hg.ops.gemm(a, a, impl="handwritten")


CONV_CASES = [  # N, C, H, W, K, R, S, stride, padding, dilation, groups
    (2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1),
    (2, 4, 9, 8, 6, 3, 2, (2, 1), (1, 0), (2, 1), 2),
    (1, 8, 6, 6, 8, 3, 3, 2, 1, 1, 8),          # depthwise
    (2, 4, 7, 5, 8, 5, 3, (1, 2), (2, 1), (1, 2), 4),  # depthwise, 2 outputs per channel
    (3, 16, 12, 12, 70, 3, 3, 1, 1, 1, 1),
    (4, 130, 5, 5, 3, 1, 1, 1, 0, 1, 1),
    (2, 132, 6, 6, 132, 1, 1, 1, 0, 1, 1),
    (8, 64, 28, 28, 128, 3, 3, 2, 1, 1, 1),     # split-K for the weight gradient
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[:7])))
def test_conv_kernels_match_v0(monkeypatch, rng, case):
    if not hasattr(hg.ops, "conv2d"):
        pytest.skip("the conv front end is not in this build")
    N, C, H, W, K, R, S, stride, padding, dilation, groups = case
    x = hg.tensor(rng.standard_normal((N, C, H, W)).astype(np.float32), device=DEV)
    w = hg.tensor(rng.standard_normal((K, C // groups, R, S)).astype(np.float32), device=DEV)
    bias = hg.tensor(rng.standard_normal(K).astype(np.float32), device=DEV)
    hyper = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
             "impl": "handwritten"}
    y_fast, y_ref = run_both(monkeypatch, "CONV", lambda: hg.ops.conv2d(x, w, bias, **hyper))
    dy = hg.tensor(rng.standard_normal(y_fast.shape).astype(np.float32), device=DEV)
    dx_fast, dx_ref = run_both(monkeypatch, "CONV", lambda: hg.ops.conv2d_backward_data(
        dy, w, (N, C, H, W), **hyper))
    dw_fast, dw_ref = run_both(monkeypatch, "CONV", lambda: hg.ops.conv2d_backward_weight(
        dy, x, (K, C // groups, R, S), **hyper))
    red = N * y_fast.shape[2] * y_fast.shape[3]
    check(y_fast, y_ref.astype(np.float64), atol=1e-4 * np.sqrt(C * R * S), what="forward")
    check(dx_fast, dx_ref.astype(np.float64), atol=1e-4 * np.sqrt(K * R * S), what="backward data")
    check(dw_fast, dw_ref.astype(np.float64), atol=1e-4 * np.sqrt(red), what="backward weight")


def _int8(rng, shape):
    return rng.integers(-127, 128, size=shape).astype(np.int8)


@pytest.mark.parametrize("act", [None, "gelu"])
@pytest.mark.parametrize("mnk", [(1, 1, 1), (7, 3, 31), (129, 130, 37), (64, 64, 64), (3, 2049, 5),
                                 (1100, 1300, 67)])
def test_qgemm_tiled_matches_v0_exactly(monkeypatch, rng, act, mnk):
    M, N, K = mnk
    xq, wq = hg.tensor(_int8(rng, (M, K)), device=DEV), hg.tensor(_int8(rng, (N, K)), device=DEV)
    w_scale = hg.tensor(rng.uniform(0.001, 0.01, N).astype(np.float32), device=DEV)
    bias = hg.tensor(rng.standard_normal(N).astype(np.float32), device=DEV)
    fast, ref = run_both(monkeypatch, "QUANT", lambda: hg.ops.qgemm(
        xq, wq, 0.01, w_scale, bias, activation=act, impl="handwritten"))
    # integer sums are exact; the epilogues may differ by a fused multiply-add
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-6)


# (x, w, groups, stride, padding): groups, depthwise with a channel multiplier, the 128 x 128
# tiles, CRS not a multiple of 4 (byte-wise weight loads).
@pytest.mark.parametrize("case", [
    ((2, 6, 9, 8), (10, 3, 3, 3), 2, 1, 1),
    ((1, 5, 7, 7), (10, 1, 3, 3), 5, 2, 1),
    ((2, 64, 20, 20), (130, 64, 3, 3), 1, 1, 2),
    ((1, 3, 30, 30), (7, 3, 5, 5), 1, 3, 0),
])
def test_qconv2d_kernels_match_v0_exactly(monkeypatch, rng, case):
    x, w, groups, stride, padding = case
    xq, wq = hg.tensor(_int8(rng, x), device=DEV), hg.tensor(_int8(rng, w), device=DEV)
    w_scale = hg.tensor(rng.uniform(0.001, 0.01, w[0]).astype(np.float32), device=DEV)
    fast, ref = run_both(monkeypatch, "QUANT", lambda: hg.ops.qconv2d(
        xq, wq, 0.02, w_scale, stride=stride, padding=padding, groups=groups, activation="relu",
        impl="handwritten"))
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-6)
