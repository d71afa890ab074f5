"""Float64 NumPy references for the activations, written from the definitions (PyTorch's):
relu, leaky_relu (alpha = negative slope), sigmoid, tanh, gelu = x * Phi(x) with the exact normal
cdf, gelu_tanh = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), elu = alpha (e^x - 1) for x <= 0,
relu6 = min(max(x, 0), 6), hardsigmoid = min(max(x + 3, 0), 6) / 6, hardswish = x hardsigmoid(x).
Derivatives at the kinks and at NaN follow PyTorch: relu'(0) = 0, leaky_relu'(0) = alpha,
elu'(0) = alpha, relu6' = 0 at 0 and 6, hardsigmoid' = 0 at -3 and 3, hardswish'(-3) = 0,
hardswish'(3) = 1; at NaN relu' = elu' = relu6' = hardswish' = 1 (dy passes), leaky_relu' =
alpha and hardsigmoid' = 0."""

from __future__ import annotations

import numpy as np
from scipy.special import erfc

KINDS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "elu", "relu6",
         "hardsigmoid", "hardswish")
_BETA = np.sqrt(2.0 / np.pi)
_KAPPA = 0.044715


def _normal_cdf(x):
    return 0.5 * erfc(-x / np.sqrt(2.0))  # = (1 + erf(x / sqrt2)) / 2, accurate in the tail


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def activation(x, kind: str, alpha: float = 0.01) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "leaky_relu":
        return np.where(x > 0, x, alpha * x)
    if kind == "sigmoid":
        return _sigmoid(x)
    if kind == "tanh":
        return np.tanh(x)
    if kind == "gelu":
        return x * _normal_cdf(x)
    if kind == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(_BETA * (x + _KAPPA * x**3)))
    if kind == "elu":
        return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))
    if kind == "relu6":
        return np.where(np.isnan(x), x, np.clip(x, 0.0, 6.0))
    if kind == "hardsigmoid":
        return np.where(np.isnan(x), x, np.clip(x + 3.0, 0.0, 6.0) / 6.0)
    if kind == "hardswish":
        return np.where(np.isnan(x), x, x * np.clip(x + 3.0, 0.0, 6.0) / 6.0)
    raise ValueError(kind)


def activation_derivative(x, kind: str, alpha: float = 0.01) -> np.ndarray:
    """f'(x), elementwise."""
    x = np.asarray(x, np.float64)
    if kind == "relu":
        return np.where(x <= 0, 0.0, 1.0)
    if kind == "leaky_relu":
        return np.where(x > 0, 1.0, alpha)
    if kind == "sigmoid":
        s = _sigmoid(x)
        return s * (1.0 - s)
    if kind == "tanh":
        return 1.0 / np.cosh(np.minimum(np.abs(x), 350.0)) ** 2
    if kind == "gelu":
        return _normal_cdf(x) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    if kind == "gelu_tanh":
        u = _BETA * (x + _KAPPA * x**3)
        t = np.tanh(u)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _BETA * (1.0 + 3.0 * _KAPPA * x * x)
    if kind == "elu":
        return np.where(x <= 0, alpha * np.exp(np.minimum(x, 0.0)), 1.0)
    if kind == "relu6":
        return np.where((x <= 0) | (x >= 6), 0.0, 1.0)
    if kind == "hardsigmoid":
        return np.where((x > -3) & (x < 3), 1.0 / 6.0, 0.0)
    if kind == "hardswish":
        return np.where(x <= -3, 0.0, np.where(x < 3, x / 3.0 + 0.5, 1.0))
    raise ValueError(kind)


def activation_backward(dy, x, kind: str, alpha: float = 0.01) -> np.ndarray:
    return np.asarray(dy, np.float64) * activation_derivative(x, kind, alpha)
