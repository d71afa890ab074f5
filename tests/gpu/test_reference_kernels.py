"""The production GPU kernels against their v0 reference kernels (registered as reference
kernels, forced by name) and against float64 NumPy, over the shapes where their code paths
differ: tile sizes, ragged edges, unaligned leading dimensions, transposes, groups, depthwise,
split-K."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check
from tests.reference import gemm as gemm_ref

DEV = "gpu:0"


def run_both(op: str, reference: str, fn):
    """fn() with the production kernels, then with op's reference kernel forced by name; the
    reference run's record names that kernel."""
    fast = fn()
    assert hg.ops.last_impl()["impl"] != reference
    with hg.ops.force_kernel(op, reference):
        ref = fn()
        assert hg.ops.last_impl()["impl"] == reference
    return fast.numpy(), ref.numpy()


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("mnk", [(1, 1, 1), (7, 3, 31), (129, 130, 37), (64, 64, 64),
                                 (257, 511, 129), (1000, 1000, 300), (4, 2049, 3)])
def test_gemm_tiled_matches_v0_and_float64(rng, ta, tb, mnk):
    M, N, K = mnk
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    ga, gb, gc = (hg.tensor(v, device=DEV) for v in (a, b, c))
    fast, ref = run_both("gemm", "gpu.gemm_v0", lambda: hg.ops.gemm(
        ga, gb, gc, trans_a=ta, trans_b=tb, alpha=0.5, beta=-1.25, impl="handwritten"))
    want = gemm_ref.gemm(a, b, c, ta, tb, 0.5, -1.25)
    tol = 1e-4 * np.sqrt(K)
    check(fast, want, rtol=1e-4, atol=tol, what=f"tiled gemm {mnk} ta={ta} tb={tb}")
    check(ref, want, rtol=1e-4, atol=tol, what=f"v0 gemm {mnk} ta={ta} tb={tb}")


REFERENCE_KERNELS = {
    "gemm": "gpu.gemm_v0", "conv2d_forward": "gpu.conv2d_forward_v0",
    "conv2d_backward_data": "gpu.conv2d_backward_data_v0",
    "conv2d_backward_weight": "gpu.conv2d_backward_weight_v0",
    "conv2d_bias_act": "gpu.conv2d_v0+activation", "bias_backward": "gpu.bias_backward_v0",
    "batch_norm": "gpu.batch_norm_v0", "batch_norm_backward": "gpu.batch_norm_backward_v0",
    "embedding_backward": "gpu.embedding_backward_v0", "softmax": "gpu.softmax_v0",
    "softmax_cross_entropy": "gpu.softmax_xent_v0", "mse_loss": "gpu.mse_loss_v0",
    "quantize": "gpu.quantize_int8_v0", "qgemm": "gpu.qgemm_int8_v0",
    "qconv2d": "gpu.qconv2d_int8_v0",
}


def test_reference_kernels_are_registered_and_never_tuned(rng):
    rows = {(r["op"], r["kernel"]) for r in hg.build_info()["kernels"]
            if r["backend"] == "gpu" and r["note"].startswith("reference")}
    assert rows == set(REFERENCE_KERNELS.items())
    a = hg.tensor(rng.standard_normal((67, 45)).astype(np.float32), device=DEV)
    b = hg.tensor(rng.standard_normal((45, 33)).astype(np.float32), device=DEV)
    hg.ops.gemm(a, b, impl="auto")
    assert hg.ops.last_impl()["impl"] != "gpu.gemm_v0"
    timed = [r for r in hg.tuning_report() if r["op"] == "gemm" and r["key"].startswith(DEV)]
    assert timed and all("gpu.gemm_v0" not in r["candidates"] for r in timed)
    with pytest.raises(ValueError, match="has no kernel named 'gpu.gemm_v1'"):
        with hg.ops.force_kernel("gemm", "gpu.gemm_v1"):
            pass


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
def test_conv_kernels_match_v0(rng, case):
    if not hasattr(hg.ops, "conv2d"):
        pytest.skip("the conv front end is not in this build")
    N, C, H, W, K, R, S, stride, padding, dilation, groups = case
    x = hg.tensor(rng.standard_normal((N, C, H, W)).astype(np.float32), device=DEV)
    w = hg.tensor(rng.standard_normal((K, C // groups, R, S)).astype(np.float32), device=DEV)
    bias = hg.tensor(rng.standard_normal(K).astype(np.float32), device=DEV)
    hyper = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
             "impl": "handwritten"}
    y_fast, y_ref = run_both("conv2d_forward", "gpu.conv2d_forward_v0",
                             lambda: hg.ops.conv2d(x, w, bias, **hyper))
    dy = hg.tensor(rng.standard_normal(y_fast.shape).astype(np.float32), device=DEV)
    dx_fast, dx_ref = run_both("conv2d_backward_data", "gpu.conv2d_backward_data_v0",
                               lambda: hg.ops.conv2d_backward_data(
        dy, w, (N, C, H, W), **hyper))
    dw_fast, dw_ref = run_both("conv2d_backward_weight", "gpu.conv2d_backward_weight_v0",
                               lambda: hg.ops.conv2d_backward_weight(
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
def test_qgemm_tiled_matches_v0_exactly(rng, act, mnk):
    M, N, K = mnk
    xq, wq = hg.tensor(_int8(rng, (M, K)), device=DEV), hg.tensor(_int8(rng, (N, K)), device=DEV)
    w_scale = hg.tensor(rng.uniform(0.001, 0.01, N).astype(np.float32), device=DEV)
    bias = hg.tensor(rng.standard_normal(N).astype(np.float32), device=DEV)
    fast, ref = run_both("qgemm", "gpu.qgemm_int8_v0", lambda: hg.ops.qgemm(
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
def test_qconv2d_kernels_match_v0_exactly(rng, case):
    x, w, groups, stride, padding = case
    xq, wq = hg.tensor(_int8(rng, x), device=DEV), hg.tensor(_int8(rng, w), device=DEV)
    w_scale = hg.tensor(rng.uniform(0.001, 0.01, w[0]).astype(np.float32), device=DEV)
    fast, ref = run_both("qconv2d", "gpu.qconv2d_int8_v0", lambda: hg.ops.qconv2d(
        xq, wq, 0.02, w_scale, stride=stride, padding=padding, groups=groups, activation="relu",
        impl="handwritten"))
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-6)


def _other_references(rng):
    """op -> (reference kernel, call): the ops whose reference kernel the tests above skip."""
    f32 = lambda *s: hg.tensor(rng.standard_normal(s).astype(np.float32), device=DEV)  # noqa: E731
    x4, w4, dy4 = f32(3, 5, 7, 9), f32(4, 5, 3, 3), f32(3, 5, 7, 9)
    ones = lambda n: hg.tensor(np.ones(n, np.float32), device=DEV)  # noqa: E731
    logits = f32(37, 1500)
    labels = hg.tensor(rng.integers(0, 1500, 37), device=DEV)
    idx = hg.tensor(rng.integers(0, 11, 301), device=DEV)
    # Every input made once, here: both runs of a call must see the same values.
    pred, target, q_in, emb_dy = f32(1001), f32(1001), f32(1003), f32(301, 6)
    _, bn_mean, bn_invstd = hg.ops.batch_norm(x4, ones(5), ones(5), ones(5), ones(5),
                                              training=True, impl="handwritten")
    return {
        "bias_backward": lambda: hg.ops.bias_backward(dy4, impl="handwritten"),
        "batch_norm": lambda: hg.ops.batch_norm(x4, ones(5), ones(5), ones(5), ones(5),
                                                training=True, impl="handwritten")[0],
        "batch_norm_backward": lambda: hg.ops.batch_norm_backward(
            dy4, x4, ones(5), bn_mean, bn_invstd, training=True, impl="handwritten")[0],
        "softmax": lambda: hg.ops.softmax(logits, impl="handwritten"),
        "softmax_cross_entropy": lambda: hg.ops.softmax_cross_entropy(logits, labels,
                                                                      impl="handwritten")[0],
        "mse_loss": lambda: hg.ops.mse_loss(pred, target, impl="handwritten"),
        "quantize": lambda: hg.ops.quantize(q_in, 0.01, impl="handwritten"),
        "embedding_backward": lambda: hg.ops.embedding_backward(emb_dy, idx, 11,
                                                                impl="handwritten"),
        "conv2d_bias_act": lambda: hg.ops.conv2d_bias_act(x4, w4, ones(4), padding=1,
                                                          activation="gelu", impl="handwritten"),
    }


@pytest.mark.parametrize("op", ["bias_backward", "batch_norm", "batch_norm_backward", "softmax",
                                "softmax_cross_entropy",
                                "mse_loss", "quantize", "embedding_backward", "conv2d_bias_act"])
def test_other_kernels_match_their_reference(rng, op):
    call = _other_references(rng)[op]
    fast, ref = run_both(op, REFERENCE_KERNELS[op], call)
    np.testing.assert_allclose(fast.astype(np.float64), ref.astype(np.float64), rtol=1e-4,
                               atol=1e-4)
