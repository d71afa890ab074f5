from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check, to_dev
from tests.op_cases import OPS
from tests.reference import activation as ref

KINDS = OPS["activation"].params["kinds"]
SHAPES = OPS["activation"].params["shapes"]


def mixed_inputs(rng, shape) -> np.ndarray:
    """Normal values, values around 0 (exact zeros among them), and large magnitudes."""
    x = rng.standard_normal(shape) * 3
    flat = x.reshape(-1)
    pick = rng.random(flat.size)
    flat[pick < 0.15] *= 1e-6
    flat[pick < 0.03] = 0.0
    big = pick > 0.9
    flat[big] = rng.choice([-1, 1], big.sum()) * rng.uniform(10, 90, big.sum())
    return x.astype(np.float32)


def alpha_for(kind: str, rng) -> float:
    return float(rng.uniform(0.05, 2.0)) if kind in ("leaky_relu", "elu") else 0.01


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_activation_matches_float64(device, impl, rng, kind, shape):
    x = mixed_inputs(rng, shape)
    alpha = alpha_for(kind, rng)
    y = hg.ops.activation(to_dev(x, device), kind, alpha=alpha, impl=impl)
    assert y.device == device and y.dtype == "float32"
    check(y, ref.activation(x, kind, alpha), rtol=2e-6, atol=1e-7, what=f"{kind} {shape} {impl}")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", KINDS)
def test_activation_backward_matches_float64(device, impl, rng, kind, shape):
    x = mixed_inputs(rng, shape)
    dy = rng.standard_normal(shape).astype(np.float32)
    alpha = alpha_for(kind, rng)
    y = hg.ops.activation(to_dev(x, device), kind, alpha=alpha, impl=impl)
    dx = hg.ops.activation_backward(to_dev(dy, device), to_dev(x, device), y, kind, alpha=alpha,
                                    impl=impl)
    assert dx.device == device
    # sigmoid and tanh read y: 1 -+ y carries y's error (a few ulp, up to 2^-22 near |y| = 1)
    # into dx, scaled by |dy| and by up to 2 (from 1 - y^2).
    check(dx, ref.activation_backward(dy, x, kind, alpha), rtol=1e-5,
          atol=2**-20 * max(1.0, float(np.abs(dy).max())),
          what=f"{kind} backward {shape} {impl}")


@pytest.mark.parametrize("kind", KINDS)
def test_activation_backward_matches_finite_differences(device, rng, kind):
    # Loss = sum(w * f(x)). f is elementwise, so perturbing every element at once gives every
    # partial derivative. Inputs stay 0.1 away from the kinks (0 for relu, leaky_relu, elu and
    # relu6, +-3 for hardsigmoid and hardswish); x +- 2^-7 is exact in float32.
    n = 4099
    x = rng.choice([-1, 1], n) * rng.uniform(0.1, 4.0, n)
    x = np.where(np.abs(np.abs(x) - 3.0) < 0.1, np.sign(x) * 2.5, x)
    x = (np.round(x * 128) / 128).astype(np.float32)
    h = np.float32(2.0**-7)
    alpha = alpha_for(kind, rng)

    def f(v):
        return hg.ops.activation(to_dev(v, device), kind, alpha=alpha).numpy().astype(np.float64)

    w = rng.standard_normal(n).astype(np.float32)
    fd = w * (f(x + h) - f(x - h)) / (2 * h)
    y = hg.ops.activation(to_dev(x, device), kind, alpha=alpha)
    dx = hg.ops.activation_backward(to_dev(w, device), to_dev(x, device), y, kind, alpha=alpha)
    check(dx, fd, rtol=1e-3, atol=2e-4, what=f"{kind} backward vs finite differences")


@pytest.mark.parametrize("kind, lo, hi", [
    ("gelu", -12.0, -3.0),     # Phi's tail: 1 + erf(x/sqrt2) would cancel here
    ("sigmoid", -80.0, -5.0),  # 1/(1+e^-x) must not lose the tail either
    ("tanh", -1e-3, 1e-3),     # no cancellation near 0
    ("elu", -1e-3, 0.0),       # expm1, not exp - 1
    ("gelu", -1e-3, 1e-3),
])
def test_activation_keeps_relative_accuracy(device, rng, kind, lo, hi):
    x = rng.uniform(lo, hi, 5000).astype(np.float32)
    y = hg.ops.activation(to_dev(x, device), kind, alpha=1.0)
    check(y, ref.activation(x, kind, 1.0), rtol=1e-6, atol=0, what=f"{kind} in [{lo}, {hi}]")


def test_activation_special_values(device):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30], np.float32)
    for kind in KINDS:
        y = hg.ops.activation(to_dev(x, device), kind, alpha=0.5).numpy()
        with np.errstate(all="ignore"):
            expected = ref.activation(x, kind, 0.5)
        np.testing.assert_allclose(y[:4], expected[:4], rtol=1e-6, atol=0, err_msg=kind)
        assert np.isnan(y[4]), f"{kind}: NaN in, {y[4]} out"
        np.testing.assert_allclose(y[5:], expected[5:], rtol=1e-6, err_msg=kind)


def test_activation_kinks_follow_pytorch(device):
    x = np.zeros(3, np.float32)
    dy = np.full(3, 2.0, np.float32)
    grads = {}
    for kind in ("relu", "leaky_relu", "elu"):
        y = hg.ops.activation(to_dev(x, device), kind, alpha=0.25)
        grads[kind] = hg.ops.activation_backward(to_dev(dy, device), to_dev(x, device), y, kind,
                                                 alpha=0.25).numpy()
    np.testing.assert_array_equal(grads["relu"], 0.0)
    np.testing.assert_array_equal(grads["leaky_relu"], 0.5)
    np.testing.assert_array_equal(grads["elu"], 0.5)


@pytest.mark.parametrize("kind", ["relu6", "hardsigmoid", "hardswish"])
def test_hard_activation_kinks_follow_pytorch(device, rng, kind):
    """At the kinks PyTorch takes relu6' = 0 at 0 and 6 (hardtanh_backward), hardsigmoid' = 0 at
    -3 and 3, and hardswish' = x/3 + 1/2 on (-3, 3), 0 at -3 and 1 at 3."""
    x = np.array([0.0, 6.0, -3.0, 3.0, -0.0, 2.5, -3.5, 7.0], np.float32)
    dy = rng.standard_normal(x.size).astype(np.float32)
    y = hg.ops.activation(to_dev(x, device), kind)
    dx = hg.ops.activation_backward(to_dev(dy, device), to_dev(x, device), y, kind)
    check(y, ref.activation(x, kind), rtol=1e-7, atol=0, what=kind)
    check(dx, ref.activation_backward(dy, x, kind), rtol=1e-6, atol=0, what=f"{kind} backward")
    torch = pytest.importorskip("torch")
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    getattr(torch.nn.functional, kind)(xt).backward(torch.from_numpy(dy))
    check(dx, xt.grad.double().numpy(), rtol=1e-6, atol=0, what=f"{kind} backward vs torch")


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "elu", "relu6", "hardsigmoid",
                                  "hardswish"])
def test_activation_backward_at_nan_follows_pytorch(device, rng, kind):
    """PyTorch passes dy through relu, elu, relu6 and hardswish at x = NaN (threshold_backward:
    dy unless y <= 0; elu: dy unless x <= 0; hardtanh_backward: dy unless x <= 0 or x >= 6;
    hardswish: dy above 3 or where no comparison holds), scales it by alpha for leaky_relu (dy
    unless x > 0) and gives 0 for hardsigmoid (dy / 6 only where -3 < x < 3)."""
    x = rng.standard_normal(1031).astype(np.float32)  # long enough for the vector loops
    x[rng.choice(x.size, 97, replace=False)] = np.nan
    x[:4] = [np.nan, 0.0, -1.0, 2.0]
    dy = rng.standard_normal(x.size).astype(np.float32)
    y = hg.ops.activation(to_dev(x, device), kind, alpha=0.25)
    dx = hg.ops.activation_backward(to_dev(dy, device), to_dev(x, device), y, kind, alpha=0.25)
    nan = np.isnan(x)
    factor = {"leaky_relu": 0.25, "hardsigmoid": 0.0}.get(kind, 1.0)
    want_at_nan = dy[nan] * factor
    np.testing.assert_array_equal(dx.numpy()[nan], want_at_nan.astype(np.float32))
    with np.errstate(invalid="ignore"):
        check(dx, ref.activation_backward(dy, x, kind, 0.25), rtol=1e-6, atol=1e-7, what=kind)


def test_activation_any_shape_and_empty(device):
    x = np.zeros((0, 3), np.float32)
    y = hg.ops.activation(to_dev(x, device), "gelu")
    assert tuple(y.shape) == (0, 3)
    dx = hg.ops.activation_backward(to_dev(x, device), to_dev(x, device), y, "gelu")
    assert tuple(dx.shape) == (0, 3)
    x = to_dev(np.full((2, 1, 1, 3, 1), -2.0, np.float32), device)
    y = hg.ops.activation(x, "relu")
    assert y.shape == x.shape and not y.numpy().any()


def test_activation_reports_what_ran(impl, rng):
    x = rng.standard_normal(10).astype(np.float32)
    hg.ops.activation(x, "tanh", impl=impl)
    ran = hg.ops.last_impl()
    assert ran["op"] == "activation" and ran["impl"].startswith("cpu.activation"), ran
    assert ("vendor fallback" in ran["impl"]) == (impl == "vendor"), ran


def test_activation_rejects_bad_input():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"kind must be one of .*'relu'.*'gelu_tanh'.*'swish'"):
        hg.ops.activation(x, "swish")
    with pytest.raises(ValueError, match="kind must be one of"):
        hg.ops.activation_backward(x, x, x, "softplus")
    with pytest.raises(TypeError, match="kind must be a string"):
        hg.ops.activation(x, 3)
    with pytest.raises(TypeError, match="x must be float32"):
        hg.ops.activation(np.ones((2, 3), np.int64), "relu")
    with pytest.raises(TypeError, match="dy must be float32"):
        hg.ops.activation_backward(np.ones((2, 3), np.int64), x, x, "relu")
    with pytest.raises(ValueError, match=r"y must have shape \(2, 3\), got \(3, 2\)"):
        hg.ops.activation_backward(x, x, np.ones((3, 2), np.float32), "relu")
    with pytest.raises(ValueError, match=r"x must have shape \(2, 3\)"):
        hg.ops.activation_backward(x, np.ones(6, np.float32), x, "relu")
    with pytest.raises(ValueError, match="impl must be"):
        hg.ops.activation(x, "relu", impl="fast")


def _torch():
    return pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")


@pytest.mark.parametrize("kind", KINDS)
def test_activation_matches_torch(rng, kind):
    torch = _torch()
    F = torch.nn.functional
    alpha = alpha_for(kind, rng)
    fns = {"relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, alpha), "sigmoid": torch.sigmoid,
           "tanh": torch.tanh, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
           "elu": lambda t: F.elu(t, alpha), "relu6": F.relu6, "hardsigmoid": F.hardsigmoid,
           "hardswish": F.hardswish}
    x = mixed_inputs(rng, (3, 5, 31))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = fns[kind](xt)
    yt.backward(torch.from_numpy(dy))
    y = hg.ops.activation(x, kind, alpha=alpha)
    # PyTorch's float32 1 + tanh(u) and 1 - tanh(u)^2 round to 0 in gelu_tanh's tail (|x| > ~4),
    # where the exact values (ours) are still about 1e-6 |dy|.
    check(y, yt.detach().double().numpy(), rtol=1e-5, atol=1e-5, what=f"{kind} vs torch")
    dx = hg.ops.activation_backward(dy, x, y, kind, alpha=alpha)
    check(dx, xt.grad.double().numpy(), rtol=1e-5, atol=1e-5, what=f"{kind} backward vs torch")
