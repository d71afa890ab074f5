from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check, to_dev
from tests.op_cases import OPS
from tests.reference import pool as ref

# (x shape, kernel, stride (None: = kernel), padding): see tests/op_cases.py
CASES = OPS["max_pool2d"].params["cases"]
IDS = [f"{s[0]}-k{s[1]}-s{s[2]}-p{s[3]}".replace(" ", "") for s in CASES]


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def geometry(kernel, stride, padding):
    k = pair(kernel)
    return k, k if stride is None else pair(stride), pair(padding)


def distinct_inputs(rng, shape) -> np.ndarray:
    """Distinct values of random sign and scale, exact in float32 (so max pooling has no ties)."""
    n = int(np.prod(shape))
    scale = 2.0 ** int(rng.integers(-12, 12))
    return ((rng.permutation(n) - n // 2) * scale).reshape(shape).astype(np.float32)


def out_shape(shape, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = geometry(kernel, stride, padding)
    return (shape[0], shape[1], ref.out_size(shape[2], kh, sh, ph),
            ref.out_size(shape[3], kw, sw, pw))


@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=IDS)
def test_max_pool2d_matches_float64(device, impl, rng, shape, kernel, stride, padding):
    x = distinct_inputs(rng, shape)
    y, argmax = hg.ops.max_pool2d(to_dev(x, device), kernel, stride=stride, padding=padding,
                                  impl=impl)
    y_ref, argmax_ref = ref.max_pool2d(x, *geometry(kernel, stride, padding))
    assert y.device == device and argmax.dtype == "int64"
    check(y, y_ref, rtol=0, atol=0, what="max_pool2d y")
    np.testing.assert_array_equal(argmax.numpy(), argmax_ref)


@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=IDS)
def test_max_pool2d_backward_matches_float64(device, impl, rng, shape, kernel, stride, padding):
    x = distinct_inputs(rng, shape)
    _, argmax = hg.ops.max_pool2d(to_dev(x, device), kernel, stride=stride, padding=padding)
    dy = rng.standard_normal(out_shape(shape, kernel, stride, padding)).astype(np.float32)
    dx = hg.ops.max_pool2d_backward(to_dev(dy, device), argmax, shape, impl=impl)
    assert dx.device == device
    check(dx, ref.max_pool2d_backward(dy, argmax.numpy(), shape), rtol=1e-6, atol=1e-6,
          what="max_pool2d_backward")


@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=IDS)
def test_avg_pool2d_matches_float64(device, impl, rng, shape, kernel, stride, padding):
    x = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)).astype(np.float32)
    y = hg.ops.avg_pool2d(to_dev(x, device), kernel, stride=stride, padding=padding, impl=impl)
    assert y.device == device
    scale = float(np.abs(x).max())
    check(y, ref.avg_pool2d(x, *geometry(kernel, stride, padding)), rtol=1e-5, atol=1e-6 * scale,
          what="avg_pool2d")


@pytest.mark.parametrize("shape, kernel, stride, padding", CASES, ids=IDS)
def test_avg_pool2d_backward_matches_float64(device, impl, rng, shape, kernel, stride, padding):
    dy = rng.standard_normal(out_shape(shape, kernel, stride, padding)).astype(np.float32)
    dx = hg.ops.avg_pool2d_backward(to_dev(dy, device), shape, kernel, stride=stride,
                                    padding=padding, impl=impl)
    assert dx.device == device
    check(dx, ref.avg_pool2d_backward(dy, shape, *geometry(kernel, stride, padding)), rtol=1e-5,
          atol=1e-6, what="avg_pool2d_backward")


FD_CASES = [((1, 2, 5, 6), 2, 1, 1), ((2, 1, 7, 5), (3, 2), (2, 1), (1, 0)),
            ((1, 1, 4, 7), 3, 3, 1)]


@pytest.mark.parametrize("pool", ["max", "avg"])
@pytest.mark.parametrize("shape, kernel, stride, padding", FD_CASES)
def test_pool_backward_matches_finite_differences(device, rng, pool, shape, kernel, stride,
                                                  padding):
    # Loss = sum(w * pool(x)). Values are multiples of 1/8, at least 1/8 apart, and the step is
    # 2^-6: x +- h is exact and no maximum changes place.
    x = ((rng.permutation(int(np.prod(shape))) - 20) / 8.0).reshape(shape).astype(np.float32)
    h = np.float32(2.0**-6)
    w = rng.standard_normal(out_shape(shape, kernel, stride, padding))

    def forward(v):
        t = to_dev(v, device)
        if pool == "max":
            return hg.ops.max_pool2d(t, kernel, stride=stride, padding=padding)[0].numpy()
        return hg.ops.avg_pool2d(t, kernel, stride=stride, padding=padding).numpy()

    fd = np.empty(x.size)
    for i in range(x.size):
        xp, xm = x.copy().reshape(-1), x.copy().reshape(-1)
        xp[i] += h
        xm[i] -= h
        fd[i] = (np.sum(w * forward(xp.reshape(shape))) -
                 np.sum(w * forward(xm.reshape(shape)))) / (2 * h)
    dy = to_dev(w.astype(np.float32), device)
    if pool == "max":
        _, argmax = hg.ops.max_pool2d(to_dev(x, device), kernel, stride=stride, padding=padding)
        dx = hg.ops.max_pool2d_backward(dy, argmax, shape)
    else:
        dx = hg.ops.avg_pool2d_backward(dy, shape, kernel, stride=stride, padding=padding)
    check(dx, fd.reshape(shape), rtol=1e-4, atol=1e-4, what=f"{pool}_pool2d backward vs FD")


def test_max_pool2d_ties_pick_the_first_in_row_major_order(device, impl, rng):
    # Three values only: most windows hold tied maxima. PyTorch's CPU kernel (and ours) keeps the
    # first maximum met scanning the window row by row; padding never wins.
    x = rng.integers(0, 3, (2, 3, 8, 11)).astype(np.float32)
    y, argmax = hg.ops.max_pool2d(to_dev(x, device), 3, stride=(1, 2), padding=1, impl=impl)
    y_ref, argmax_ref = ref.max_pool2d(x, (3, 3), (1, 2), (1, 1))
    check(y, y_ref, rtol=0, atol=0, what="tied max")
    np.testing.assert_array_equal(argmax.numpy(), argmax_ref)
    flat = np.full((1, 1, 2, 3), -np.inf, np.float32)
    y, argmax = hg.ops.max_pool2d(to_dev(flat, device), 2, stride=1, padding=1, impl=impl)
    np.testing.assert_array_equal(argmax.numpy()[0, 0], [[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 4, 5]])


def test_max_pool2d_propagates_nan(device):
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 1, 2] = np.nan
    y, argmax = hg.ops.max_pool2d(to_dev(x, device), 2)
    assert np.isnan(y.numpy()[0, 0, 0, 1]) and argmax.numpy()[0, 0, 0, 1] == 6
    assert not np.isnan(np.delete(y.numpy().ravel(), 1)).any()


def test_stride_none_means_kernel(device, rng):
    x = rng.standard_normal((2, 2, 9, 10)).astype(np.float32)
    t = to_dev(x, device)
    a, ia = hg.ops.max_pool2d(t, (3, 2))
    b, ib = hg.ops.max_pool2d(t, (3, 2), stride=(3, 2))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(ia.numpy(), ib.numpy())
    np.testing.assert_array_equal(hg.ops.avg_pool2d(t, 3).numpy(),
                                  hg.ops.avg_pool2d(t, 3, stride=3).numpy())


def test_pool_empty_batch(device):
    x = to_dev(np.zeros((0, 3, 5, 5), np.float32), device)
    y, argmax = hg.ops.max_pool2d(x, 2)
    assert tuple(y.shape) == (0, 3, 2, 2) and tuple(argmax.shape) == (0, 3, 2, 2)
    assert tuple(hg.ops.avg_pool2d(x, 2).shape) == (0, 3, 2, 2)
    assert tuple(hg.ops.max_pool2d_backward(y, argmax, (0, 3, 5, 5)).shape) == (0, 3, 5, 5)
    assert tuple(hg.ops.avg_pool2d_backward(y, (0, 3, 5, 5), 2).shape) == (0, 3, 5, 5)


def test_pool_reports_what_ran(impl, rng):
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    for op, name in [(lambda: hg.ops.max_pool2d(x, 2, impl=impl), "max_pool2d"),
                     (lambda: hg.ops.avg_pool2d(x, 2, impl=impl), "avg_pool2d")]:
        op()
        ran = hg.ops.last_impl()
        assert ran["op"] == name and ran["impl"].startswith(f"cpu.{name}"), ran
        assert ("vendor fallback" in ran["impl"]) == (impl == "vendor"), ran


def test_pool_rejects_bad_input():
    x = np.ones((1, 2, 5, 5), np.float32)
    dy = np.ones((1, 2, 2, 2), np.float32)
    argmax = np.zeros((1, 2, 2, 2), np.int64)
    for pool in (hg.ops.max_pool2d, hg.ops.avg_pool2d):
        with pytest.raises(ValueError, match=r"stride must be >= 1, got \(0, 0\)"):
            pool(x, 2, stride=0)
        with pytest.raises(ValueError, match=r"kernel must be >= 1"):
            pool(x, (0, 2))
        with pytest.raises(ValueError, match=r"padding must be >= 0"):
            pool(x, 2, padding=-1)
        with pytest.raises(ValueError, match=r"padding must be at most half the kernel"):
            pool(x, 3, padding=2)
        with pytest.raises(ValueError, match=r"padding must be at most half the kernel"):
            pool(x, (3, 2), padding=(1, 2))
        with pytest.raises(ValueError, match=r"kernel \(6, 6\) is larger than the padded input"):
            pool(x, 6)
        with pytest.raises(ValueError, match=r"x must have 4 dimensions, got shape \(2, 5, 5\)"):
            pool(x[0], 2)
        with pytest.raises(TypeError, match="x must be float32"):
            pool(x.astype(np.int64), 2)
        with pytest.raises(TypeError, match="kernel must be an int or an"):
            pool(x, 2.0)
        with pytest.raises(TypeError, match="stride must be an int or an"):
            pool(x, 2, stride=(1, 2, 3))
        with pytest.raises(ValueError, match="impl must be"):
            pool(x, 2, impl="fast")
    with pytest.raises(TypeError, match="argmax must be int64, got int32"):
        hg.ops.max_pool2d_backward(dy, argmax.astype(np.int32), x.shape)
    with pytest.raises(ValueError, match=r"argmax must have shape \(1, 2, 2, 2\)"):
        hg.ops.max_pool2d_backward(dy, argmax[:, :1], x.shape)
    with pytest.raises(ValueError, match=r"argmax holds indices outside \[0, H\*W\) = \[0, 25\)"):
        hg.ops.max_pool2d_backward(dy, argmax + 25, x.shape)
    with pytest.raises(ValueError, match=r"argmax holds indices outside"):
        hg.ops.max_pool2d_backward(dy, argmax - 1, x.shape)
    with pytest.raises(ValueError, match="x_shape must have 4 entries"):
        hg.ops.max_pool2d_backward(dy, argmax, (2, 5, 5))
    with pytest.raises(ValueError,
                       match=r"x_shape \(3, 2, 5, 5\) and dy \(1, 2, 2, 2\) must agree"):
        hg.ops.max_pool2d_backward(dy, argmax, (3, 2, 5, 5))
    with pytest.raises(TypeError, match="dy must be float32"):
        hg.ops.max_pool2d_backward(argmax, argmax, x.shape)
    with pytest.raises(ValueError, match=r"dy must have 4 dimensions"):
        hg.ops.avg_pool2d_backward(dy[0], x.shape, 2)
    with pytest.raises(ValueError, match=r"dy must have shape \(1, 2, 3, 3\) for x_shape"):
        hg.ops.avg_pool2d_backward(dy, (1, 2, 7, 7), 2)
    with pytest.raises(ValueError, match=r"x_shape \(1, 3, 5, 5\) and dy"):
        hg.ops.avg_pool2d_backward(dy, (1, 3, 5, 5), 2)
    with pytest.raises(ValueError, match="x_shape must hold non-negative sizes"):
        hg.ops.avg_pool2d_backward(dy, (1, 2, -5, 5), 2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        hg.ops.avg_pool2d_backward(dy, x.shape, 2, stride=(1, 0))


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")


@pytest.mark.parametrize("shape, kernel, stride, padding", CASES[1:5], ids=IDS[1:5])
def test_pools_match_torch(rng, shape, kernel, stride, padding):
    torch = _torch()
    F = torch.nn.functional
    k, s, p = geometry(kernel, stride, padding)
    x = distinct_inputs(rng, shape)
    dy = rng.standard_normal(out_shape(shape, kernel, stride, padding)).astype(np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt, it = F.max_pool2d(xt, k, s, p, return_indices=True)
    yt.backward(torch.from_numpy(dy))
    y, argmax = hg.ops.max_pool2d(x, kernel, stride=stride, padding=padding)
    check(y, yt.detach().double().numpy(), rtol=0, atol=0, what="max_pool2d vs torch")
    np.testing.assert_array_equal(argmax.numpy(), it.numpy())
    check(hg.ops.max_pool2d_backward(dy, argmax, shape), xt.grad.double().numpy(), rtol=1e-6,
          atol=1e-6, what="max_pool2d_backward vs torch")
    xt.grad = None
    yt = F.avg_pool2d(xt, k, s, p)  # count_include_pad=True, PyTorch's default
    yt.backward(torch.from_numpy(dy))
    check(hg.ops.avg_pool2d(x, kernel, stride=stride, padding=padding),
          yt.detach().double().numpy(), rtol=1e-5, atol=1e-5 * float(np.abs(x).max()),
          what="avg_pool2d vs torch")
    check(hg.ops.avg_pool2d_backward(dy, shape, kernel, stride=stride, padding=padding),
          xt.grad.double().numpy(), rtol=1e-5, atol=1e-6, what="avg_pool2d_backward vs torch")


# ---- the forward kernel's paths (csrc/cpu/pool.cpp) -------------------------------------------
# Planes of at most 1024 elements with rows of fewer than 32 outputs go 8 to a vector (the
# N*C % 8 leftover planes, and every plane of a smaller batch, take the row path); others run
# the row path, vectorized along q for 2x2 / 3x3 stride 2 and 3x3 stride 1. Both fold without
# the NaN test when a block of input holds no NaN. (N*C, H, W): N*C from 1 to 257, plane sizes
# 1x1 to 40x70; the last two are large enough to run on two threads.
PATH_PLANES = [(1, 1, 1), (3, 3, 5), (8, 7, 7), (9, 8, 8), (17, 9, 13), (257, 3, 5), (16, 1, 33),
               (2, 40, 70), (257, 16, 16), (12, 40, 70)]
# (kernel, stride, padding): stride equal to and unlike the kernel, padding 0 and > 0.
PATH_GEOMETRIES = [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (2, 3, 1), (1, 2, 0),
                   ((3, 2), (2, 3), (1, 0)), ((2, 3), (1, 2), (1, 1))]


def fits(planes, kernel, padding) -> bool:
    """The kernel is no larger than the padded plane."""
    (kh, kw), _, (ph, pw) = geometry(kernel, None, padding)
    return planes[1] + 2 * ph >= kh and planes[2] + 2 * pw >= kw


PATH_CASES = [
    pytest.param(planes, kernel, stride, padding, threads,
                 id=f"{planes}-k{kernel}-s{stride}-p{padding}-t{threads}".replace(" ", ""))
    for planes in PATH_PLANES
    for kernel, stride, padding in PATH_GEOMETRIES
    for threads in (1, 2)
    # the two largest planes with the square kernels only
    if fits(planes, kernel, padding) and (np.prod(planes) < 30000 or kernel in (2, 3))
]


@pytest.fixture
def threads():
    """Runs the test body at a given CPU thread count and restores the previous one."""
    before = hg.get_num_threads()

    def use(n: int) -> None:
        hg.set_num_threads(n)

    yield use
    hg.set_num_threads(before)


def nan_filled(shape) -> hg.Tensor:
    return hg.tensor(np.full(shape, np.nan, np.float32))


def assert_same_bits(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """Bit for bit (signed zeros and NaN payloads included)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32), err_msg=what)


@pytest.mark.parametrize("planes, kernel, stride, padding, n_threads", PATH_CASES)
def test_forward_paths_match_float64(rng, threads, planes, kernel, stride, padding, n_threads):
    threads(n_threads)
    nc, H, W = planes
    shape = (nc, 1, H, W) if nc % 2 else (2, nc // 2, H, W)
    k, s, p = geometry(kernel, stride, padding)
    x = distinct_inputs(rng, shape)
    y_ref, argmax_ref = ref.max_pool2d(x, k, s, p)
    y, argmax = hg.ops.max_pool2d(x, kernel, stride=stride, padding=padding)
    check(y, y_ref, rtol=0, atol=0, what="max_pool2d y")
    np.testing.assert_array_equal(argmax.numpy(), argmax_ref)
    y_only, none = hg.ops.max_pool2d(x, kernel, stride=stride, padding=padding, with_argmax=False)
    assert none is None
    assert_same_bits(y_only.numpy(), y.numpy(), "max_pool2d y without argmax")
    out = nan_filled(y_ref.shape)
    hg.ops.max_pool2d(x, kernel, stride=stride, padding=padding, with_argmax=False, out=out)
    check(out, y_ref, rtol=0, atol=0, what="max_pool2d into out")

    x = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)).astype(np.float32)
    a_ref = ref.avg_pool2d(x, k, s, p)
    tol = {"rtol": 1e-5, "atol": 1e-6 * float(np.abs(x).max())}
    check(hg.ops.avg_pool2d(x, kernel, stride=stride, padding=padding), a_ref, **tol,
          what="avg_pool2d")
    out = nan_filled(a_ref.shape)
    hg.ops.avg_pool2d(x, kernel, stride=stride, padding=padding, out=out)
    check(out, a_ref, **tol, what="avg_pool2d into out")


NAN_CASES = [((2, 5, 9, 13), 2, None, 0), ((1, 17, 8, 8), 3, 2, 1), ((3, 3, 7, 7), 2, 1, 1),
             ((1, 257, 4, 4), 2, None, 0), ((2, 3, 40, 70), 2, None, 0), ((1, 4, 40, 70), 3, 2, 1),
             ((1, 9, 3, 5), (3, 2), (2, 3), (1, 0))]


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape, kernel, stride, padding", NAN_CASES)
def test_max_pool2d_nan_and_inf_windows(rng, threads, shape, kernel, stride, padding, n_threads):
    # NaN in some windows (now and then two in one: the last wins), -inf runs, whole windows
    # of -inf (they point at their first element): the NaN-free blocks take the plain max fold,
    # the others the NaN-aware one.
    threads(n_threads)
    x = distinct_inputs(rng, shape)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, flat.size // 5, replace=False)] = -np.inf
    x[:, -1] = -np.inf  # the last plane of each image: nothing but -inf
    flat[rng.choice(flat.size, flat.size // 97, replace=False)] = np.nan
    x[0, 0, 0, 0] = np.nan  # in the first window of every geometry
    k, s, p = geometry(kernel, stride, padding)
    y_ref, argmax_ref = ref.max_pool2d(x, k, s, p)
    assert np.isnan(y_ref).any() and np.isneginf(y_ref).any()
    for with_argmax in (True, False):
        y, argmax = hg.ops.max_pool2d(x, kernel, stride=stride, padding=padding,
                                      with_argmax=with_argmax)
        check(y, y_ref, rtol=0, atol=0, what=f"max_pool2d y (with_argmax={with_argmax})")
        if with_argmax:
            np.testing.assert_array_equal(argmax.numpy(), argmax_ref)
            y_first = y.numpy()
    assert_same_bits(y.numpy(), y_first, "max_pool2d y without argmax")
    a_ref = ref.avg_pool2d(x, k, s, p)
    check(hg.ops.avg_pool2d(x, kernel, stride=stride, padding=padding), a_ref, rtol=1e-5,
          atol=1e-6 * float(np.abs(x[np.isfinite(x)]).max()), what="avg_pool2d with NaN, -inf")


@pytest.mark.parametrize("shape, kernel, stride, padding",
                         [((1, 16, 8, 8), 2, None, 0), ((1, 3, 9, 13), 3, 2, 1),
                          ((2, 2, 40, 70), 3, 1, 1), ((1, 8, 5, 5), (2, 3), 1, (1, 1))])
def test_max_pool2d_signed_zero_ties_keep_the_first(rng, shape, kernel, stride, padding):
    # Maxima of +0 and -0 tie: y is the first in row-major window order, bit for bit, with and
    # without argmax.
    x = rng.choice(np.array([-0.0, 0.0, -1.0], np.float32), shape)
    y_ref, argmax_ref = ref.max_pool2d(x, *geometry(kernel, stride, padding))
    y, argmax = hg.ops.max_pool2d(x, kernel, stride=stride, padding=padding)
    np.testing.assert_array_equal(argmax.numpy(), argmax_ref)
    assert_same_bits(y.numpy(), y_ref, "max_pool2d y")
    y_only, _ = hg.ops.max_pool2d(x, kernel, stride=stride, padding=padding, with_argmax=False)
    assert_same_bits(y_only.numpy(), y_ref, "max_pool2d y without argmax")


@pytest.mark.parametrize("shape, kernel, stride, padding",
                         [((2, 9, 8, 8), 2, None, 0), ((1, 3, 9, 13), 3, 2, 1)])
def test_max_pool2d_nan_windows_match_torch(rng, shape, kernel, stride, padding):
    torch = _torch()
    x = distinct_inputs(rng, shape)
    x.reshape(-1)[rng.choice(x.size, x.size // 4, replace=False)] = np.nan  # often 2+ per window
    yt, it = torch.nn.functional.max_pool2d(torch.from_numpy(x), *geometry(kernel, stride,
                                                                           padding),
                                            return_indices=True)
    y, argmax = hg.ops.max_pool2d(x, kernel, stride=stride, padding=padding)
    check(y, yt.double().numpy(), rtol=0, atol=0, what="max_pool2d vs torch, NaN windows")
    np.testing.assert_array_equal(argmax.numpy(), it.numpy())


@pytest.mark.parametrize("shape, kernel, stride, padding",
                         [((1, 2, 40, 70), 2, None, 0), ((1, 2, 40, 70), 3, 2, 1),
                          ((1, 9, 8, 8), 2, None, 0), ((1, 9, 9, 13), 3, 2, 1)])
def test_max_pool2d_one_nan_in_any_row(rng, shape, kernel, stride, padding):
    # A single NaN, in turn in every row of every plane (at a random column): NaN-free blocks of
    # input take the plain max fold, so the NaN test must cover every row a block reads.
    (kh, kw), (sh, sw), (ph, pw) = geometry(kernel, stride, padding)
    x = distinct_inputs(rng, shape)
    y_clean, argmax_clean = ref.max_pool2d(x, (kh, kw), (sh, sw), (ph, pw))
    P, Q = y_clean.shape[2:]
    for c in range(shape[1]):
        for h in range(shape[2]):
            w = int(rng.integers(shape[3]))
            xn = x.copy()
            xn[0, c, h, w] = np.nan
            y_ref, argmax_ref = y_clean.copy(), argmax_clean.copy()
            rows = [p for p in range(P) if 0 <= h - (p * sh - ph) < kh]
            cols = [q for q in range(Q) if 0 <= w - (q * sw - pw) < kw]
            y_ref[0, c][np.ix_(rows, cols)] = np.nan
            argmax_ref[0, c][np.ix_(rows, cols)] = h * shape[3] + w
            y, argmax = hg.ops.max_pool2d(xn, kernel, stride=stride, padding=padding)
            check(y, y_ref, rtol=0, atol=0, what=f"NaN at c={c} h={h} w={w}")
            np.testing.assert_array_equal(argmax.numpy(), argmax_ref)
            y_only, _ = hg.ops.max_pool2d(xn, kernel, stride=stride, padding=padding,
                                          with_argmax=False)
            check(y_only, y_ref, rtol=0, atol=0, what=f"NaN at c={c} h={h} w={w}, no argmax")


# ---- ceil mode and count_include_pad=False (ONNX / PyTorch) -------------------------------------
# (x shape, kernel, stride, padding): SqueezeNet's 3x3 s2 (7 outputs where floor gives 6), a last
# window that would start in the padding (dropped), windows reaching past the padding, rows long
# enough for the CPU's rows path (Q >= 32) and planes for its lanes path.
CEIL_CASES = [((1, 2, 14, 14), 3, 2, 0), ((2, 3, 5, 6), 2, 2, 1),
              ((1, 1, 7, 9), (3, 2), (2, 3), (1, 0)), ((1, 2, 4, 4), 3, 3, 1),
              ((3, 3, 9, 11), 3, 2, 1), ((1, 2, 7, 67), (2, 3), 2, (1, 1))]
CEIL_IDS = [f"{s[0]}-k{s[1]}-s{s[2]}-p{s[3]}".replace(" ", "") for s in CEIL_CASES]


def _ceil_shape(shape, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = geometry(kernel, stride, padding)
    return (shape[0], shape[1], ref.out_size(shape[2], kh, sh, ph, True),
            ref.out_size(shape[3], kw, sw, pw, True))


@pytest.mark.parametrize("shape, kernel, stride, padding", CEIL_CASES, ids=CEIL_IDS)
def test_max_pool2d_ceil_mode_matches_float64(device, impl, rng, shape, kernel, stride, padding):
    x = distinct_inputs(rng, shape)
    y, argmax = hg.ops.max_pool2d(to_dev(x, device), kernel, stride=stride, padding=padding,
                                  ceil_mode=True, impl=impl)
    y_ref, argmax_ref = ref.max_pool2d(x, *geometry(kernel, stride, padding), ceil_mode=True)
    check(y, y_ref, rtol=0, atol=0, what="max_pool2d ceil_mode y")
    np.testing.assert_array_equal(argmax.numpy(), argmax_ref)
    y2, _ = hg.ops.max_pool2d(to_dev(x, device), kernel, stride=stride, padding=padding,
                              ceil_mode=True, with_argmax=False, impl=impl)
    check(y2, y_ref, rtol=0, atol=0, what="max_pool2d ceil_mode without argmax")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("ceil_mode", [True, False])
@pytest.mark.parametrize("shape, kernel, stride, padding", CEIL_CASES, ids=CEIL_IDS)
def test_avg_pool2d_modes_match_float64(device, impl, rng, shape, kernel, stride, padding,
                                        ceil_mode, count_include_pad):
    x = rng.standard_normal(shape).astype(np.float32)
    kw = dict(stride=stride, padding=padding, ceil_mode=ceil_mode,
              count_include_pad=count_include_pad)
    y = hg.ops.avg_pool2d(to_dev(x, device), kernel, impl=impl, **kw)
    g = geometry(kernel, stride, padding)
    check(y, ref.avg_pool2d(x, *g, ceil_mode, count_include_pad), rtol=1e-5, atol=1e-6,
          what="avg_pool2d")
    dy = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    dx = hg.ops.avg_pool2d_backward(to_dev(dy, device), shape, kernel, impl=impl, **kw)
    check(dx, ref.avg_pool2d_backward(dy, shape, *g, ceil_mode, count_include_pad), rtol=1e-5,
          atol=1e-6, what="avg_pool2d_backward")


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_ceil_backward_matches_finite_differences(device, rng, count_include_pad):
    shape, kernel, stride, padding = (1, 2, 5, 6), 2, 2, 1
    x = rng.standard_normal(shape)
    kw = dict(stride=stride, padding=padding, ceil_mode=True, count_include_pad=count_include_pad)
    w = rng.standard_normal(_ceil_shape(shape, kernel, stride, padding))

    def loss(v):
        y = hg.ops.avg_pool2d(to_dev(v.astype(np.float32), device), kernel, **kw).numpy()
        return float(np.sum(w * y))

    h = 0.25  # the op is linear: any step is exact up to rounding
    fd = np.empty(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        fd[i] = (loss(x + e.reshape(shape)) - loss(x - e.reshape(shape))) / (2 * h)
    dx = hg.ops.avg_pool2d_backward(to_dev(w.astype(np.float32), device), shape, kernel, **kw)
    check(dx, fd.reshape(shape), rtol=1e-4, atol=1e-4, what="avg_pool2d ceil backward vs FD")


@pytest.mark.parametrize("shape, kernel, stride, padding", CEIL_CASES, ids=CEIL_IDS)
def test_pool_modes_match_torch(rng, shape, kernel, stride, padding):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = distinct_inputs(rng, shape)
    xt = torch.from_numpy(x)
    want, idx = F.max_pool2d(xt, kernel, stride, padding, ceil_mode=True, return_indices=True)
    y, argmax = hg.ops.max_pool2d(x, kernel, stride=stride, padding=padding, ceil_mode=True)
    np.testing.assert_array_equal(y.numpy(), want.numpy())
    np.testing.assert_array_equal(argmax.numpy(), idx.numpy())
    for count_include_pad in (True, False):
        want = F.avg_pool2d(xt, kernel, stride, padding, ceil_mode=True,
                            count_include_pad=count_include_pad)
        y = hg.ops.avg_pool2d(x, kernel, stride=stride, padding=padding, ceil_mode=True,
                              count_include_pad=count_include_pad)
        check(y, want.double().numpy(), rtol=1e-5, atol=1e-6 * float(np.abs(x).max()),
              what=f"avg_pool2d count_include_pad={count_include_pad} vs torch")


def test_pool_mode_flags_must_be_bools():
    x = np.ones((1, 1, 4, 4), np.float32)
    with pytest.raises(TypeError, match="max_pool2d: ceil_mode must be a bool"):
        hg.ops.max_pool2d(x, 2, ceil_mode=1)
    with pytest.raises(TypeError, match="avg_pool2d: count_include_pad must be a bool"):
        hg.ops.avg_pool2d(x, 2, count_include_pad="False")


def test_pool_layers_with_modes_run_in_the_graph_engine(rng):
    from hipgrad import nn

    for layer in (nn.MaxPool2d(3, stride=2, ceil_mode=True),
                  nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)):
        model = nn.Sequential(layer, nn.Flatten()).eval()
        x = rng.standard_normal((2, 3, 10, 9)).astype(np.float32)
        engine = hg.InferenceEngine.from_model(model)
        np.testing.assert_allclose(engine.forward(x), model(hg.tensor(x)).numpy(), rtol=1e-6, atol=1e-6)
    steps = nn.AvgPool2d(2).to_steps("p")
    assert steps[0].attrs["ceil_mode"] is False and steps[0].attrs["count_include_pad"] is True
