"""Conv2d.input_grad = False (a first layer whose input is the data): backward skips dx and
returns None, and the parameter gradients are those of the full backward, checked against
finite differences of the loss sum(y * dy) in float64 through NumPy's reference conv."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest
from hipgrad import nn

from tests.reference import conv as ref_conv


def _grads(model, x, dy):
    model.zero_grad()
    model(x)
    dx = model.backward(hg.tensor(dy))
    return dx, {n: p.grad.numpy().copy() for n, p in model.named_parameters()}


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 3), (1, 2)])
def test_params_unchanged_without_dx(rng, stride, padding):
    C, K = 3, 5
    conv = nn.Conv2d(C, K, (5, 3), stride=stride, padding=padding)
    x = rng.standard_normal((3, C, 11, 9)).astype(np.float32)
    y = conv(x)
    dy = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    dx_full, full = _grads(conv, x, dy)
    conv.input_grad = False
    dx_none, skipped = _grads(conv, x, dy)
    assert dx_full is not None and dx_none is None
    for name in full:
        np.testing.assert_array_equal(skipped[name], full[name], err_msg=name)
    # the weight gradient itself, against central differences of sum(conv(x, w) * dy)
    w = conv.weight.data.numpy().astype(np.float64)
    b = conv.bias.data.numpy().astype(np.float64)
    hyper = {"stride": stride, "padding": padding}
    eps = 1e-3
    for idx in [tuple(rng.integers(0, n) for n in w.shape) for _ in range(6)]:
        wp, wm = w.copy(), w.copy()
        wp[idx] += eps
        wm[idx] -= eps
        fd = ((ref_conv.conv2d(x, wp, b, **hyper) - ref_conv.conv2d(x, wm, b, **hyper)) * dy).sum()
        np.testing.assert_allclose(skipped["weight"][idx], fd / (2 * eps), rtol=1e-3, atol=1e-3)


def test_first_layer_of_a_network(rng):
    """A network whose first conv skips dx: backward returns None, every gradient as before."""
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3))
    x = rng.standard_normal((2, 2, 7, 8)).astype(np.float32)
    dy = rng.standard_normal(tuple(model(x).shape)).astype(np.float32)
    dx_full, full = _grads(model, x, dy)
    next(m for m in model.modules() if isinstance(m, nn.Conv2d)).input_grad = False
    dx_none, skipped = _grads(model, x, dy)
    assert tuple(dx_full.shape) == x.shape and dx_none is None
    assert full.keys() == skipped.keys()
    for name in full:
        np.testing.assert_array_equal(skipped[name], full[name], err_msg=name)
