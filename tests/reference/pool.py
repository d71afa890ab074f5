"""Float64 NumPy references for 2-D pooling (NCHW), written loop by loop from PyTorch's
definitions: floor mode, or ceil mode (the output size rounded up, less one where the last window
would start in the bottom/right padding; windows may reach past the padding); max pooling pads
with -inf and returns, per output, the index h*W + w of the first maximum met in row-major
window order, where a NaN beats any number and a later NaN beats an earlier one (PyTorch's CPU
rule, `val > max || isnan(val)`); average pooling
divides by the window's extent inside the padded input (count_include_pad: kh*kw in floor mode)
or by its number of input elements. The backwards are the adjoints: scatter-adds over the same
windows."""

from __future__ import annotations

import numpy as np


def out_size(size: int, k: int, s: int, p: int, ceil_mode: bool = False) -> int:
    if not ceil_mode:
        return (size + 2 * p - k) // s + 1
    n = -(-(size + 2 * p - k) // s) + 1
    return n - 1 if (n - 1) * s >= size + p else n


def _windows(H, W, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    """Yields (p, q, [(h, w) inside the input, in row-major order], divisor) for every output."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    for p in range(out_size(H, kh, sh, ph, ceil_mode)):
        for q in range(out_size(W, kw, sw, pw, ceil_mode)):
            h0, w0 = p * sh - ph, q * sw - pw
            cells = [(h0 + r, w0 + c) for r in range(kh) for c in range(kw)]
            inside = [(h, w) for h, w in cells if 0 <= h < H and 0 <= w < W]
            padded = [(h, w) for h, w in cells if -ph <= h < H + ph and -pw <= w < W + pw]
            yield p, q, inside, len(padded) if count_include_pad else len(inside)


def max_pool2d(x, kernel, stride, padding, ceil_mode=False):
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    P = out_size(H, kernel[0], stride[0], padding[0], ceil_mode)
    Q = out_size(W, kernel[1], stride[1], padding[1], ceil_mode)
    y = np.empty((N, C, P, Q))
    argmax = np.empty((N, C, P, Q), np.int64)
    for p, q, cells, _ in _windows(H, W, kernel, stride, padding, ceil_mode):
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


def avg_pool2d(x, kernel, stride, padding, ceil_mode=False, count_include_pad=True):
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    P = out_size(H, kernel[0], stride[0], padding[0], ceil_mode)
    Q = out_size(W, kernel[1], stride[1], padding[1], ceil_mode)
    y = np.empty((N, C, P, Q))
    for p, q, cells, div in _windows(H, W, kernel, stride, padding, ceil_mode, count_include_pad):
        hs, ws = zip(*cells)
        y[:, :, p, q] = x[:, :, list(hs), list(ws)].sum(axis=-1) / div
    return y


def avg_pool2d_backward(dy, x_shape, kernel, stride, padding, ceil_mode=False,
                        count_include_pad=True):
    dy = np.asarray(dy, np.float64)
    dx = np.zeros(x_shape)
    for p, q, cells, div in _windows(x_shape[2], x_shape[3], kernel, stride, padding, ceil_mode,
                                     count_include_pad):
        for h, w in cells:
            dx[:, :, h, w] += dy[:, :, p, q] / div
    return dx
