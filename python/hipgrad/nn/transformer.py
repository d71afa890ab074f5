"""The GPT layers: LayerNorm, causal self-attention, the MLP (Linear -> GELU (erf) -> Linear) and
the pre-norm block, each with an explicit forward and backward; state_dict keys as nanoGPT's.

    x (B, T, C) -> block: x + attn(ln_1(x)), then + mlp(ln_2(.))

Attention runs the fused `ops.attention` (online softmax; the (T, T) score matrix is never
stored) over heads laid out (B, H, T, hd); `_heads` moves them between that layout and the
(B, T, C) rows the linear layers read and write. `forward_cached` is the decoding path the
inference engine uses: the new keys and values are written into a preallocated cache and the
queries attend over everything cached so far, read from the cache in place.
"""

from __future__ import annotations

import math
from typing import Any

from .. import ops
from ..tensor import Tensor, int_arg, tensor
from . import _heads, init
from .activation import GELU
from .dropout import Dropout
from .linear import Linear
from .module import Module, Parameter, accumulate_grad, run_child


class LayerNorm(Module):
    """y = (x - mean) * rstd * weight + bias over the last axis (nanoGPT's LayerNorm: the bias is
    optional, eps 1e-5)."""

    def __init__(self, ndim: int, bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.ndim = int_arg(ndim, "LayerNorm: ndim")
        if self.ndim <= 0:
            raise ValueError(f"LayerNorm: ndim must be positive, got {ndim}")
        self.eps = float(eps)
        if not self.eps > 0:
            raise ValueError(f"LayerNorm: eps must be positive, got {eps}")
        import numpy as np
        self.weight = Parameter(tensor(np.ones(self.ndim, np.float32)))
        self.bias = Parameter(tensor(np.zeros(self.ndim, np.float32))) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if len(x.shape) < 1 or x.shape[-1] != self.ndim:
            raise ValueError(f"LayerNorm: x must have shape (..., {self.ndim}), got {tuple(x.shape)}")
        bias = self.bias.data if self.bias is not None else None
        y, mean, rstd = ops.layer_norm(x, self.weight.data, bias, eps=self.eps, impl=self.impl)
        self._save(x, mean, rstd)
        return y

    def backward(self, dy: Tensor) -> Tensor:
        x, mean, rstd = self._take_saved()
        dx, dw, db = ops.layer_norm_backward(dy, x, self.weight.data, mean, rstd, impl=self.impl)
        if self.weight.requires_grad:
            accumulate_grad(self.weight, dw)
        if self.bias is not None and self.bias.requires_grad:
            accumulate_grad(self.bias, db)
        return dx

    def extra_repr(self) -> str:
        return f"{self.ndim}, eps={self.eps}, bias={self.bias is not None}"


class CausalSelfAttention(Module):
    """Multi-head causal self-attention: c_attn (3C, C) makes q, k, v (in that order), each
    position attends to itself and the positions before it, c_proj (C, C) mixes the heads."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"CausalSelfAttention: n_embd ({n_embd}) must be a multiple of n_head "
                             f"({n_head})")
        self.n_embd, self.n_head = int(n_embd), int(n_head)
        self.head_size = self.n_embd // self.n_head
        self.scale = 1.0 / math.sqrt(self.head_size)
        self.c_attn = Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if len(x.shape) != 3 or x.shape[-1] != self.n_embd:
            raise ValueError(f"CausalSelfAttention: x must be (B, T, {self.n_embd}), got "
                             f"{tuple(x.shape)}")
        qkv = run_child("c_attn", self.c_attn, self.c_attn, x)
        q, k, v = _heads.split_qkv(qkv, self.n_head)
        out, lse = ops.attention(q, k, v, causal=True, scale=self.scale, impl=self.impl)
        self._save(q, k, v, out, lse)
        y = run_child("c_proj", self.c_proj, self.c_proj, _heads.merge_heads(out))
        return run_child("resid_dropout", self.resid_dropout, self.resid_dropout, y)

    def backward(self, dy: Tensor) -> Tensor:
        q, k, v, out, lse = self._take_saved()
        dy = run_child("resid_dropout", self.resid_dropout, self.resid_dropout.backward, dy)
        dout = _heads.split_heads(run_child("c_proj", self.c_proj, self.c_proj.backward, dy),
                                  self.n_head)
        dq, dk, dv = ops.attention_backward(dout, q, k, v, out, lse, causal=True,
                                            scale=self.scale, impl=self.impl)
        return run_child("c_attn", self.c_attn, self.c_attn.backward, _heads.merge_qkv(dq, dk, dv))

    def forward_cached(self, x: Tensor, cache: tuple[Tensor, Tensor], pos: int) -> Tensor:
        """Decoding (eval mode): x (B, T, C) holds the tokens at positions pos..pos+T-1. Their keys
        and values are written into the cache (k, v: (L, B, H, hd), position-major, so the T new
        positions are one contiguous block) and the queries attend over positions 0..pos+T-1
        (causal, aligned to the end), read from the cache in place (kv_len, nothing copied)."""
        cache_k, cache_v = cache[0], cache[1]
        t = int(x.shape[1])
        q, k, v = _heads.split_qkv_positions(self.c_attn(x), self.n_head)
        _heads.narrow(cache_k, pos, t).copy_(k)
        _heads.narrow(cache_v, pos, t).copy_(v)
        out, _ = ops.attention(q, cache_k, cache_v, causal=True, scale=self.scale, kv_len=pos + t,
                               kv_layout="tbhd", impl=self.impl)
        return self.c_proj(_heads.merge_heads(out))

    def extra_repr(self) -> str:
        return f"n_embd={self.n_embd}, n_head={self.n_head}"


class MLP(Module):
    """c_fc (4C, C) -> GELU (erf) -> c_proj (C, 4C) -> dropout."""

    def __init__(self, n_embd: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.c_fc = Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = GELU()
        self.c_proj = Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        for name, m in self.named_children():
            x = run_child(name, m, m, x)
        return x

    def backward(self, dy: Tensor) -> Tensor:
        for name, m in reversed(list(self.named_children())):
            dy = run_child(name, m, m.backward, dy)
        return dy


class Block(Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(.))."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias=bias, dropout=dropout)
        self.ln_2 = LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, bias=bias, dropout=dropout)

    def _sub(self, name: str, x: Tensor) -> Tensor:
        m = getattr(self, name)
        return run_child(name, m, m, x)

    def _sub_back(self, name: str, dy: Tensor) -> Tensor:
        m = getattr(self, name)
        return run_child(name, m, m.backward, dy)

    def forward(self, x: Tensor) -> Tensor:
        x = ops.add(x, self._sub("attn", self._sub("ln_1", x)), impl=self.impl)
        return ops.add(x, self._sub("mlp", self._sub("ln_2", x)), impl=self.impl)

    def backward(self, dy: Tensor) -> Tensor:
        d_mid = self._sub_back("ln_2", self._sub_back("mlp", dy))
        ops.add_(d_mid, dy, impl=self.impl)           # the residual path around the MLP
        dx = self._sub_back("ln_1", self._sub_back("attn", d_mid))
        ops.add_(dx, d_mid, impl=self.impl)           # the residual path around attention
        return dx

    def forward_cached(self, x: Tensor, cache: tuple[Tensor, Tensor], pos: int) -> Tensor:
        x = ops.add(x, self.attn.forward_cached(self.ln_1(x), cache, pos), impl=self.impl)
        return ops.add(x, self.mlp(self.ln_2(x)), impl=self.impl)


class Stack(Module):
    """Named children without a forward of their own (nanoGPT's ModuleDict / ModuleList): the
    owner runs them. Children are added in order, named by the keyword or "0", "1", ..."""

    def __init__(self, *modules: Module, **named: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)
        for name, m in named.items():
            self.add_module(name, m)

    def __len__(self) -> int:
        return len(self._module_names)

    def __getitem__(self, i: int) -> Any:
        return getattr(self, self._module_names[i])

    def __iter__(self):
        return self.children()


def normal_(p: Parameter, std: float) -> None:
    """Re-draw a parameter from N(0, std^2) (hipgrad's generator)."""
    p.data.copy_(tensor(init.normal(p.shape, std), device=p.data.device))


def zeros_(p: Parameter | None) -> None:
    if p is not None:
        p.data.zero_()


__all__ = ["Block", "CausalSelfAttention", "LayerNorm", "MLP"]
