"""conv2d_bias_act's channel-vectorized depthwise alternate (cpu.conv2d_depthwise_cvec16,
conv_depthwise_cvec.cpp), forced by name: against the float64 reference on odd channel counts
around its 16-channel blocks, odd and tiny planes, wide ones computed in several row bands,
strides 1 and 2, paddings, dilation, rectangular kernels, with and without bias, the inlined
activations (relu, relu6) and others, a residual (also in place, out= residual), at 1 and 3
threads; outputs poisoned (NaN) before the call."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check
from tests.reference import activation as ref_act
from tests.reference import conv as ref_conv

KERNEL = "cpu.conv2d_depthwise_cvec16|im2col_gemm"

# (N, C, H, W, R, S, stride, padding, dilation)
CASES = [
    (1, 1, 1, 1, 1, 1, 1, 0, 1),
    (2, 5, 7, 9, 3, 3, 1, 1, 1),
    (1, 16, 4, 4, 3, 3, 1, 1, 1),
    (3, 17, 8, 8, 3, 3, 2, 1, 1),
    (2, 33, 5, 11, 3, 3, 2, 1, 1),
    (1, 32, 2, 2, 3, 3, 1, 1, 1),
    (2, 19, 13, 6, 5, 5, 2, 2, 1),
    (1, 24, 9, 10, 3, 1, (2, 1), (1, 0), 1),
    (1, 7, 12, 12, 3, 3, 1, 2, 2),
    (2, 18, 6, 7, 2, 3, (1, 2), 0, 1),
    (1, 9, 10, 10, 3, 3, 3, 0, 1),
    (2, 48, 15, 15, 3, 3, 2, 1, 1),
    # wide planes: the output rows run in several bands (kBandFloats)
    (1, 5, 41, 37, 3, 3, 2, 1, 1),
    (1, 3, 30, 70, 3, 3, 1, 1, 1),
    (2, 17, 23, 45, 5, 5, 1, 2, 2),
    (1, 2, 9, 300, 3, 3, 1, 1, 1),
]


def _ids(case):
    return "N{}C{}H{}W{}R{}S{}-st{}-pd{}-dl{}".format(*case)


@pytest.fixture(params=[1, 3])
def threads(request):
    before = hg.get_num_threads()
    hg.set_num_threads(request.param)
    yield request.param
    hg.set_num_threads(before)


def _reference(x, w, b, st, pd, dl, act, res):
    C = x.shape[1]
    z = ref_conv.conv2d(x.astype(np.float64), w.astype(np.float64),
                        None if b is None else b.astype(np.float64), st, pd, dl, C)
    if res is not None:
        z = z + res
    return z if act is None else ref_act.activation(z, act, 0.2)


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("act,bias", [(None, False), ("relu", True), ("relu6", True),
                                      ("leaky_relu", False), ("gelu", True)])
def test_depthwise_cvec_matches_float64(rng, threads, case, act, bias):
    N, C, H, W, R, S, st, pd, dl = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((C, 1, R, S)) / np.sqrt(R * S)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32) if bias else None
    want = _reference(x, w, b, st, pd, dl, act, None)
    out = hg.tensor(np.full(want.shape, np.nan, np.float32))
    with hg.ops.force_kernel("conv2d_bias_act", KERNEL):
        y = hg.ops.conv2d_bias_act(x, w, b, stride=st, padding=pd, dilation=dl, groups=C,
                                   activation=act, alpha=0.2, out=out)
        assert hg.ops.last_impl()["impl"] == KERNEL
    check(y, want, rtol=1e-4, atol=1e-4, what=f"depthwise cvec {case} {act}")


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_depthwise_cvec_residual(rng, threads, in_place, act):
    for N, C, H, W, R, S, st, pd, dl in [(2, 21, 7, 7, 3, 3, 1, 1, 1),
                                         (1, 40, 9, 8, 3, 3, 2, 1, 1)]:
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = (rng.standard_normal((C, 1, R, S)) / 3).astype(np.float32)
        b = rng.standard_normal(C).astype(np.float32)
        P, Q = ref_conv.out_size(H, R, st, pd, dl), ref_conv.out_size(W, S, st, pd, dl)
        res = rng.standard_normal((N, C, P, Q)).astype(np.float32)
        want = _reference(x, w, b, st, pd, dl, act, res.astype(np.float64))
        r = hg.tensor(res.copy())
        out = r if in_place else hg.tensor(np.full(want.shape, np.nan, np.float32))
        with hg.ops.force_kernel("conv2d_bias_act", KERNEL):
            y = hg.ops.conv2d_bias_act(x, w, b, stride=st, padding=pd, dilation=dl, groups=C,
                                       residual=r, activation=act, alpha=0.2, out=out)
        check(y, want, rtol=1e-4, atol=1e-4, what=f"depthwise cvec residual in_place={in_place}")


def test_depthwise_cvec_falls_back_on_grouped_and_dense(rng):
    """Forced on a conv it does not cover, it runs the handwritten kernel's path."""
    for g in (1, 2):
        x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
        w = rng.standard_normal((6, 4 // g, 3, 3)).astype(np.float32)
        with hg.ops.force_kernel("conv2d_bias_act", KERNEL):
            y = hg.ops.conv2d_bias_act(x, w, None, padding=1, groups=g, activation=None)
        want = ref_conv.conv2d(x.astype(np.float64), w.astype(np.float64), None, 1, 1, 1, g)
        check(y, want, rtol=1e-4, atol=1e-4, what=f"fallback groups={g}")
