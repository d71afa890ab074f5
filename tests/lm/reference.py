"""NumPy float64 references for the language model: layer norm, causal attention, GELU (erf),
the whole GPT forward from a nanoGPT state_dict, and the mean cross-entropy over positions."""

from __future__ import annotations

import numpy as np
from scipy.special import erf


def layer_norm(x, w, b, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps) * w
    return y + b if b is not None else y


def attention(q, k, v, causal=True, scale=None):
    """q (B, H, Tq, D), k, v (B, H, Tk, D); causal aligned to the end."""
    tq, tk = q.shape[-2], k.shape[-2]
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    if causal:
        mask = np.arange(tk)[None, :] > np.arange(tq)[:, None] + (tk - tq)
        s = np.where(mask, -np.inf, s)
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhij,bhjd->bhid", p, v)


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def linear(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def gpt_forward(sd: dict, idx: np.ndarray, n_head: int) -> np.ndarray:
    """Logits (B, T, V) in float64 from a nanoGPT-keyed state_dict."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in sd.items()}
    g = p.get
    b, t = idx.shape
    x = p["transformer.wte.weight"][idx] + p["transformer.wpe.weight"][np.arange(t)][None]
    i = 0
    while f"transformer.h.{i}.ln_1.weight" in p:
        pre = f"transformer.h.{i}."
        h = layer_norm(x, p[pre + "ln_1.weight"], g(pre + "ln_1.bias"))
        qkv = linear(h, p[pre + "attn.c_attn.weight"], g(pre + "attn.c_attn.bias"))
        c = x.shape[-1]
        q, k, v = (qkv[..., j * c:(j + 1) * c].reshape(b, t, n_head, c // n_head).transpose(0, 2, 1, 3)
                   for j in range(3))
        y = attention(q, k, v).transpose(0, 2, 1, 3).reshape(b, t, c)
        x = x + linear(y, p[pre + "attn.c_proj.weight"], g(pre + "attn.c_proj.bias"))
        h = layer_norm(x, p[pre + "ln_2.weight"], g(pre + "ln_2.bias"))
        h = gelu(linear(h, p[pre + "mlp.c_fc.weight"], g(pre + "mlp.c_fc.bias")))
        x = x + linear(h, p[pre + "mlp.c_proj.weight"], g(pre + "mlp.c_proj.bias"))
        i += 1
    x = layer_norm(x, p["transformer.ln_f.weight"], g("transformer.ln_f.bias"))
    return x @ p["lm_head.weight"].T


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    z = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(z)), targets.reshape(-1)].mean())
