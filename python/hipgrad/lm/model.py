"""The GPT: token + position embeddings, pre-norm blocks, a final LayerNorm and an output layer
tied to the token embedding. Keys and layouts are nanoGPT's, so its checkpoints load directly:

    transformer.wte.weight (V, C)        transformer.wpe.weight (block_size, C)
    transformer.h.{i}.ln_1.{weight,bias} transformer.h.{i}.attn.c_attn.{weight,bias} (3C, C): q, k, v
    transformer.h.{i}.attn.c_proj.*      transformer.h.{i}.ln_2.*
    transformer.h.{i}.mlp.c_fc.* (4C, C) transformer.h.{i}.mlp.c_proj.* (C, 4C)
    transformer.ln_f.*                   lm_head.weight: the same tensor as transformer.wte.weight

    model = hg.build_model("gpt", vocab_size=256, block_size=128, n_layer=4, n_head=4, n_embd=128)
    logits = model(idx)                  # idx int64 (B, T), T <= block_size -> (B, T, V)

The tied weight is one Parameter held by both layers: parameters() yields it once, state_dict()
has both keys, and its gradient is the sum of the embedding's and the output layer's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import ops
from ..nn import _heads
from ..nn.dropout import Dropout
from ..nn.embedding import Embedding
from ..nn.linear import Linear
from ..nn.module import Module, run_child
from ..nn.transformer import Block, LayerNorm, Stack, normal_, zeros_
from ..tensor import Tensor, int_arg, tensor


def _positive(value: Any, name: str) -> int:
    v = int_arg(value, f"gpt: {name}")
    if v < 1:
        raise ValueError(f"gpt: {name} must be a positive int, got {v}")
    return v


class GPT(Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        vocab_size, block_size = _positive(vocab_size, "vocab_size"), _positive(block_size, "block_size")
        n_layer, n_head, n_embd = (_positive(n_layer, "n_layer"), _positive(n_head, "n_head"),
                                   _positive(n_embd, "n_embd"))
        if n_embd % n_head:
            raise ValueError(f"gpt: n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"gpt: dropout must be in [0, 1), got {dropout}")
        self.config = {"vocab_size": vocab_size, "block_size": block_size, "n_layer": n_layer,
                       "n_head": n_head, "n_embd": n_embd, "dropout": float(dropout), "bias": bool(bias)}
        self.spec = {"name": "gpt", "options": dict(self.config)}   # what rebuilds it
        self.transformer = Stack(
            wte=Embedding(vocab_size, n_embd), wpe=Embedding(block_size, n_embd),
            drop=Dropout(dropout),
            h=Stack(*(Block(n_embd, n_head, bias=bias, dropout=dropout) for _ in range(n_layer))),
            ln_f=LayerNorm(n_embd, bias=bias))
        self.lm_head = Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight          # weight tying
        for name, m in self.named_modules():                       # nanoGPT's initialisation
            if isinstance(m, (Linear, Embedding)):
                normal_(m.weight, 0.02)
            if isinstance(m, Linear):
                zeros_(m.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                normal_(p, 0.02 / math.sqrt(2 * n_layer))
        self._positions: dict[tuple, Tensor] = {}

    @property
    def block_size(self) -> int:
        return self.config["block_size"]

    @property
    def vocab_size(self) -> int:
        return self.config["vocab_size"]

    def _input(self, idx: Any) -> Any:
        if isinstance(idx, (np.ndarray, list, tuple)):
            arr = np.asarray(idx)
            if arr.dtype.kind not in "iu":
                raise TypeError(f"gpt: idx must hold integer token ids, got dtype {arr.dtype}")
            return tensor(arr.astype(np.int64), device=self._device)
        return idx

    def check_ids(self, idx: Tensor, what: str = "idx") -> tuple[int, int]:
        if not isinstance(idx, Tensor):
            raise TypeError(f"gpt: {what} must be an int64 tensor or array (B, T), got "
                            f"{type(idx).__name__}")
        if np.dtype(idx.dtype) != np.int64:
            raise TypeError(f"gpt: {what} must be int64 token ids, got {idx.dtype}")
        if len(idx.shape) != 2 or idx.shape[0] < 1 or idx.shape[1] < 1:
            raise ValueError(f"gpt: {what} must be (B, T) with B, T >= 1, got {tuple(idx.shape)}")
        b, t = (int(s) for s in idx.shape)
        if t > self.block_size:
            raise ValueError(f"gpt: {what} has {t} positions but block_size is {self.block_size}; "
                             "crop the context to its last block_size tokens")
        return b, t

    def positions(self, b: int, t: int, start: int = 0) -> Tensor:
        """int64 (B, T) position ids start..start+T-1 on the model's device, made once per shape."""
        key = (b, t, start, self._device)
        if key not in self._positions:
            pos = np.broadcast_to(np.arange(start, start + t, dtype=np.int64), (b, t))
            self._positions[key] = tensor(np.ascontiguousarray(pos), device=self._device)
        return self._positions[key]

    def embed(self, idx: Tensor, start: int = 0) -> Tensor:
        b, t = idx.shape
        tr = self.transformer
        x = ops.add(run_child("transformer.wte", tr.wte, tr.wte, idx),
                    run_child("transformer.wpe", tr.wpe, tr.wpe, self.positions(b, t, start)),
                    impl=self.impl)
        return run_child("transformer.drop", tr.drop, tr.drop, x)

    def forward(self, idx: Tensor) -> Tensor:
        self.check_ids(idx)
        x = self.embed(idx)
        for i, block in enumerate(self.transformer.h):
            x = run_child(f"transformer.h.{i}", block, block, x)
        x = run_child("transformer.ln_f", self.transformer.ln_f, self.transformer.ln_f, x)
        return run_child("lm_head", self.lm_head, self.lm_head, x)

    def backward(self, dlogits: Tensor) -> None:
        tr = self.transformer
        dx = run_child("lm_head", self.lm_head, self.lm_head.backward, dlogits)
        dx = run_child("transformer.ln_f", tr.ln_f, tr.ln_f.backward, dx)
        for i in reversed(range(len(tr.h))):
            block = tr.h[i]
            dx = run_child(f"transformer.h.{i}", block, block.backward, dx)
        dx = run_child("transformer.drop", tr.drop, tr.drop.backward, dx)
        run_child("transformer.wte", tr.wte, tr.wte.backward, dx)
        run_child("transformer.wpe", tr.wpe, tr.wpe.backward, dx)

    def forward_cached(self, idx: Tensor, caches: list, pos: int, last_only: bool = True) -> Tensor:
        """Eval-mode decoding step: idx (B, T) at positions pos..pos+T-1 with each block's KV
        cache (see CausalSelfAttention.forward_cached); the logits of the last position (B, V)
        with `last_only`, else of every position (B, T, V)."""
        b, t = (int(s) for s in idx.shape)
        x = self.embed(idx, pos)
        for block, cache in zip(self.transformer.h, caches):
            x = block.forward_cached(x, cache, pos)
        return self.head(x, last_only)

    def logits_last(self, idx: Tensor) -> Tensor:
        """The last position's logits (B, V) from a full forward over idx (no cache)."""
        self.check_ids(idx)
        x = self.embed(idx)
        for block in self.transformer.h:
            x = block(x)
        return self.head(x, True)

    def head(self, x: Tensor, last_only: bool) -> Tensor:
        """ln_f and lm_head, on the last position only when `last_only` ((B, V))."""
        b, t, c = (int(s) for s in x.shape)
        if last_only and t > 1:
            x = _heads.last_positions(x).reshape(b, 1, c)
        y = self.lm_head(self.transformer.ln_f(x))
        return y.reshape(b, self.vocab_size) if last_only else y

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())


def gpt(vocab_size: int = 256, block_size: int = 128, n_layer: int = 4, n_head: int = 4,
        n_embd: int = 128, dropout: float = 0.0, bias: bool = True) -> GPT:
    return GPT(vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias)
