"""Generation with a frozen GPT: read the prompt, produce the next token, again and again.

    engine = hg.InferenceEngine.from_model(model)        # or .load("runs/pydoc-gpt")
    out = engine.generate(ids, 100, temperature=0.8, top_k=40, seed=0)   # (B, T0 + 100) int64

The engine holds its own copy of the weights (`weights_digest()` is the same before and after
any number of generations: holding text in the context is not learning). With the KV cache
(use_cache=True) the prompt is read once and each new token costs one position's work: its keys
and values are appended to a cache that the engine allocates once per (batch, length) and
reuses. Without it, every step recomputes the whole context (kept to compare against). When the
context outgrows block_size, the model sees its last block_size tokens (the cache is refilled
from them, so both paths give the same tokens). INT8 replaces each linear layer's weight by
per-output-channel int8 with activation scales calibrated on real tokens (`calibrate`, or the
first prompt); the products run as int8 GEMMs with int32 accumulation.

Sampling: the logits of the last position are scaled by 1/temperature and turned into
probabilities on the device; the draw (top-k, then one multinomial sample per row, or the argmax
when temperature is 0) is made on the host, where the chosen ids are needed anyway.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from typing import Any

import numpy as np

from .. import ops
from .._native import _C
from ..training.checkpoint import load_checkpoint
from ..nn.linear import Linear
from ..nn.module import Module
from ..tensor import Tensor, tensor
from .decode import DecodePlan
from .model import GPT


def is_gpt_checkpoint(path: Any) -> bool:
    """Whether `path` is a hipgrad checkpoint whose sidecar describes a GPT."""
    import json
    from ..training.checkpoint import resolve_paths
    try:
        _, sidecar = resolve_paths(path, reading=True)
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError, TypeError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("spec"), dict) and meta["spec"].get("name") == "gpt"


class FrozenLinear(Module):
    """A frozen fp32 Linear as one fused op: y = act(x W^T + b), with the activation that follows
    it (the MLP's GELU) folded in; on the CPU the weight is packed once for the GEMM's panels."""

    def __init__(self, lin: Linear, device: str, activation: str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features, self.activation = lin.in_features, lin.out_features, activation
        self.b = lin.bias.data if lin.bias is not None else None
        self.packed = device == "cpu" and self.out_features >= 64
        self.w = ops.pack_linear_weight(lin.weight.data) if self.packed else lin.weight.data
        self._act = activation or "none"

    def run(self, x2: Tensor, out: Tensor) -> Tensor:
        """The product for x2 (M, in_features) into out (M, out_features): one native call,
        its arguments fixed here (the decoding plan's path; forward() is the checked one)."""
        if self.packed:
            return _C.ops.linear_bias_act_packed(x2, self.w, self.b, self.out_features, self._act,
                                                 0.01, "auto", out)
        return _C.ops.linear_bias_act(x2, self.w, self.b, self._act, 0.01, "auto", out)

    def forward(self, x: Tensor) -> Tensor:
        shape = tuple(x.shape)
        x2 = x.reshape(math.prod(shape[:-1]), self.in_features)
        if self.packed:
            y = ops.linear_bias_act_packed(x2, self.w, self.b, n=self.out_features,
                                           activation=self.activation)
        else:
            y = ops.linear_bias_act(x2, self.w, self.b, activation=self.activation)
        return y.reshape(*shape[:-1], self.out_features)


class QuantLinear(Module):
    """A frozen Linear in int8: x is quantized with a calibrated per-tensor scale, the product
    runs in int8 with int32 accumulation and is dequantized with the weight's per-row scales."""

    def __init__(self, lin: Linear, device: str) -> None:
        super().__init__()
        w = lin.weight.data.numpy().astype(np.float64)
        amax = np.abs(w).max(axis=1)
        scale = np.where(amax > 0, amax / 127.0, 1.0)
        self.in_features, self.out_features = lin.in_features, lin.out_features
        self.wq = tensor(np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), device, np.int8)
        self.w_scale = tensor(scale.astype(np.float32), device)
        self.b = lin.bias.data if lin.bias is not None else None
        object.__setattr__(self, "fp32", lin)   # used while calibrating, then dropped (not a child)
        self.x_amax = 0.0
        self.x_scale: float | None = None

    def forward(self, x: Tensor) -> Tensor:
        shape = tuple(x.shape)
        if self.x_scale is None:          # calibrating: observe the input, compute in fp32
            self.x_amax = max(self.x_amax, float(np.abs(x.numpy()).max()))
            return self.fp32(x)
        x2 = x.reshape(math.prod(shape[:-1]), self.in_features)
        y = ops.qgemm(ops.quantize(x2, self.x_scale), self.wq, self.x_scale, self.w_scale, self.b)
        return y.reshape(*shape[:-1], self.out_features)

    def run(self, x2: Tensor, out: Tensor) -> Tensor:
        """forward for x2 (M, in_features) into out (the decoding plan's path)."""
        if self.x_scale is None:
            return out.copy_(self.forward(x2))
        return ops.qgemm(ops.quantize(x2, self.x_scale), self.wq, self.x_scale, self.w_scale,
                         self.b, out=out)

    def finish_calibration(self) -> None:
        self.x_scale = (self.x_amax if self.x_amax > 0 else 1.0) / 127.0
        object.__setattr__(self, "fp32", None)


def _check_sampling(temperature: Any, top_k: Any, vocab: int) -> tuple[float, int | None]:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)):
        raise TypeError(f"temperature must be a number >= 0, got {temperature!r}")
    t = float(temperature)
    if not (t >= 0.0 and math.isfinite(t)):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is None:
        return t, None
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise TypeError(f"top_k must be an int in [1, {vocab}] or None, got {top_k!r}")
    if not 1 <= int(top_k) <= vocab:
        raise ValueError(f"top_k must be in [1, {vocab}] (the vocabulary size) or None, got {top_k}")
    return t, int(top_k)


class GPTEngine:
    """Forward-only generation with a frozen copy of a GPT (fp32 or int8)."""

    def __init__(self, model: GPT, *, device: str = "cpu", precision: str = "fp32",
                 source: str = "model", tokenizer: Any = None) -> None:
        if precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be 'fp32' or 'int8', got {precision!r}")
        from ..training.models import model_from_spec
        copy = model_from_spec(model.spec)
        copy.load_state_dict(model.state_dict(), strict=True)
        # Decoding meets a new key length at every token: the default kernels run, instead of
        # impl="auto" timing the candidates for each new shape.
        self.model = copy.to(device).eval().set_impl("handwritten")
        self.device, self.precision, self.source, self.tokenizer = device, precision, source, tokenizer
        self.config = dict(self.model.config)
        self.calibrated = precision == "fp32"
        if precision == "int8":
            self._quantize()
        else:
            self._fuse()
        self._plans: dict[tuple[int, int], DecodePlan] = {}
        self.last_stats: dict = {}

    @classmethod
    def from_model(cls, model: GPT, *, device: str = "cpu", precision: str = "fp32",
                   tokenizer: Any = None) -> "GPTEngine":
        return cls(model, device=device, precision=precision, source=type(model).__name__,
                   tokenizer=tokenizer)

    @classmethod
    def load(cls, path: Any, *, device: str = "cpu", precision: str | None = None) -> "GPTEngine":
        """A GPT checkpoint with its tokenizer (None when it holds none: generate() then takes
        ids only)."""
        from ..data.text import tokenizer_from_meta
        c = load_checkpoint(path)
        model = c.build_model()
        meta = c.extra.get("tokenizer")
        tok = tokenizer_from_meta(meta, str(c.path)) if meta is not None else None
        return cls(model, device=device, precision=precision or "fp32", source=str(path), tokenizer=tok)

    # ---- frozen weights ----------------------------------------------------------------------
    def _quantize(self) -> None:
        for _, m in list(self.model.named_modules()):
            for name in list(m._module_names):
                child = getattr(m, name)
                if isinstance(child, Linear):
                    setattr(m, name, QuantLinear(child, self.device))

    def _fuse(self) -> None:
        """Every Linear as a FrozenLinear; the MLP's GELU folded into c_fc."""
        from ..nn.container import Identity
        from ..nn.transformer import MLP
        for _, m in list(self.model.named_modules()):
            if isinstance(m, MLP):
                m.c_fc = FrozenLinear(m.c_fc, self.device, activation="gelu")
                m.gelu = Identity()
            for name in list(m._module_names):
                child = getattr(m, name)
                if isinstance(child, Linear):
                    setattr(m, name, FrozenLinear(child, self.device))

    def _quant_layers(self) -> list[QuantLinear]:
        return [m for m in self.model.modules() if isinstance(m, QuantLinear)]

    def weights_digest(self) -> str:
        """SHA-256 over every weight the engine holds (fp32 and int8), read back from the device."""
        h = hashlib.sha256()
        for name, m in self.model.named_modules():
            for key in m._param_names:
                h.update(f"{name}.{key}".encode())
                h.update(getattr(m, key).data.numpy().tobytes())
            if isinstance(m, (QuantLinear, FrozenLinear)):
                for key in ("wq", "w_scale", "b", "w"):
                    if not hasattr(m, key):
                        continue
                    if getattr(m, key) is not None:
                        h.update(f"{name}.{key}".encode())
                        h.update(getattr(m, key).numpy().tobytes())
        return h.hexdigest()

    def calibrate(self, ids: Any) -> "GPTEngine":
        """INT8: the activation scale of every linear layer from one fp32 pass over `ids`."""
        if self.precision != "int8":
            raise RuntimeError("calibrate: only an int8 engine is calibrated")
        if self.calibrated:
            raise RuntimeError("calibrate: this engine is already calibrated")
        x = self._ids(ids)
        self.model.logits_last(x[:, -self.config["block_size"]:] if x.shape[1] > self.config["block_size"] else x)
        for q in self._quant_layers():
            q.finish_calibration()
        self.calibrated = True
        return self

    # ---- the KV cache ------------------------------------------------------------------------
    def plan_for(self, batch: int, length: int) -> DecodePlan:
        """The decoding plan of this (batch, length): the KV cache and the step's buffers,
        allocated on the first generate of this shape and reused after."""
        key = (int(batch), int(length))
        if key not in self._plans:
            self._plans[key] = DecodePlan(self.model, batch, length, self.device)
        return self._plans[key]

    def cache_for(self, batch: int, length: int) -> list:
        """Per block (k, v), each (length, B, H, hd) (position-major: a new position is one
        contiguous block, and attention reads the first n positions in place)."""
        return self.plan_for(batch, length).caches

    def cache_bytes(self) -> dict:
        return {f"{b}x{n}": plan.nbytes() for (b, n), plan in self._plans.items()}

    # ---- generation --------------------------------------------------------------------------
    def _ids(self, ids: Any) -> Tensor:
        arr = ids.numpy() if isinstance(ids, Tensor) else np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"generate: ids must be int64 token ids (B, T0), got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[0] < 1:
            raise ValueError(f"generate: ids must be (B, T0) with B >= 1, got shape {arr.shape}")
        if arr.shape[1] < 1:
            raise ValueError("generate: ids is empty (T0 = 0): the prompt needs at least one token")
        v = self.config["vocab_size"]
        bad = arr[(arr < 0) | (arr >= v)]
        if bad.size:
            raise ValueError(f"generate: ids holds token {int(bad[0])}, outside the vocabulary [0, {v})")
        return tensor(arr.astype(np.int64), device=self.device)

    def generate(self, ids: Any, max_new_tokens: int, *, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None,
                 use_cache: bool = True) -> np.ndarray:
        """ids (B, T0) int64 -> (B, T0 + max_new_tokens) int64: the prompt and the new tokens."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) \
                or max_new_tokens < 0:
            raise ValueError(f"generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        temperature, top_k = _check_sampling(temperature, top_k, self.config["vocab_size"])
        x = self._ids(ids)
        out = x.numpy()
        block = self.config["block_size"]
        if out.shape[1] > block:
            warnings.warn(f"generate: the prompt has {out.shape[1]} tokens, more than block_size "
                          f"{block}; the model sees its last {block}", UserWarning, stacklevel=2)
        if self.precision == "int8" and not self.calibrated:
            self.calibrate(out)
        rng = np.random.default_rng(seed)
        b, t0, n_new = out.shape[0], out.shape[1], int(max_new_tokens)
        context = np.empty((b, t0 + n_new), dtype=np.int64)
        context[:, :t0] = out
        start = time.perf_counter()
        plan, pos = None, 0
        if use_cache and n_new:
            plan = self.plan_for(b, min(block, t0 + n_new))
        for i in range(n_new):
            end = t0 + i                               # tokens known so far
            if plan is None:
                window = context[:, max(0, end - block):end]
                logits = self.model.logits_last(tensor(window, device=self.device))
            elif i == 0 or pos >= plan.length:         # prefill, or refill after the crop
                window = context[:, max(0, end - block):end]
                logits = self.model.forward_cached(tensor(window, device=self.device), plan.caches, 0)
                pos = window.shape[1]
            else:                                      # one position through the plan
                logits = plan.step(context[:, end - 1], pos)
                pos += 1
            context[:, end] = self._pick(logits, temperature, top_k, rng)
        seconds = time.perf_counter() - start
        self.last_stats = {"new_tokens": int(b * n_new), "seconds": seconds,
                           "tokens_per_s": b * n_new / seconds if seconds > 0 else float("nan"),
                           "use_cache": bool(use_cache), "batch": b}
        return context

    def _pick(self, logits: Tensor, temperature: float, top_k: int | None,
              rng: np.random.Generator) -> np.ndarray:
        """The next token of every row from the last position's logits (B, V)."""
        if temperature == 0.0:
            return logits.numpy().argmax(axis=1)
        ops.scale_(logits, 1.0 / temperature)
        probs = ops.softmax(logits).numpy().astype(np.float64)
        if top_k is not None and top_k < probs.shape[1]:
            kth = np.partition(probs, -top_k, axis=1)[:, -top_k][:, None]
            probs = np.where(probs >= kth, probs, 0.0)
        probs /= probs.sum(axis=1, keepdims=True)
        u = rng.random((probs.shape[0], 1))
        return np.minimum((np.cumsum(probs, axis=1) < u).sum(axis=1), probs.shape[1] - 1)

    def describe(self) -> str:
        c = self.config
        return (f"GPTEngine({self.precision}, {self.device}): {c['n_layer']} layers, {c['n_head']} "
                f"heads, {c['n_embd']} wide, block {c['block_size']}, vocab {c['vocab_size']}")
