"""Float64 NumPy references for the layer helpers, written from the math."""

from __future__ import annotations

import numpy as np


def _channels_last(x):
    """x (N, C) or (N, C, H, W) as (N*H*W, C)."""
    x = np.asarray(x, np.float64)
    if x.ndim == 2:
        return x
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def _per_channel(v, ndim):
    v = np.asarray(v, np.float64)
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """(y, save_mean, save_invstd, new_running_mean, new_running_var)."""
    x = np.asarray(x, np.float64)
    rm = np.asarray(running_mean, np.float64)
    rv = np.asarray(running_var, np.float64)
    if training:
        flat = _channels_last(x)
        n = flat.shape[0]
        mean = flat.mean(axis=0)
        var = ((flat - mean) ** 2).mean(axis=0)
        rm = (1 - momentum) * rm + momentum * mean
        rv = (1 - momentum) * rv + momentum * var * n / (n - 1)
    else:
        mean, var = rm, rv
    invstd = 1.0 / np.sqrt(var + eps)
    nd = x.ndim
    y = ((x - _per_channel(mean, nd)) * _per_channel(invstd, nd) * _per_channel(gamma, nd)
         + _per_channel(beta, nd))
    return y, mean, invstd, rm, rv


def batch_norm_backward(dy, x, gamma, mean, invstd, training):
    """(dx, dgamma, dbeta), the gradient of sum(dy * batch_norm(x)) with the statistics taken
    from the batch (training) or held fixed (eval)."""
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    nd = x.ndim
    xhat = (x - _per_channel(mean, nd)) * _per_channel(invstd, nd)
    dyf, xhf = _channels_last(dy), _channels_last(xhat)
    dbeta = dyf.sum(axis=0)
    dgamma = (dyf * xhf).sum(axis=0)
    k = _per_channel(np.asarray(gamma, np.float64) * invstd, nd)
    if not training:
        return dy * k, dgamma, dbeta
    n = dyf.shape[0]
    dx = k * (dy - _per_channel(dbeta / n, nd) - xhat * _per_channel(dgamma / n, nd))
    return dx, dgamma, dbeta


def dropout_apply(x, mask, p):
    return np.asarray(x, np.float64) * np.asarray(mask, np.float64) / (1.0 - p)


def embedding(weight, idx):
    return np.asarray(weight, np.float64)[np.asarray(idx)]


def embedding_backward(dy, idx, num):
    dy = np.asarray(dy, np.float64)
    idx = np.asarray(idx).reshape(-1)
    dw = np.zeros((num, dy.shape[-1]))
    np.add.at(dw, idx, dy.reshape(idx.size, -1))
    return dw
