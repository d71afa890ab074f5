"""The decoding step of a frozen GPT with its KV cache, planned once per (batch, length).

A decoding step reads one token per row and produces the next position's logits. At this model
size each op is a few microseconds of work, so what Python does around the ops costs as much as
the ops: the plan does everything that does not depend on the token once, when it is made.

    plan = DecodePlan(engine_model, batch, length)        # the engine keeps one per (B, L)
    logits = model.forward_cached(prompt, plan.caches, 0) # the prefill: the layers' own path
    logits = plan.step(next_ids, pos)                     # (B, V), a view of the plan's buffer

What the plan holds:
- the KV cache, per block (k, v) each (L, B, H, hd), position-major: a step appends its keys and
  values at position `pos` with one contiguous copy each (at B > 1 a gather of the rows straight
  from c_attn's output), and attention reads positions 0..pos from the cache in place
  (ops.attention with kv_len, kv_layout="tbhd"): the cache is never copied or reallocated;
- one buffer per step output (the residual stream ping-pongs between two), written with `out=`;
- the per-position views (the cache rows at `pos`, the position ids), made on first use;
- the native entry points and their fixed arguments (weights, activation, impl), so a step is a
  plain sequence of native calls. Layer norms still return their (mean, rstd) (3 small tensors).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from .._native import _C
from ..tensor import Tensor, empty, tensor


def _linear_call(layer: Any) -> Any:
    """(x2d, out) -> out for an engine linear layer (FrozenLinear or QuantLinear)."""
    run = getattr(layer, "run", None)
    if run is None:
        raise TypeError(f"DecodePlan: {type(layer).__name__} is not a frozen engine layer")
    return run


class DecodePlan:
    """The KV cache, buffers and views of one (batch, length) for an engine's frozen GPT."""

    def __init__(self, model: Any, batch: int, length: int, device: str) -> None:
        cfg = model.config
        self.batch, self.length, self.device = int(batch), int(length), device
        self.n_head, self.n_embd, self.vocab = cfg["n_head"], cfg["n_embd"], cfg["vocab_size"]
        b, h, c = self.batch, self.n_head, self.n_embd
        hd = c // h
        self.hd = hd
        tr = model.transformer
        self.wte, self.wpe = tr.wte.weight.data, tr.wpe.weight.data
        self.caches = [(empty((length, b, h, hd), device=device),
                        empty((length, b, h, hd), device=device)) for _ in range(len(tr.h))]
        self.blocks = []
        for blk in tr.h:
            gelu = getattr(blk.mlp, "gelu", None)
            self.blocks.append((self._ln(blk.ln_1), _linear_call(blk.attn.c_attn),
                                _linear_call(blk.attn.c_proj), self._ln(blk.ln_2),
                                _linear_call(blk.mlp.c_fc),
                                getattr(gelu, "kind", None), _linear_call(blk.mlp.c_proj),
                                float(blk.attn.scale), blk.attn.impl))
        self.ln_f = self._ln(tr.ln_f)
        self.head = _linear_call(model.lm_head)
        # step buffers: the residual stream (two, ping-pong), the block's intermediates, logits
        self.x = [empty((b, c), device=device), empty((b, c), device=device)]
        self.tok = empty((b, c), device=device)
        self.qkv = empty((b, 3 * c), device=device)
        self.att = empty((b, h, 1, hd), device=device)
        self.att_rows = self.att.reshape(b, c)    # (B, H, 1, hd) read as (B, C): merged heads
        self.proj = empty((b, c), device=device)
        self.fc = empty((b, 4 * c), device=device)
        self.logits = empty((b, self.vocab), device=device)
        self.ids = empty((b,), device=device, dtype=np.int64)
        self._ids_host = np.asarray(self.ids, copy=False) if device == "cpu" else None
        # rows of qkv (viewed (B * 3 * H, hd)): q, k and v of every (b, h), in (b, h) order
        rows = (np.arange(b)[:, None] * 3 * h + np.arange(h)[None, :]).reshape(-1)
        self.qkv_rows = self.qkv.reshape(b * 3 * h, hd)
        self.q = self.qkv.reshape(3, c).narrow(0, 1).reshape(1, h, 1, hd) if b == 1 else \
            empty((b, h, 1, hd), device=device)
        self.q_rows = self.q.reshape(b * h, hd)
        self.gather = None if b == 1 else [tensor(rows + i * h, device=device) for i in range(3)]
        self.kv_src = (self.qkv.reshape(3, c).narrow(1, 1).reshape(1, b, h, hd),
                       self.qkv.reshape(3, c).narrow(2, 1).reshape(1, b, h, hd)) if b == 1 else None
        self._at: dict[int, tuple] = {}

    def _ln(self, ln: Any) -> tuple:
        return (ln.weight.data, ln.bias.data if ln.bias is not None else None, float(ln.eps), ln.impl)

    def _views(self, pos: int) -> tuple:
        """(position ids (B,), per block the cache rows at pos as (1, B, H, hd) and (B * H, hd))."""
        v = self._at.get(pos)
        if v is None:
            b, h, hd = self.batch, self.n_head, self.hd
            ids = tensor(np.full((b,), pos, np.int64), device=self.device)
            rows = [(k.narrow(pos, 1), vv.narrow(pos, 1)) for k, vv in self.caches]
            flat = [(k.reshape(b * h, hd), vv.reshape(b * h, hd)) for k, vv in rows]
            v = self._at[pos] = (ids, rows, flat)
        return v

    def set_ids(self, ids: np.ndarray) -> None:
        if self._ids_host is not None:
            self._ids_host[:] = ids
        else:
            self.ids.copy_(tensor(np.ascontiguousarray(ids, dtype=np.int64), device=self.device))

    def step(self, ids: np.ndarray, pos: int) -> Tensor:
        """The logits (B, V) of position `pos` given its tokens `ids` (B,) and the cache filled
        for positions 0..pos-1; the keys and values of `pos` are appended to the cache."""
        if not 0 <= pos < self.length:
            raise ValueError(f"DecodePlan.step: pos must be in [0, {self.length}), got {pos}")
        C = _C.ops
        pos_ids, rows, flat = self._views(pos)
        self.set_ids(ids)
        x, other = self.x
        C.embedding(self.wte, self.ids, "handwritten", self.tok)
        C.embedding(self.wpe, pos_ids, "handwritten", other)
        C.add(self.tok, other, 1.0, "handwritten", x)
        n = pos + 1
        for (ln1, c_attn, c_proj, ln2, c_fc, gelu, mlp_proj, scale, impl), cache, row, fl in zip(
                self.blocks, self.caches, rows, flat):
            y = C.layer_norm(x, ln1[0], ln1[1], ln1[2], ln1[3])[0]
            c_attn(y, self.qkv)
            if self.gather is None:        # batch 1: q, k, v are contiguous slices of qkv
                row[0].copy_(self.kv_src[0])
                row[1].copy_(self.kv_src[1])
            else:                          # rows of qkv gathered into q and the cache
                C.embedding(self.qkv_rows, self.gather[0], "handwritten", self.q_rows)
                C.embedding(self.qkv_rows, self.gather[1], "handwritten", fl[0])
                C.embedding(self.qkv_rows, self.gather[2], "handwritten", fl[1])
            C.attention(self.q, cache[0], cache[1], True, scale, n, "tbhd", impl, self.att)
            c_proj(self.att_rows, self.proj)
            C.add(x, self.proj, 1.0, "handwritten", other)
            y = C.layer_norm(other, ln2[0], ln2[1], ln2[2], ln2[3])[0]
            c_fc(y, self.fc)
            # fp32: GELU is folded into c_fc; int8: its own op
            mlp_proj(self.fc if gelu is None else ops.activation(self.fc, gelu), self.proj)
            C.add(other, self.proj, 1.0, "handwritten", x)
        y = C.layer_norm(x, self.ln_f[0], self.ln_f[1], self.ln_f[2], self.ln_f[3])[0]
        self.head(y, self.logits)
        return self.logits

    def nbytes(self) -> int:
        return sum(t.numel() * 4 for layer in self.caches for t in layer)


__all__ = ["DecodePlan"]
