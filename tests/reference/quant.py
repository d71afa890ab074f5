from __future__ import annotations

import math

import numpy as np


def quantize(x, scale):
    q = np.rint(np.asarray(x, np.float64) / scale)  # NumPy rounds half to even
    return np.clip(q, -127, 127).astype(np.int8)


def _act(v, kind, alpha):
    if kind is None:
        return v
    if kind == "relu":
        return np.maximum(v, 0)
    if kind == "leaky_relu":
        return np.where(v > 0, v, alpha * v)
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-v))
    if kind == "tanh":
        return np.tanh(v)
    if kind == "gelu":
        return 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))
    if kind == "gelu_tanh":
        return 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
    if kind == "elu":
        return np.where(v > 0, v, alpha * np.expm1(v))
    if kind == "relu6":
        return np.clip(v, 0, 6)
    if kind == "hardsigmoid":
        return np.clip(v + 3, 0, 6) / 6
    if kind == "hardswish":
        return v * np.clip(v + 3, 0, 6) / 6
    raise ValueError(kind)


def qgemm(xq, wq, x_scale, w_scale, bias=None, activation=None, alpha=0.01):
    acc = xq.astype(np.int64) @ wq.astype(np.int64).T
    v = acc * (np.float64(x_scale) * w_scale.astype(np.float64))[None, :]
    if bias is not None:
        v = v + bias.astype(np.float64)[None, :]
    return _act(v, activation, alpha)


def qconv2d(xq, wq, x_scale, w_scale, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
            groups=1, activation=None, alpha=0.01):
    N, C, H, W = xq.shape
    K, Cg, R, S = wq.shape
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    P = (H + 2 * ph - dh * (R - 1) - 1) // sh + 1
    Q = (W + 2 * pw - dw * (S - 1) - 1) // sw + 1
    xp = np.zeros((N, C, H + 2 * ph, W + 2 * pw), np.int64)
    xp[:, :, ph:ph + H, pw:pw + W] = xq
    acc = np.zeros((N, K, P, Q), np.int64)
    kpg = K // groups
    for k in range(K):
        g = k // kpg
        for r in range(R):
            for s in range(S):
                patch = xp[:, g * Cg:(g + 1) * Cg, r * dh:r * dh + sh * (P - 1) + 1:sh,
                           s * dw:s * dw + sw * (Q - 1) + 1:sw]
                acc[:, k] += np.einsum("nchw,c->nhw", patch, wq[k, :, r, s].astype(np.int64))
    v = acc * (np.float64(x_scale) * w_scale.astype(np.float64))[None, :, None, None]
    if bias is not None:
        v = v + bias.astype(np.float64)[None, :, None, None]
    return _act(v, activation, alpha)
