"""conv2d_bias_act_packed: conv2d_bias_act (groups 1) against a weight packed once by
pack_linear_weight of its (K, C*R*S) view. NumPy float64 references, odd sizes, strides, pads,
dilation, a residual (also in place), batches cut into several GEMMs, poisoned outputs, and bad
input named in the error."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.reference import activation as ref_act
from tests.reference import conv as ref_conv

# (N, C, H, W, K, R, S, stride, padding, dilation, bias, activation, residual)
CASES = [
    (1, 1, 1, 1, 1, 1, 1, 1, 0, 1, False, None, False),
    (1, 13, 2, 3, 37, 3, 3, 1, 1, 1, True, "relu", True),            # a tiny plane, K past a panel
    (3, 5, 9, 7, 33, 3, 2, (2, 1), (1, 0), 1, True, "leaky_relu", False),
    (2, 3, 11, 13, 65, 5, 3, 1, (2, 1), 2, False, "gelu", True),      # dilated
    (5, 4, 17, 17, 7, 3, 3, 1, 1, 1, True, "relu6", True),            # 1445 rows: several GEMMs
    (2, 6, 8, 8, 16, 1, 1, 2, 0, 1, True, None, False),               # 1x1 stride 2
    (1, 2, 3, 3, 3, 3, 3, 1, 3, 1, True, "sigmoid", False),           # padding beyond the kernel
]


def _ids(case):
    return "N{}C{}H{}W{}K{}R{}S{}-st{}-pd{}-dl{}-{}-{}-{}".format(*case)


def _pack(w):
    return hg.ops.pack_linear_weight(np.ascontiguousarray(w.reshape(w.shape[0], -1)))


def _reference(x, w, bias, residual, act, hyper):
    z = ref_conv.conv2d(x, w, bias, groups=1, **hyper)
    if residual is not None:
        z = z + residual.astype(np.float64)
    return z if act is None else ref_act.activation(z, act, 0.2)


# out= the residual itself (accumulated in place) where the case has one
RUNS = [(c, False) for c in CASES] + [(c, True) for c in CASES if c[-1]]


@pytest.mark.parametrize("case,in_place", RUNS, ids=[_ids(c) + ("-in_place" if i else "") for c, i in RUNS])
def test_conv2d_bias_act_packed_matches_float64(rng, case, in_place):
    N, C, H, W, K, R, S, st, pd, dl, has_bias, act, has_res = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((K, C, R, S)) / np.sqrt(C * R * S)).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32) if has_bias else None
    hyper = {"stride": st, "padding": pd, "dilation": dl}
    y_shape = ref_conv.conv2d(x[:1, :, :, :], w, None, groups=1, **hyper).shape[1:]
    residual = rng.standard_normal((N, *y_shape)).astype(np.float32) if has_res else None
    want = _reference(x, w, bias, residual, act, hyper)
    if in_place:
        out = hg.tensor(residual.copy())
        res = out
    else:
        out = hg.tensor(np.full((N, *y_shape), np.nan, np.float32))  # poisoned
        res = None if residual is None else hg.tensor(residual)
    got = hg.ops.conv2d_bias_act_packed(x, _pack(w), w.shape, bias, activation=act, alpha=0.2,
                                        residual=res, out=out, **hyper)
    assert got.data_ptr() == out.data_ptr()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


def test_conv2d_bias_act_packed_equals_conv2d_bias_act(rng):
    """The same sums as the unpacked fused conv up to float32 rounding (ResNet's layer4 shape)."""
    x = rng.standard_normal((2, 64, 2, 2)).astype(np.float32)
    w = (rng.standard_normal((96, 64, 3, 3)) / 24).astype(np.float32)
    b = rng.standard_normal(96).astype(np.float32)
    r = rng.standard_normal((2, 96, 2, 2)).astype(np.float32)
    got = hg.ops.conv2d_bias_act_packed(x, _pack(w), w.shape, b, padding=1, residual=r)
    want = hg.ops.conv2d_bias_act(x, w, b, padding=1, residual=r)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_conv2d_bias_act_packed_bad_input(rng):
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    packed = _pack(w)
    op = hg.ops.conv2d_bias_act_packed
    with pytest.raises(ValueError, match=r"conv2d_bias_act_packed: packed is .* but w_shape"):
        op(x, packed, (8, 4, 3, 2))
    with pytest.raises(ValueError, match=r"conv2d_bias_act_packed: x has 4 input channels|w_shape"):
        op(x, packed, (8, 5, 3, 3))
    with pytest.raises(ValueError, match=r"conv2d_bias_act_packed: w_shape must have 4 entries"):
        op(x, packed, (8, 36))
    with pytest.raises(ValueError, match=r"conv2d_bias_act_packed: packed must be 3-D"):
        op(x, w, w.shape)
    with pytest.raises(ValueError, match=r"conv2d_bias_act_packed: residual must have the output's shape"):
        op(x, packed, w.shape, residual=np.zeros((1, 8, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"conv2d_bias_act_packed: bias"):
        op(x, packed, w.shape, np.zeros(7, np.float32))
    with pytest.raises(TypeError, match=r"conv2d_bias_act_packed: w_shape must be a sequence"):
        op(x, packed, None)
