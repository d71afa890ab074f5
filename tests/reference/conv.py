"""Float64 NumPy reference for the convolution family, written from the definition:

    y[n, k, p, q] = bias[k] + sum_{c in group(k), r, s} w[k, c', r, s]
                    * xpad[n, c, p*sh + r*dh, q*sw + s*dw]

with xpad the zero-padded input and c' = c - group offset. Each kernel tap (r, s) is one strided
slice of xpad and one einsum; the backward ops are the same relation read the other way
(dx: every tap scatters dy * w back onto the strided slice it read; dw: every tap is the inner
product of dy with that slice). Nothing here lowers to a matrix or calls hipgrad.
"""

from __future__ import annotations

import numpy as np


def pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def out_size(size: int, kernel: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - dil * (kernel - 1) - 1) // stride + 1


def _taps(x_shape, w_shape, stride, padding, dilation):
    """Yields (r, s, row slice, column slice) into the padded input for every kernel tap."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    _, _, H, W = x_shape
    _, _, R, S = w_shape
    P, Q = out_size(H, R, sh, ph, dh), out_size(W, S, sw, pw, dw)
    for r in range(R):
        for s in range(S):
            rows = slice(r * dh, r * dh + sh * (P - 1) + 1, sh)
            cols = slice(s * dw, s * dw + sw * (Q - 1) + 1, sw)
            yield r, s, rows, cols


def _pad(x, padding):
    ph, pw = pair(padding)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N, _, H, W = x.shape
    K, Cg, R, S = w.shape
    Kg = K // groups
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    y = np.zeros((N, K, out_size(H, R, sh, ph, dh), out_size(W, S, sw, pw, dw)))
    xp = _pad(x, padding)
    for g in range(groups):
        xg, wg = xp[:, g * Cg:(g + 1) * Cg], w[g * Kg:(g + 1) * Kg]
        for r, s, rows, cols in _taps(x.shape, w.shape, stride, padding, dilation):
            y[:, g * Kg:(g + 1) * Kg] += np.einsum("ncpq,kc->nkpq", xg[:, :, rows, cols],
                                                   wg[:, :, r, s])
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def conv2d_backward_data(dy, w, x_shape, stride=1, padding=0, dilation=1, groups=1):
    """dx[n, c, h, w] = sum over every (k, p, q, r, s) whose tap read x[n, c, h, w] of dy * w."""
    dy = np.asarray(dy, np.float64)
    w = np.asarray(w, np.float64)
    N, C, H, W = x_shape
    K, Cg = w.shape[:2]
    Kg = K // groups
    ph, pw = pair(padding)
    dxp = np.zeros((N, C, H + 2 * ph, W + 2 * pw))
    for g in range(groups):
        dyg, wg = dy[:, g * Kg:(g + 1) * Kg], w[g * Kg:(g + 1) * Kg]
        for r, s, rows, cols in _taps(x_shape, w.shape, stride, padding, dilation):
            dxp[:, g * Cg:(g + 1) * Cg, rows, cols] += np.einsum("nkpq,kc->ncpq", dyg,
                                                                 wg[:, :, r, s])
    return dxp[:, :, ph:ph + H, pw:pw + W]


def conv2d_backward_weight(dy, x, w_shape, stride=1, padding=0, dilation=1, groups=1):
    """dw[k, c, r, s] = sum over n, p, q of dy[n, k, p, q] * (the input tap (r, s) read)."""
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    K, Cg = w_shape[:2]
    Kg = K // groups
    dw = np.zeros(w_shape)
    xp = _pad(x, padding)
    for g in range(groups):
        dyg, xg = dy[:, g * Kg:(g + 1) * Kg], xp[:, g * Cg:(g + 1) * Cg]
        for r, s, rows, cols in _taps(x.shape, w_shape, stride, padding, dilation):
            dw[g * Kg:(g + 1) * Kg, :, r, s] = np.einsum("nkpq,ncpq->kc", dyg,
                                                         xg[:, :, rows, cols])
    return dw


def bias_add(x, bias):
    x = np.asarray(x, np.float64)
    shape = [1] * x.ndim
    shape[1] = -1
    return x + np.asarray(bias, np.float64).reshape(shape)


def bias_backward(dy):
    dy = np.asarray(dy, np.float64)
    return dy.sum(axis=tuple(a for a in range(dy.ndim) if a != 1))
