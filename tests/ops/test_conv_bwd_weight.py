"""The taps x output-channel tile kernel of conv2d's backward weight (cpu.conv2d_direct_taps,
csrc/cpu/conv_bwd_weight.cpp), forced by name, against NumPy float64 (tests/reference/conv.py)
on the shapes its blocking has to get right: output-channel counts that mix 64-, 32- and
16-channel blocks or end in a partial vector, tap counts cut into unequal chunks (1x1 ... 7x7,
even and non-square kernels), strides 1 to 3 and unequal, asymmetric padding, a stride that skips
the last input rows, fewer images than threads. Each result must repeat bitwise at a fixed thread
count and agree across thread counts to rounding. Shapes the kernel does not take (dilation,
groups) go to the default kernel under the same name."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check
from tests.reference import conv as ref_conv

KERNEL = "cpu.conv2d_direct_taps|im2col_gemm"

# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
SHAPES = [
    (2, 3, 23, 21, 64, 7, 7, 2, 3, 1, 1),        # a ResNet stem, smaller: 9 chunks of 5-6 taps
    (3, 5, 11, 9, 112, 3, 3, 1, 1, 1, 1),        # K = 64 + 32 + 16: every block width
    (2, 7, 10, 13, 17, 3, 3, 1, (0, 2), 1, 1),   # K past a vector, asymmetric padding
    (1, 6, 14, 14, 16, 5, 5, 1, 0, 1, 1),        # LeNet conv2, one image
    (5, 4, 9, 8, 80, 2, 4, 1, (1, 3), 1, 1),     # even kernel, K = 64 + 16
    (2, 9, 12, 11, 33, 1, 1, 1, 0, 1, 1),        # 1x1
    (2, 4, 13, 12, 48, 4, 3, 3, 1, 1, 1),        # stride 3 (the generic-stride loop)
    (2, 16, 9, 8, 32, 3, 3, (2, 1), 1, 1, 1),    # unequal strides
    (2, 3, 12, 12, 16, 3, 3, 2, 0, 1, 1),        # stride 2 skips the last input row
    (3, 2, 6, 40, 96, 1, 7, 1, (0, 3), 1, 1),    # one row of 7 taps, K = 64 + 32
    (1, 4, 9, 9, 6, 3, 3, 1, 2, 2, 1),           # dilation 2: the default kernel
    (2, 4, 9, 9, 6, 3, 3, 1, 1, 1, 2),           # groups 2: the default kernel
]


def _ids(s):
    return "N{}C{}H{}W{}K{}R{}S{}-st{}-pd{}-dl{}-g{}".format(*s)


def _inputs(rng, shape):
    N, C, H, W, K, R, S, st, pd, dl, g = shape
    hyper = {"stride": st, "padding": pd, "dilation": dl, "groups": g}
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w_shape = (K, C // g, R, S)
    y_shape = ref_conv.conv2d(x, np.zeros(w_shape, np.float32), None, **hyper).shape
    dy = rng.standard_normal(y_shape).astype(np.float32)
    return x, dy, w_shape, hyper


def _run(dy, x, w_shape, hyper, threads):
    before = hg.get_num_threads()
    hg.set_num_threads(threads)
    try:
        with hg.ops.force_kernel("conv2d_backward_weight", KERNEL):
            got = hg.ops.conv2d_backward_weight(dy, x, w_shape, **hyper).numpy()
            again = hg.ops.conv2d_backward_weight(dy, x, w_shape, **hyper).numpy()
            assert hg.ops.last_impl()["impl"] == KERNEL
    finally:
        hg.set_num_threads(before)
    np.testing.assert_array_equal(got, again, err_msg="not repeatable at a fixed thread count")
    return got


def test_registered():
    names = [r["kernel"] for r in hg.build_info()["kernels"] if r["op"] == "conv2d_backward_weight"]
    assert KERNEL in names


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_matches_float64(rng, shape):
    x, dy, w_shape, hyper = _inputs(rng, shape)
    want = ref_conv.conv2d_backward_weight(dy, x, w_shape, **hyper)
    scale = max(1.0, float(np.abs(want).max()))
    results = {}
    for threads in (1, 2, 3):
        results[threads] = _run(dy, x, w_shape, hyper, threads)
        check(results[threads], want, rtol=1e-4, atol=2e-5 * scale,
              what=f"{_ids(shape)} threads={threads}")
    # the runs' partial sums differ only in their order
    np.testing.assert_allclose(results[3], results[1], rtol=1e-5, atol=1e-5 * scale)


def test_non_finite_input_propagates(rng):
    """A NaN in x reaches exactly the weights whose taps read it (no tap is skipped or doubled)."""
    shape = (1, 2, 8, 8, 32, 3, 3, 1, 1, 1, 1)
    x, dy, w_shape, hyper = _inputs(rng, shape)
    x[0, 1, 0, 0] = np.nan  # the top-left corner: read by taps r, s <= 1 (pad 1) only
    got = _run(dy, x, w_shape, hyper, 1)
    want = ref_conv.conv2d_backward_weight(dy, x, w_shape, **hyper)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[:, 1, :2, :2]).all()
    assert not np.isnan(got[:, 0]).any() and not np.isnan(got[:, 1, 2, :]).any()
