from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import DEVICES, check, to_dev
from tests.op_cases import OPS
from tests.reference import conv as ref

# (N, C, H, W, K, R, S, stride, padding, dilation, groups, bias)
CASES = OPS["conv2d"].params["cases"]


def _ids(case):
    N, C, H, W, K, R, S, st, pd, dl, g, b = case
    return f"N{N}C{C}H{H}W{W}K{K}R{R}S{S}-st{st}-pd{pd}-dl{dl}-g{g}{'-bias' if b else ''}"


def _inputs(rng, case, device):
    N, C, H, W, K, R, S, st, pd, dl, g, b = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C // g, R, S)).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32) if b else None
    hyper = {"stride": st, "padding": pd, "dilation": dl, "groups": g}
    dev = {k: None if v is None else to_dev(v, device)
           for k, v in (("x", x), ("w", w), ("b", bias))}
    return x, w, bias, hyper, dev


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_conv2d_and_backward_match_float64(device, impl, rng, case):
    x, w, bias, hyper, d = _inputs(rng, case, device)
    taps = w.shape[1] * w.shape[2] * w.shape[3]
    y = hg.ops.conv2d(d["x"], d["w"], d["b"], **hyper, impl=impl)
    assert y.device == device
    expected = ref.conv2d(x, w, bias, **hyper)
    check(y, expected, atol=1e-4 * np.sqrt(taps), what=f"conv2d {case} impl={impl}")

    dy = rng.standard_normal(expected.shape).astype(np.float32)
    dx = hg.ops.conv2d_backward_data(to_dev(dy, device), d["w"], x.shape, **hyper, impl=impl)
    assert dx.device == device
    K = w.shape[0]
    check(dx, ref.conv2d_backward_data(dy, w, x.shape, **hyper),
          atol=1e-4 * np.sqrt(K * taps), what=f"conv2d_backward_data {case} impl={impl}")

    dw = hg.ops.conv2d_backward_weight(to_dev(dy, device), d["x"], w.shape, **hyper, impl=impl)
    assert dw.device == device
    terms = expected.shape[0] * expected.shape[2] * expected.shape[3]
    check(dw, ref.conv2d_backward_weight(dy, x, w.shape, **hyper),
          atol=1e-4 * np.sqrt(terms), what=f"conv2d_backward_weight {case} impl={impl}")


def _forward_candidates(device: str) -> list[str]:
    backend = device.split(":")[0]
    return [r["kernel"] for r in hg.build_info()["kernels"]
            if r["op"] == "conv2d_forward" and r["backend"] == backend
            and "fallback" not in r["note"]]


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_conv2d_every_forward_candidate_matches_float64(device, rng, case):
    """Each kernel impl="auto" may choose (default, alternates, vendor), forced by name."""
    x, w, bias, hyper, d = _inputs(rng, case, device)
    taps = w.shape[1] * w.shape[2] * w.shape[3]
    expected = ref.conv2d(x, w, bias, **hyper)
    names = _forward_candidates(device)
    # A GPU build without vendor libraries (the AMD CI flavour, the simulated device) has only
    # the handwritten kernel; the CPU always has a second candidate.
    assert len(names) >= (2 if device == "cpu" else 1), names
    for name in names:
        with hg.ops.force_kernel("conv2d_forward", name):
            y = hg.ops.conv2d(d["x"], d["w"], d["b"], **hyper)
        assert hg.ops.last_impl()["impl"] == name
        check(y, expected, atol=1e-4 * np.sqrt(taps), what=f"conv2d {case} {name}")


@pytest.mark.parametrize("plane", [20, 4])
@pytest.mark.parametrize("N", [1, 2, 3, 9, 37])
def test_conv2d_thread_splits_agree(impl, rng, N, plane):
    """Images spread over threads and images one at a time (GEMM threaded) give one answer;
    4x4 planes go several images per GEMM (chunks spread over threads)."""
    case = (N, 16, plane, plane, 32, 3, 3, 1, 1, 1, 1, True)
    x, w, bias, hyper, _ = _inputs(rng, case, "cpu")
    threads = hg.get_num_threads()
    try:
        for t in sorted({1, 2, threads}):
            hg.set_num_threads(t)
            y = hg.ops.conv2d(x, w, bias, **hyper, impl=impl)
            check(y, ref.conv2d(x, w, bias, **hyper), atol=1e-3, what=f"conv2d N={N} threads={t}")
            dy = np.ones(y.shape, np.float32)
            dw = hg.ops.conv2d_backward_weight(dy, x, w.shape, **hyper, impl=impl)
            check(dw, ref.conv2d_backward_weight(dy, x, w.shape, **hyper), atol=1e-2,
                  what=f"conv2d_backward_weight N={N} threads={t}")
    finally:
        hg.set_num_threads(threads)


# Small shapes for the finite-difference checks: (N, C, H, W, K, R, S, stride, pad, dil, groups)
GRAD_CASES = [
    (2, 3, 6, 5, 4, 3, 3, 2, 1, 1, 1),
    (1, 4, 7, 6, 2, 2, 3, 1, 2, 2, 2),
    (2, 3, 6, 6, 3, 3, 3, (2, 1), 1, 1, 3),  # depthwise
]


def _numeric_grad(f, a: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar f over every element of a (float64 accumulation)."""
    grad = np.zeros(a.shape)
    flat = a.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        plus = f()
        flat[i] = keep - eps
        minus = f()
        flat[i] = keep
        grad.reshape(-1)[i] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: _ids(c + (True,)))
def test_conv2d_backward_matches_finite_differences(device, impl, rng, case):
    """d/dx, d/dw, d/dbias of L = sum(conv2d(x, w, b) * g) against central differences."""
    N, C, H, W, K, R, S, st, pd, dl, g = case
    hyper = {"stride": st, "padding": pd, "dilation": dl, "groups": g}
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((K, C // g, R, S)).astype(np.float32)
    b = rng.standard_normal(K).astype(np.float32)
    y_shape = hg.ops.conv2d(x, w, b, **hyper).shape
    gy = rng.standard_normal(y_shape).astype(np.float32)

    def loss() -> float:
        y = hg.ops.conv2d(to_dev(x, device), to_dev(w, device), to_dev(b, device), **hyper,
                          impl=impl)
        return float(np.sum(y.numpy().astype(np.float64) * gy))

    # L is linear in each of x, w, b, so a large step has no truncation error and keeps the
    # float32 rounding of L small relative to the difference.
    eps = 0.5
    g_dev = to_dev(gy, device)
    dx = hg.ops.conv2d_backward_data(g_dev, to_dev(w, device), x.shape, **hyper, impl=impl)
    check(dx, _numeric_grad(loss, x, eps), rtol=1e-4, atol=1e-4, what="dx vs finite differences")
    dw = hg.ops.conv2d_backward_weight(g_dev, to_dev(x, device), w.shape, **hyper, impl=impl)
    check(dw, _numeric_grad(loss, w, eps), rtol=1e-4, atol=1e-4, what="dw vs finite differences")
    db = hg.ops.bias_backward(g_dev, impl=impl)
    check(db, _numeric_grad(loss, b, eps), rtol=1e-4, atol=1e-4, what="db vs finite differences")


def test_conv2d_reports_what_ran(impl, rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    hg.ops.conv2d(x, rng.standard_normal((4, 3, 3, 3)).astype(np.float32), impl=impl)
    ran = hg.ops.last_impl()
    assert ran["op"] == "conv2d_forward"
    expected = {"handwritten": "cpu.conv2d_im2col_gemm", "vendor": "cpu.conv2d_im2col_openblas"}
    assert ran["impl"].startswith(expected.get(impl, "cpu.conv2d")), ran
    hg.ops.bias_add(x, np.ones(3, np.float32), impl=impl)
    ran = hg.ops.last_impl()
    assert ran["op"] == "bias_add" and ran["impl"].startswith("cpu.bias_add"), ran
    if impl == "vendor":
        assert "vendor fallback" in ran["impl"], ran


def _depthwise_by_index(x, w, dy, stride, padding, dilation):
    """Float64 depthwise y, dx, dw with the padding never materialised: tap (r, s) of output
    (p, q) reads x[h, v] at h = p*sh - ph + r*dh, v = q*sw - pw + s*dw (zero outside x)."""
    (sh, sw), (ph, pw), (dh, dv) = ref.pair(stride), ref.pair(padding), ref.pair(dilation)
    x, w, dy = (np.asarray(a, np.float64) for a in (x, w, dy))
    H, W, R, S = x.shape[2], x.shape[3], w.shape[2], w.shape[3]
    P, Q = ref.out_size(H, R, sh, ph, dh), ref.out_size(W, S, sw, pw, dv)
    y, dx, dw = np.zeros(x.shape[:2] + (P, Q)), np.zeros(x.shape), np.zeros(w.shape)
    for r in range(R):
        h = np.arange(P) * sh - ph + r * dh
        p, h = np.nonzero((h >= 0) & (h < H))[0], h[(h >= 0) & (h < H)]
        for s in range(S):
            v = np.arange(Q) * sw - pw + s * dv
            q, v = np.nonzero((v >= 0) & (v < W))[0], v[(v >= 0) & (v < W)]
            xs, dys = x[:, :, h[:, None], v], dy[:, :, p[:, None], q]
            k = w[None, :, 0, r, s, None, None]
            y[:, :, p[:, None], q] += xs * k
            dx[:, :, h[:, None], v] += dys * k  # h, v distinct within a tap: no repeated index
            dw[:, 0, r, s] += np.einsum("ncpq,ncpq->c", dys, xs)
    return y, dx, dw


@pytest.mark.parametrize("hyper", [
    {"stride": 100000, "padding": 100000},                # ~1e11 padded floats, 3x3 output
    {"stride": 2**30, "padding": 2**30},                  # the plane's size passes 2^63
    {"stride": (1, 3), "padding": (100000, 4), "dilation": (100000, 1)},  # unit-stride rows
])
def test_depthwise_with_a_mostly_skipped_huge_padding(impl, rng, hyper):
    """The direct depthwise kernel copies each plane with its padding; where that copy would
    dwarf the planes the handwritten variant lowers to im2col + GEMM instead: no MemoryError,
    no leaked std::length_error, no process killed for memory."""
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    w = rng.standard_normal((3, 1, 3, 2)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    kw = {**hyper, "groups": 3}
    y = hg.ops.conv2d(x, w, bias, **kw, impl=impl)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want_y, want_dx, want_dw = _depthwise_by_index(x, w, dy, kw["stride"], kw["padding"],
                                                   kw.get("dilation", 1))
    want_y += bias[None, :, None, None]
    check(y, want_y, what=f"conv2d {hyper}")
    check(hg.ops.conv2d_bias_act(x, w, bias, **kw, activation="relu", impl=impl),
          np.maximum(want_y, 0), what=f"conv2d_bias_act {hyper}")
    check(hg.ops.conv2d_backward_data(dy, w, x.shape, **kw, impl=impl), want_dx,
          what=f"conv2d_backward_data {hyper}")
    check(hg.ops.conv2d_backward_weight(dy, x, w.shape, **kw, impl=impl), want_dw,
          what=f"conv2d_backward_weight {hyper}")


def test_conv2d_empty_batch(impl, rng):
    x = np.zeros((0, 3, 5, 5), np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    assert hg.ops.conv2d(x, w, impl=impl).shape == (0, 4, 3, 3)
    dy = np.zeros((0, 4, 3, 3), np.float32)
    assert hg.ops.conv2d_backward_data(dy, w, x.shape, impl=impl).shape == x.shape
    check(hg.ops.conv2d_backward_weight(dy, x, w.shape, impl=impl), np.zeros(w.shape),
          what="dw of an empty batch")


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (129, 300), (3, 7, 31), (1, 3, 1, 1),
                                   (3, 7, 129, 31), (2, 3, 4, 5, 6)])
def test_bias_add_and_backward_match_float64(device, impl, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    y = hg.ops.bias_add(to_dev(x, device), to_dev(b, device), impl=impl)
    assert y.device == device
    check(y, ref.bias_add(x, b), what=f"bias_add {shape}")
    db = hg.ops.bias_backward(to_dev(x, device), impl=impl)
    assert db.device == device
    terms = x.size // shape[1]
    check(db, ref.bias_backward(x), atol=1e-5 * np.sqrt(terms) + 1e-5,
          what=f"bias_backward {shape}")


def test_bias_backward_of_empty_batch_is_zero(impl):
    check(hg.ops.bias_backward(np.zeros((0, 5, 3, 3), np.float32), impl=impl), np.zeros(5),
          what="bias_backward of an empty batch")


@pytest.mark.parametrize("shape", [(2, 3, 0), (2, 3, 0, 4), (0, 3, 5)])
def test_bias_backward_with_an_empty_inner_dimension_is_zero(device, shape):
    """No elements per channel (the GPU's row path divided by the inner size, 0 here)."""
    out = hg.ops.bias_backward(to_dev(np.zeros(shape, np.float32), device))
    check(out, np.zeros(3), what=f"bias_backward {shape}")


X, W = (2, 3, 8, 8), (4, 3, 3, 3)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, error, message", [
    ((2, 3, 8), W, {}, ValueError, r"conv2d: x must have 4 dimensions"),
    (X, (4, 3, 3), {}, ValueError, r"conv2d: w must have 4 dimensions"),
    (X, (4, 2, 3, 3), {}, ValueError,
     r"conv2d: w has 2 input channels per group but x has 3 \(groups=1\)"),
    ((2, 4, 8, 8), (4, 1, 3, 3), {"groups": 2}, ValueError,
     r"w has 1 input channels per group but x has 4 channels, 2 per group \(groups=2\)"),
    (X, W, {"groups": 2}, ValueError, r"x has 3 channels, not divisible by groups=2"),
    ((2, 4, 8, 8), (3, 2, 3, 3), {"groups": 2}, ValueError,
     r"w has 3 output channels .* not divisible by groups=2"),
    (X, W, {"groups": 0}, ValueError, r"groups must be >= 1"),
    (X, W, {"groups": 1.0}, TypeError, r"groups must be an int"),
    (X, W, {"groups": True}, TypeError, r"conv2d: groups must be an int, got True"),
    (X, W, {"stride": 2**64}, ValueError, r"conv2d: stride must fit in a signed 64-bit int"),
    (X, W, {"padding": (0, -2**63 - 1)}, ValueError, r"conv2d: padding must fit in a signed 64"),
    (X, W, {"stride": 0}, ValueError, r"stride must be >= 1"),
    (X, W, {"stride": (1, 2, 3)}, TypeError, r"stride must be an int or an \(h, w\) pair"),
    (X, W, {"dilation": (1, 0)}, ValueError, r"dilation must be >= 1"),
    (X, W, {"padding": -1}, ValueError, r"padding must be >= 0"),
    (X, W, {"padding": "1"}, TypeError, r"padding must be an int"),
    ((2, 3, 2, 8), W, {}, ValueError,
     r"conv2d: kernel larger than padded input: .* spans \(3, 3\) but x .* is \(2, 8\)"),
    ((2, 3, 4, 4), W, {"dilation": 2}, ValueError,
     r"conv2d: kernel larger than padded input: .* w with dilation \(2, 2\) spans \(5, 5\)"),
    (X, W, {"impl": "fast"}, ValueError, r"impl must be"),
])
def test_conv2d_rejects_bad_arguments(x_shape, w_shape, kwargs, error, message):
    x, w = np.ones(x_shape, np.float32), np.ones(w_shape, np.float32)
    with pytest.raises(error, match=message):
        hg.ops.conv2d(x, w, **kwargs)


def test_conv2d_rejects_bad_tensors():
    x, w = np.ones(X, np.float32), np.ones(W, np.float32)
    with pytest.raises(TypeError, match="conv2d: x must be float32"):
        hg.ops.conv2d(np.ones(X, np.int64), w)
    with pytest.raises(TypeError, match="conv2d: w must be float32"):
        hg.ops.conv2d(x, np.ones(W, np.int32))
    with pytest.raises(TypeError, match="conv2d: x must be"):
        hg.ops.conv2d(None, w)
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\)"):
        hg.ops.conv2d(x, w, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"conv2d: bias must have 1 dimensions"):
        hg.ops.conv2d(x, w, np.ones((4, 1), np.float32))


def test_conv2d_backward_rejects_bad_arguments():
    w, x = np.ones(W, np.float32), np.ones(X, np.float32)
    dy = np.ones((2, 4, 6, 6), np.float32)
    op = hg.ops.conv2d_backward_data
    with pytest.raises(ValueError, match="conv2d_backward_data: x_shape must have 4 entries"):
        op(dy, w, (2, 3, 8))
    with pytest.raises(TypeError, match="conv2d_backward_data: x_shape must be a sequence"):
        op(dy, w, 5)
    with pytest.raises(TypeError, match=r"x_shape must be a sequence of 4 ints, got \(2, 3, 8\.7, 8\)"):
        op(dy, w, (2, 3, 8.7, 8))  # never truncated to 8
    with pytest.raises(ValueError,
                       match=r"conv2d_backward_data: dy must have shape \(2, 4, 8, 8\)"):
        op(dy, w, X, padding=1)
    with pytest.raises(ValueError, match="w has 3 input channels per group but x_shape has 5"):
        op(dy, w, (2, 5, 8, 8))
    with pytest.raises(TypeError, match="conv2d_backward_data: dy must be float32"):
        op(dy.astype(np.int64), w, X)
    op = hg.ops.conv2d_backward_weight
    with pytest.raises(ValueError, match="conv2d_backward_weight: w_shape must have 4 entries"):
        op(dy, x, (4, 3, 3))
    with pytest.raises(ValueError,
                       match=r"conv2d_backward_weight: dy must have shape \(2, 4, 3, 3\)"):
        op(dy, x, W, stride=2)
    with pytest.raises(ValueError, match="w_shape has 2 input channels per group but x has 3"):
        op(dy, x, (4, 2, 3, 3))
    with pytest.raises(ValueError, match="conv2d_backward_weight: x must have 4 dimensions"):
        op(dy, x[0], W)
    with pytest.raises(ValueError,
                       match="conv2d_backward_weight: w_shape must have non-zero sizes"):
        op(dy, x, (4, 3, 0, 3))
    with pytest.raises(TypeError, match="w_shape must be a sequence of 4 ints"):
        op(dy, x, (4, 3, 3.0, 3))


def test_bias_ops_reject_bad_arguments():
    with pytest.raises(ValueError, match="bias_add: x must have at least 2 dimensions"):
        hg.ops.bias_add(np.ones(3, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"bias_add: bias must have shape \(3,\)"):
        hg.ops.bias_add(np.ones((2, 3), np.float32), np.ones(2, np.float32))
    with pytest.raises(TypeError, match="bias_add: bias must be float32"):
        hg.ops.bias_add(np.ones((2, 3), np.float32), np.ones(3, np.int64))
    with pytest.raises(ValueError, match="bias_backward: dy must have at least 2 dimensions"):
        hg.ops.bias_backward(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="bias_backward: dy must be float32"):
        hg.ops.bias_backward(np.ones((2, 3), np.int64))
    with pytest.raises(ValueError, match="bias_backward: impl must be"):
        hg.ops.bias_backward(np.ones((2, 3), np.float32), impl="blas")


@pytest.mark.parametrize("device", [p for p in DEVICES if p.id == "gpu"])
def test_conv_ops_reject_mixed_devices(device):
    x, w = np.ones(X, np.float32), np.ones(W, np.float32)
    with pytest.raises(ValueError, match="conv2d: w is on gpu:0 but x is on cpu"):
        hg.ops.conv2d(x, to_dev(w, device))
    with pytest.raises(ValueError, match="conv2d: bias is on"):
        hg.ops.conv2d(x, w, to_dev(np.ones(4, np.float32), device))
    with pytest.raises(ValueError, match="conv2d_backward_data: w is on"):
        hg.ops.conv2d_backward_data(np.ones((2, 4, 6, 6), np.float32), to_dev(w, device), X)
    with pytest.raises(ValueError, match="conv2d_backward_weight: x is on"):
        hg.ops.conv2d_backward_weight(np.ones((2, 4, 6, 6), np.float32), to_dev(x, device), W)
    with pytest.raises(ValueError, match="bias_add: bias is on"):
        hg.ops.bias_add(x, to_dev(np.ones(3, np.float32), device))


TORCH_CASES = [c for c in CASES if c[0] * c[2] * c[3] < 2000]


@pytest.mark.parametrize("case", TORCH_CASES, ids=_ids)
def test_conv2d_matches_torch(impl, rng, case):
    torch = pytest.importorskip("torch",
                                reason="torch is not installed (pip install torch==2.13.0)")
    x, w, bias, hyper, _ = _inputs(rng, case, "cpu")
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = None if bias is None else torch.tensor(bias, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, **hyper)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    (ty * torch.tensor(gy)).sum().backward()

    y = hg.ops.conv2d(x, w, bias, **hyper, impl=impl)
    check(y, ty.detach().double().numpy(), rtol=1e-4, atol=1e-4, what="conv2d vs torch")
    dx = hg.ops.conv2d_backward_data(gy, w, x.shape, **hyper, impl=impl)
    check(dx, tx.grad.double().numpy(), rtol=1e-4, atol=1e-4, what="dx vs torch autograd")
    dw = hg.ops.conv2d_backward_weight(gy, x, w.shape, **hyper, impl=impl)
    check(dw, tw.grad.double().numpy(), rtol=1e-4, atol=1e-3, what="dw vs torch autograd")
    if tb is not None:
        check(hg.ops.bias_backward(gy, impl=impl), tb.grad.double().numpy(), rtol=1e-4,
              atol=1e-4, what="db vs torch autograd")
