"""concat, split, transpose, reduce_mean and pad2d against NumPy float64 on every device and impl,
odd sizes, outputs poisoned (conftest), and bad input named."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check, to_dev

F = np.float32


def _x(rng, *shape):
    return rng.standard_normal(shape).astype(F)


@pytest.mark.parametrize("shapes, axis", [
    ([(2, 3, 5), (2, 1, 5), (2, 4, 5)], 1),
    ([(7, 3), (2, 3), (1, 3)], 0),
    ([(3, 5, 2), (3, 5, 1)], -1),
    ([(3, 0, 2), (3, 4, 2)], 1),
    ([(2, 3, 4, 5)] * 11, 1),  # more inputs than one GPU launch takes (8)
    ([(1, 40_000), (1, 3)], 1),  # threaded on the CPU
])
def test_concat_matches_numpy(device, impl, rng, shapes, axis):
    xs = [_x(rng, *s) for s in shapes]
    y = hg.ops.concat([to_dev(x, device) for x in xs], axis, impl=impl)
    assert y.device == device
    check(y, np.concatenate([x.astype(np.float64) for x in xs], axis), rtol=0, atol=0,
          what="concat")


@pytest.mark.parametrize("shape, axis, sizes", [
    ((2, 8, 5), 1, [3, 1, 4]),
    ((9, 3), 0, [2, 0, 7]),
    ((2, 3, 7), -1, [7]),
    ((2, 22, 3), 1, [2] * 11),
    ((3, 40_000), 1, [39_999, 1]),
])
def test_split_matches_numpy(device, impl, rng, shape, axis, sizes):
    x = _x(rng, *shape)
    parts = hg.ops.split(to_dev(x, device), axis, sizes, impl=impl)
    want = np.split(x.astype(np.float64), np.cumsum(sizes)[:-1], axis)
    assert len(parts) == len(sizes)
    for i, (p, w) in enumerate(zip(parts, want)):
        assert p.device == device
        check(p, w, rtol=0, atol=0, what=f"split part {i}")


@pytest.mark.parametrize("shape, perm", [
    ((2, 3, 5, 7), [0, 2, 3, 1]),
    ((2, 3, 5, 7), [0, 3, 1, 2]),
    ((31, 17), [1, 0]),
    ((2, 3, 4, 5, 3), [0, 2, 1, 3, 4]),
    ((3, 1, 5), [1, 2, 0]),
    ((2, 3, 1, 2, 3, 2), [5, 4, 3, 2, 1, 0]),
    ((4, 5), [0, 1]),
    ((2, 3, 4, 5), [3, 0, 2, 1]),  # x's innermost axis first, other axes between the tiled two
    ((2, 37, 3, 19), [0, 3, 2, 1]),  # tiles with ragged edges on both sides
    ((3, 129, 129), [0, 2, 1]),  # threaded on the CPU
])
def test_transpose_matches_numpy(device, impl, rng, shape, perm):
    if device != "cpu" and np.prod(shape) > 10_000:
        shape = shape[:1] + (33, 31)
    x = _x(rng, *shape)
    y = hg.ops.transpose(to_dev(x, device), perm, impl=impl)
    assert y.device == device
    check(y, np.transpose(x.astype(np.float64), perm), rtol=0, atol=0, what=f"perm {perm}")


@pytest.mark.parametrize("shape, axes, keepdims", [
    ((2, 3, 5, 7), [2, 3], True),
    ((2, 3, 5, 7), [-1, -2], False),
    ((3, 129), [1], False),
    ((4, 5, 6), [0, 2], False),
    ((3, 70, 2), [1], True),
    ((5, 1, 3), [1], False),
    ((2, 3, 4), [0, 1, 2], False),
    ((1, 3, 300), [2], True),
    ((64, 9, 9), [1, 2], False),
])
def test_reduce_mean_matches_numpy(device, impl, rng, shape, axes, keepdims):
    x = (_x(rng, *shape) + 0.5).astype(F)
    y = hg.ops.reduce_mean(to_dev(x, device), axes, keepdims=keepdims, impl=impl)
    assert y.device == device
    check(y, np.mean(x.astype(np.float64), axis=tuple(axes), keepdims=keepdims), rtol=1e-5,
          atol=1e-6, what=f"axes {axes}")


def test_reduce_mean_defaults(device, rng):
    x = _x(rng, 3, 4)
    check(hg.ops.reduce_mean(to_dev(x, device)), np.mean(x.astype(np.float64), keepdims=False),
          rtol=1e-5, atol=1e-6, what="every axis")
    check(hg.ops.reduce_mean(to_dev(x, device), 0), np.mean(x.astype(np.float64), 0), rtol=1e-5,
          atol=1e-6, what="one int")


@pytest.mark.parametrize("shape, pads, value", [
    ((2, 3, 5, 7), [1, 0, 2, 3], 0.0),
    ((1, 2, 3, 3), [0, 0, 0, 0], 1.5),
    ((1, 1, 4, 9), [2, 2, 2, 2], -np.inf),
    ((2, 1, 1, 1), [0, 3, 0, 0], -2.0),
    ((3, 4, 61, 59), [1, 1, 0, 0], 0.0),  # threaded on the CPU
])
def test_pad2d_matches_numpy(device, impl, rng, shape, pads, value):
    if device != "cpu" and np.prod(shape) > 10_000:
        shape = (1, 2, 11, 13)
    x = _x(rng, *shape)
    y = hg.ops.pad2d(to_dev(x, device), pads, value=value, impl=impl)
    t, l, b, r = pads
    want = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)
    assert y.device == device and y.shape == want.shape
    np.testing.assert_array_equal(y.numpy(), want.astype(F))


def test_shape_ops_report_what_ran(impl, rng):
    x = _x(rng, 2, 3)
    for call, kernel in [(lambda: hg.ops.concat([x, x], 0, impl=impl), "cpu.block_copy"),
                         (lambda: hg.ops.split(x, 1, [1, 2], impl=impl), "cpu.block_copy"),
                         (lambda: hg.ops.transpose(x, [1, 0], impl=impl), "cpu.transpose_rows"),
                         (lambda: hg.ops.reduce_mean(x, [1], impl=impl), "cpu.reduce_mean_rows")]:
        call()
        ran = hg.ops.last_impl()
        assert ran["impl"].startswith(kernel), ran
        assert ("vendor fallback" in ran["impl"]) == (impl == "vendor"), ran


def test_concat_out_must_not_overlap_an_input(device):
    buf = hg.tensor(np.zeros(64, F), device=device)
    a = buf.prefix_view([2, 3])
    with pytest.raises(ValueError, match=r"concat: out must not overlap tensors\[1\]"):
        hg.ops.concat([to_dev(np.ones((2, 3), F), device), a], 0, out=buf.prefix_view([4, 3]))


def test_shape_ops_reject_bad_input():
    x = np.ones((2, 3, 4, 5), F)
    cases = [
        (ValueError, r"concat: tensors\[1\] has shape \(3, 4, 4, 5\) but must match tensors\[0\] "
                     r"\(2, 3, 4, 5\) on every axis except axis 1",
         lambda: hg.ops.concat([x, np.ones((3, 4, 4, 5), F)], 1)),
        (ValueError, r"concat: axis must be in \[-4, 4\) for a 4-D tensor, got 4",
         lambda: hg.ops.concat([x, x], 4)),
        (ValueError, "concat: tensors must hold at least one tensor", lambda: hg.ops.concat([], 0)),
        (TypeError, r"concat: tensors\[1\] must be float32",
         lambda: hg.ops.concat([x, x.astype(np.int32)], 0)),
        (TypeError, "concat: axis must be an int", lambda: hg.ops.concat([x], 1.0)),
        (ValueError,
         r"split: sizes must add up to x's extent along axis 1 \(3 for x \(2, 3, 4, 5\)\)",
         lambda: hg.ops.split(x, 1, [1, 1])),
        (ValueError, "split: sizes must be >= 0, got -1", lambda: hg.ops.split(x, 1, [4, -1])),
        (TypeError, "split: sizes must be a sequence of ints", lambda: hg.ops.split(x, 1, 3)),
        (ValueError, r"transpose: perm must be a permutation of 0 .. 3, got entry 1 at position 2",
         lambda: hg.ops.transpose(x, [0, 1, 1, 2])),
        (ValueError,
         r"transpose: perm must have one entry per axis of x \(2, 3, 4, 5\) \(4\), got 3",
         lambda: hg.ops.transpose(x, [0, 1, 2])),
        (ValueError, "reduce_mean: axes names axis 1 twice",
         lambda: hg.ops.reduce_mean(x, [1, -3])),
        (ValueError, r"reduce_mean: axes must be in \[-4, 4\)", lambda: hg.ops.reduce_mean(x, [4])),
        (ValueError, "reduce_mean: the reduced axes of x .* hold no elements",
         lambda: hg.ops.reduce_mean(np.ones((2, 0, 3), F), [1])),
        (TypeError, "reduce_mean: keepdims must be a bool",
         lambda: hg.ops.reduce_mean(x, [1], keepdims=1)),
        (ValueError, r"pad2d: pads \(top, left, bottom, right\) must be >= 0, got \(1, -1, 0, 0\)",
         lambda: hg.ops.pad2d(x, [1, -1, 0, 0])),
        (ValueError, r"pad2d: pads must be \(top, left, bottom, right\)",
         lambda: hg.ops.pad2d(x, [1, 1])),
        (ValueError, "pad2d: x must have 4 dimensions",
         lambda: hg.ops.pad2d(np.ones((2, 3), F), [0, 0, 0, 0])),
        (TypeError, "pad2d: value must be a real number",
         lambda: hg.ops.pad2d(x, [0] * 4, value="0")),
    ]
    for exc, pattern, call in cases:
        with pytest.raises(exc, match=pattern):
            call()
