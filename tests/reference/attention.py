"""Float64 NumPy references of the language-model ops: layer norm, attention, bmm."""

from __future__ import annotations

import numpy as np


def layer_norm(x, weight=None, bias=None, eps=1e-5):
    """(y, mean, rstd) over the last axis, biased variance."""
    x = np.asarray(x, np.float64)
    mean = x.mean(-1)
    var = ((x - mean[..., None]) ** 2).mean(-1)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean[..., None]) * rstd[..., None]
    if weight is not None:
        y = y * np.asarray(weight, np.float64)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return y, mean, rstd


def layer_norm_backward(dy, x, weight, eps=1e-5):
    """(dx, dweight, dbias) by the chain rule, mean and rstd recomputed in float64."""
    dy = np.asarray(dy, np.float64)
    x = np.asarray(x, np.float64)
    _, mean, rstd = layer_norm(x, eps=eps)
    xhat = (x - mean[..., None]) * rstd[..., None]
    w = np.ones(x.shape[-1]) if weight is None else np.asarray(weight, np.float64)
    g = dy * w
    dx = rstd[..., None] * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    axes = tuple(range(x.ndim - 1))
    return dx, (dy * xhat).sum(axes), dy.sum(axes)


def attention_mask(Tq: int, Tk: int, causal: bool) -> np.ndarray:
    """(Tq, Tk) bool: query i sees key j (causal: j <= i + Tk - Tq)."""
    if not causal:
        return np.ones((Tq, Tk), bool)
    return np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (Tk - Tq)


def attention(q, k, v, causal=False, scale=None):
    """(out, lse, p) with the full (Tq, Tk) probabilities p."""
    q, k, v = (np.asarray(t, np.float64) for t in (q, k, v))
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    mask = attention_mask(q.shape[2], k.shape[2], causal)
    s = np.where(mask, s, -np.inf)
    mx = s.max(-1, keepdims=True)
    e = np.exp(s - mx)
    total = e.sum(-1, keepdims=True)
    p = e / total
    lse = (mx + np.log(total))[..., 0]
    return np.einsum("bhij,bhjd->bhid", p, v), lse, p


def attention_backward(dout, q, k, v, causal=False, scale=None):
    """(dq, dk, dv) by the chain rule through softmax."""
    q, k, v, dout = (np.asarray(t, np.float64) for t in (q, k, v, dout))
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    _, _, p = attention(q, k, v, causal, scale)
    dv = np.einsum("bhij,bhid->bhjd", p, dout)
    dp = np.einsum("bhid,bhjd->bhij", dout, v)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * scale
    return np.einsum("bhij,bhjd->bhid", ds, k), np.einsum("bhij,bhid->bhjd", ds, q), dv


def bmm(a, b, trans_a=False, trans_b=False, alpha=1.0):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if trans_a:
        a = a.transpose(0, 2, 1)
    if trans_b:
        b = b.transpose(0, 2, 1)
    return alpha * (a @ b)
