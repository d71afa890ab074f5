"""Float64 NumPy references for 2-D pooling (NCHW), written loop by loop from PyTorch's
definitions: floor mode; max pooling pads with -inf and returns, per output, the index h*W + w
of the first maximum met in row-major window order, where a NaN beats any number and a later
NaN beats an earlier one (PyTorch's CPU rule, `val > max || isnan(val)`); average pooling
divides by kh*kw, padding included. The backwards are the adjoints: scatter-adds over the same
windows."""

from __future__ import annotations

import numpy as np


def out_size(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _windows(H, W, kernel, stride, padding):
    """Yields (p, q, [(h, w) inside the input, in row-major order]) for every output."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    for p in range(out_size(H, kh, sh, ph)):
        for q in range(out_size(W, kw, sw, pw)):
            cells = [(p * sh - ph + r, q * sw - pw + c) for r in range(kh) for c in range(kw)]
            yield p, q, [(h, w) for h, w in cells if 0 <= h < H and 0 <= w < W]


def max_pool2d(x, kernel, stride, padding):
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    P = out_size(H, kernel[0], stride[0], padding[0])
    Q = out_size(W, kernel[1], stride[1], padding[1])
    y = np.empty((N, C, P, Q))
    argmax = np.empty((N, C, P, Q), np.int64)
    for p, q, cells in _windows(H, W, kernel, stride, padding):
        hs, ws = (list(v) for v in zip(*cells))
        vals = x[:, :, hs, ws]                  # (N, C, cells), cells in row-major order
        pick = np.argmax(vals, axis=-1)         # the first maximum
        nan = np.isnan(vals)
        last_nan = vals.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
        pick = np.where(nan.any(axis=-1), last_nan, pick)
        y[:, :, p, q] = np.take_along_axis(vals, pick[..., None], -1)[..., 0]
        argmax[:, :, p, q] = np.asarray(hs)[pick] * W + np.asarray(ws)[pick]
    return y, argmax


def max_pool2d_backward(dy, argmax, x_shape):
    dy = np.asarray(dy, np.float64)
    N, C, H, W = x_shape
    dx = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            np.add.at(dx[n, c], argmax[n, c].ravel(), dy[n, c].ravel())
    return dx.reshape(x_shape)


def avg_pool2d(x, kernel, stride, padding):
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    P = out_size(H, kernel[0], stride[0], padding[0])
    Q = out_size(W, kernel[1], stride[1], padding[1])
    y = np.empty((N, C, P, Q))
    for p, q, cells in _windows(H, W, kernel, stride, padding):
        hs, ws = zip(*cells)
        y[:, :, p, q] = x[:, :, list(hs), list(ws)].sum(axis=-1) / (kernel[0] * kernel[1])
    return y


def avg_pool2d_backward(dy, x_shape, kernel, stride, padding):
    dy = np.asarray(dy, np.float64)
    dx = np.zeros(x_shape)
    for p, q, cells in _windows(x_shape[2], x_shape[3], kernel, stride, padding):
        for h, w in cells:
            dx[:, :, h, w] += dy[:, :, p, q] / (kernel[0] * kernel[1])
    return dx
