"""Development stand-ins (CPU, float32 NumPy) for the language-model ops until hipgrad.ops has
them; install() adds only what is missing, so the real ops win once they exist."""

from __future__ import annotations

import numpy as np

import hipgrad as hg
from hipgrad import ops


def _np(t):
    return np.asarray(t.numpy(), dtype=np.float64)


def _t(a, dtype=np.float32):
    return hg.tensor(np.asarray(a, dtype=dtype))


def layer_norm(x, weight, bias, *, eps=1e-5, impl="auto"):
    xa = _np(x)
    mean = xa.mean(-1)
    rstd = 1.0 / np.sqrt(((xa - mean[..., None]) ** 2).mean(-1) + eps)
    y = (xa - mean[..., None]) * rstd[..., None] * _np(weight)
    if bias is not None:
        y = y + _np(bias)
    return _t(y), _t(mean), _t(rstd)


def layer_norm_backward(dy, x, weight, mean, rstd, impl="auto"):
    dya, xa, w, m, r = _np(dy), _np(x), _np(weight), _np(mean)[..., None], _np(rstd)[..., None]
    xhat = (xa - m) * r
    g = dya * w
    c = xa.shape[-1]
    dx = r * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    axes = tuple(range(xa.ndim - 1))
    return _t(dx), _t((dya * xhat).sum(axes)), _t(dya.sum(axes))


def _probs(q, k, causal, scale):
    tq, tk = q.shape[-2], k.shape[-2]
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    if causal:
        s = np.where(np.arange(tk)[None, :] > np.arange(tq)[:, None] + (tk - tq), -np.inf, s)
    mx = s.max(-1, keepdims=True)
    lse = mx + np.log(np.exp(s - mx).sum(-1, keepdims=True))
    return np.exp(s - lse), lse[..., 0]


def attention(q, k, v, *, causal=False, scale=None, impl="auto"):
    qa, ka, va = _np(q), _np(k), _np(v)
    scale = 1.0 / np.sqrt(qa.shape[-1]) if scale is None else scale
    p, lse = _probs(qa, ka, causal, scale)
    return _t(np.einsum("bhij,bhjd->bhid", p, va)), _t(lse)


def attention_backward(dout, q, k, v, out, lse, *, causal=False, scale=None, impl="auto"):
    qa, ka, va, do, o = _np(q), _np(k), _np(v), _np(dout), _np(out)
    scale = 1.0 / np.sqrt(qa.shape[-1]) if scale is None else scale
    p, _ = _probs(qa, ka, causal, scale)
    dv = np.einsum("bhij,bhid->bhjd", p, do)
    dp = np.einsum("bhid,bhjd->bhij", do, va)
    ds = p * (dp - (do * o).sum(-1, keepdims=True))
    dq = np.einsum("bhij,bhjd->bhid", ds, ka) * scale
    dk = np.einsum("bhij,bhid->bhjd", ds, qa) * scale
    return _t(dq), _t(dk), _t(dv)


def permute(x, dims, *, out=None, impl="auto"):
    y = np.ascontiguousarray(np.transpose(x.numpy(), dims))
    if out is None:
        return hg.tensor(y, dtype=y.dtype)
    out.copy_(hg.tensor(y, dtype=y.dtype))
    return out


def sum_squares(tensors, impl="auto"):
    return _t([float((_np(t) ** 2).sum()) for t in tensors])


def scale_(x, alpha, impl="auto"):
    x.copy_(_t(_np(x) * alpha))
    return x


def _narrow(t, start, length):
    view = np.from_dlpack(t)[start:start + length]
    return hg.from_dlpack(view)


def install() -> list[str]:
    added = []
    for name, fn in (("layer_norm", layer_norm), ("layer_norm_backward", layer_norm_backward),
                     ("attention", attention), ("attention_backward", attention_backward),
                     ("sum_squares", sum_squares), ("scale_", scale_)):
        if not hasattr(ops, name):
            setattr(ops, name, fn)
            added.append(name)
    if not hasattr(hg.Tensor, "narrow"):
        hg.Tensor.narrow = _narrow
        added.append("Tensor.narrow")
    return added
