"""Float64 NumPy references for the layers, written from the math (never calling hipgrad), and a
central-difference gradient of any of them. Parameters come as state_dict-style dicts."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def linear(x, p):
    y = x @ p["weight"].T
    return y + p["bias"] if "bias" in p else y


def conv2d(x, p, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    w = p["weight"]
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + W] = x
    P = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
    Q = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
    y = np.zeros((N, K, P, Q))
    Kg = K // groups
    for g in range(groups):
        xg, wg = xp[:, g * Cg:(g + 1) * Cg], w[g * Kg:(g + 1) * Kg]
        for r in range(R):
            for s in range(S):
                rows = slice(r * dh, r * dh + sh * (P - 1) + 1, sh)
                cols = slice(s * dw, s * dw + sw * (Q - 1) + 1, sw)
                patch = xg[:, :, rows, cols]
                y[:, g * Kg:(g + 1) * Kg] += np.einsum("ncpq,kc->nkpq", patch, wg[:, :, r, s])
    if "bias" in p:
        y += p["bias"][None, :, None, None]
    return y


_erf = np.vectorize(math.erf)
ACTIVATIONS: dict[str, Callable] = {
    "relu": lambda x, a: np.maximum(x, 0.0),
    "leaky_relu": lambda x, a: np.where(x > 0, x, a * x),
    "sigmoid": lambda x, a: 1.0 / (1.0 + np.exp(-x)),
    "tanh": lambda x, a: np.tanh(x),
    "gelu": lambda x, a: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x, a: 0.5 * x * (
        1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
    "elu": lambda x, a: np.where(x > 0, x, a * (np.exp(x) - 1.0)),
    "relu6": lambda x, a: np.clip(x, 0.0, 6.0),
    "hardsigmoid": lambda x, a: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "hardswish": lambda x, a: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
}


def _windows(x, kernel, stride, padding, fill):
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.full((N, C, H + 2 * ph, W + 2 * pw), fill)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    P, Q = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    return [xp[:, :, r:r + sh * (P - 1) + 1:sh, s:s + sw * (Q - 1) + 1:sw]
            for r in range(kh) for s in range(kw)]


def max_pool2d(x, kernel, stride, padding):
    return np.max(np.stack(_windows(x, kernel, stride, padding, -np.inf)), axis=0)


def avg_pool2d(x, kernel, stride, padding):
    return np.mean(np.stack(_windows(x, kernel, stride, padding, 0.0)), axis=0)


def batch_norm_train(x, p, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    xhat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return xhat * p["weight"].reshape(shape) + p["bias"].reshape(shape)


def batch_norm_eval(x, p, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    xhat = (x - p["running_mean"].reshape(shape)) / np.sqrt(p["running_var"].reshape(shape) + eps)
    return xhat * p["weight"].reshape(shape) + p["bias"].reshape(shape)


def cross_entropy(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(labels)), labels].mean()


def numeric_grads(f: Callable, arrays: dict[str, np.ndarray], dy: np.ndarray,
                  eps: float = 1e-6) -> dict[str, np.ndarray]:
    """d sum(f(arrays) * dy) / d arrays[k] for every k, by central differences in float64."""
    arrays = {k: np.array(v, dtype=np.float64) for k, v in arrays.items()}
    out = {}
    for key, a in arrays.items():
        g = np.zeros_like(a)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            hi = np.sum(f(arrays) * dy)
            flat[i] = old - eps
            lo = np.sum(f(arrays) * dy)
            flat[i] = old
            gflat[i] = (hi - lo) / (2 * eps)
        out[key] = g
    return out
