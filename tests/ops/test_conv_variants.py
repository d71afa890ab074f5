"""Every CPU convolution kernel impl="auto" may choose (the default, the alternates: Winograd
F(2x2, 3x3), the direct kernels over flat positions and over 16-channel vectors, the unpacked
GEMM; the vendor kernel), forced by name, against NumPy float64 on odd shapes: the ones each
variant is built for (3x3 stride 1 with padding 0-2, LeNet's 5x5, channel counts on and off
multiples of 16, partial output tiles) and the ones it hands to the default kernel (strides,
dilation, groups). Forward outputs are poisoned before the call (out=); backward weight is
bitwise repeatable at a fixed thread count."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check
from tests.reference import conv as ref_conv

OPS = {"conv2d_forward": "forward", "conv2d_backward_data": "backward_data",
       "conv2d_backward_weight": "backward_weight"}

# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
SHAPES = [
    (1, 1, 3, 3, 1, 3, 3, 1, 1, 1, 1),
    (2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1),          # odd output: partial 2x2 tiles
    (3, 7, 8, 5, 4, 3, 3, 1, 0, 1, 1),
    (2, 5, 11, 13, 6, 3, 3, 1, 2, 1, 1),
    (2, 17, 10, 7, 33, 3, 3, 1, (1, 0), 1, 1),  # K past a 32-wide panel, asymmetric padding
    (3, 16, 9, 9, 16, 3, 3, 1, 1, 1, 1),        # C and K multiples of 16
    (2, 16, 6, 12, 16, 3, 3, 1, 1, 1, 1),       # 12 output columns: the 12-wide 3x3 row kernel
    (5, 1, 28, 28, 6, 5, 5, 1, 2, 1, 1),        # LeNet conv1
    (5, 6, 14, 14, 16, 5, 5, 1, 0, 1, 1),       # LeNet conv2
    (2, 32, 6, 6, 17, 5, 5, 1, 4, 1, 1),        # padding = kernel - 1
    (2, 3, 9, 8, 4, 2, 4, 1, (1, 3), 1, 1),     # even kernel
    (2, 4, 9, 9, 8, 1, 1, 1, 0, 1, 1),          # 1x1
    (2, 4, 11, 10, 6, 3, 3, 2, 1, 1, 1),        # stride 2: kvec kernels, else the default
    (2, 3, 23, 21, 32, 7, 7, 2, 3, 1, 1),       # a ResNet stem, smaller
    (2, 16, 9, 8, 16, 3, 3, (2, 1), 1, 1, 1),   # unequal strides
    (1, 4, 9, 9, 6, 3, 3, 1, 2, 2, 1),          # dilation 2: the default kernel
    (2, 4, 9, 9, 6, 3, 3, 1, 1, 1, 2),          # groups 2: the default kernel
]


def _ids(s):
    return "N{}C{}H{}W{}K{}R{}S{}-st{}-pd{}-dl{}-g{}".format(*s)


def _candidates(op: str) -> list[str]:
    return [r["kernel"] for r in hg.build_info()["kernels"]
            if r["op"] == op and r["backend"] == "cpu" and "fallback" not in r["note"]]


def test_the_variants_are_registered():
    assert "cpu.conv2d_winograd_f2x3|im2col_gemm" in _candidates("conv2d_forward")
    assert "cpu.conv2d_winograd_f2x3|gemm_col2im" in _candidates("conv2d_backward_data")
    assert "cpu.conv2d_direct_kvec|im2col_gemm" in _candidates("conv2d_backward_weight")
    assert "cpu.conv2d_direct_flat|im2col_gemm" in _candidates("conv2d_forward")


def _inputs(rng, shape):
    N, C, H, W, K, R, S, st, pd, dl, g = shape
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((K, C // g, R, S)) / np.sqrt(C // g * R * S)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    hyper = {"stride": st, "padding": pd, "dilation": dl, "groups": g}
    y = ref_conv.conv2d(x, w, b, **hyper)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    return x, w, b, hyper, y, dy


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("op", sorted(OPS))
def test_every_cpu_kernel_forced_by_name(rng, op, threads):
    before = hg.get_num_threads()
    hg.set_num_threads(threads)
    try:
        names = _candidates(op)
        assert len(names) >= 2, names
        for name in names:
            for shape in SHAPES:
                x, w, b, hyper, y, dy = _inputs(rng, shape)
                what = f"{name} {_ids(shape)} threads={threads}"
                with hg.ops.force_kernel(op, name):
                    if op == "conv2d_forward":
                        out = hg.tensor(np.full(y.shape, np.nan, np.float32))
                        got = hg.ops.conv2d(x, w, b, **hyper, out=out)
                        want = y
                    elif op == "conv2d_backward_data":
                        got = hg.ops.conv2d_backward_data(dy, w, x.shape, **hyper)
                        want = ref_conv.conv2d_backward_data(dy, w, x.shape, **hyper)
                    else:
                        got = hg.ops.conv2d_backward_weight(dy, x, w.shape, **hyper)
                        want = ref_conv.conv2d_backward_weight(dy, x, w.shape, **hyper)
                        again = hg.ops.conv2d_backward_weight(dy, x, w.shape, **hyper)
                        np.testing.assert_array_equal(got.numpy(), again.numpy(),
                                                      err_msg=f"{what}: not repeatable")
                    assert hg.ops.last_impl()["impl"] == name
                scale = max(1.0, float(np.abs(want).max()))
                check(got, want, rtol=1e-4, atol=2e-5 * scale, what=what)
    finally:
        hg.set_num_threads(before)


def test_auto_picks_a_variant_and_matches_float64(rng):
    """impl="auto" times the candidates per shape; whatever it keeps is correct."""
    hg._C.clear_tuning()
    for shape in SHAPES[5:9]:
        x, w, b, hyper, y, dy = _inputs(rng, shape)
        check(hg.ops.conv2d(x, w, b, **hyper, impl="auto"), y, rtol=1e-4, atol=1e-4)
        check(hg.ops.conv2d_backward_weight(dy, x, w.shape, **hyper, impl="auto"),
              ref_conv.conv2d_backward_weight(dy, x, w.shape, **hyper), rtol=1e-4, atol=1e-3)
    chosen = {r["op"] for r in hg.tuning_report()}
    assert {"conv2d_forward", "conv2d_backward_weight"} <= chosen
