"""Language-model ops: layer norm, scaled dot-product attention, batched GEMM, and gradient
clipping by global norm (sum of squares per tensor, in-place scale)."""

from __future__ import annotations

import math
from typing import Any, Iterable

from .._native import _C
from ..tensor import Tensor, as_tensor
from . import _common

__all__ = ["attention", "attention_backward", "bmm", "clip_grad_norm_", "layer_norm",
           "layer_norm_backward", "scale_", "sum_squares"]


def _float_arg(value: Any, name: str, op: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}")
    return float(value)


def layer_norm(x: Any, weight: Any = None, bias: Any = None, *, eps: float = 1e-5,
               impl: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """(y, mean, rstd): y = (x - mean) * rstd * weight + bias over the last axis of x (..., C),
    rstd = 1 / sqrt(var + eps) with the biased variance; weight, bias (C,) or None; mean and rstd
    have shape x.shape[:-1] (what layer_norm_backward needs)."""
    t = _common.tensors("layer_norm", x=x, weight=weight, bias=bias, optional=("weight", "bias"))
    return tuple(_C.ops.layer_norm(t["x"], t["weight"], t["bias"], _float_arg(eps, "eps", "layer_norm"),
                                   _common.impl_arg(impl, "layer_norm")))


def layer_norm_backward(dy: Any, x: Any, weight: Any, mean: Any, rstd: Any, *,
                        impl: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of layer_norm: dx like x, dweight and dbias (C,) (computed whether or
    not the forward had a weight / bias; weight None means 1)."""
    t = _common.tensors("layer_norm_backward", dy=dy, x=x, weight=weight, mean=mean, rstd=rstd,
                        optional=("weight",))
    return tuple(_C.ops.layer_norm_backward(t["dy"], t["x"], t["weight"], t["mean"], t["rstd"],
                                            _common.impl_arg(impl, "layer_norm_backward")))


def _scale(scale: Any, q: Tensor, op: str) -> float:
    if scale is None:
        d = q.shape[-1] if len(q.shape) == 4 else 0
        return 1.0 / math.sqrt(d) if d > 0 else 1.0  # a bad q is named by the native checks
    return _float_arg(scale, "scale", op)


def attention(q: Any, k: Any, v: Any, *, causal: bool = False, scale: float | None = None,
              kv_len: int | None = None, kv_layout: str = "bhtd", impl: str = "auto",
              out: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(out, lse): out = softmax(scale * q @ k^T) @ v per (batch, head), lse the rows' log-sum-exp
    (B, H, Tq). q (B, H, Tq, D), k and v (B, H, Tk, D) float32; scale defaults to 1/sqrt(D);
    causal: query i sees keys j <= i + (Tk - Tq) (aligned to the end; needs Tq <= Tk).

    Decoding with a KV cache reads the cache in place: k and v may be buffers of L >= kv_len
    positions of which the first `kv_len` are the keys (Tk = kv_len; None: all L), laid out
    (B, H, L, D) (kv_layout="bhtd") or position-major (L, B, H, D) ("tbhd", where a new position
    is appended with one contiguous copy). `out` (B, H, Tq, D) receives the result."""
    t = _common.tensors("attention", q=q, k=k, v=v)
    if kv_len is not None and (isinstance(kv_len, bool) or not isinstance(kv_len, int)):
        raise TypeError(f"attention: kv_len must be an int (the number of valid keys) or None, "
                        f"got {type(kv_len).__name__}")
    if not isinstance(kv_layout, str):
        raise TypeError(f"attention: kv_layout must be 'bhtd' or 'tbhd', got {type(kv_layout).__name__}")
    y = _C.ops.attention(t["q"], t["k"], t["v"], bool(causal), _scale(scale, t["q"], "attention"),
                         kv_len, kv_layout, _common.impl_arg(impl, "attention"),
                         _common.out_arg(out, "attention"))
    return tuple(y)


def attention_backward(dout: Any, q: Any, k: Any, v: Any, out: Any, lse: Any, *,
                       causal: bool = False, scale: float | None = None,
                       impl: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """(dq, dk, dv) of attention, from the forward's out and lse (the scores are recomputed, never
    stored); causal and scale as given to the forward."""
    op = "attention_backward"
    t = _common.tensors(op, dout=dout, q=q, k=k, v=v, out=out, lse=lse)
    return tuple(_C.ops.attention_backward(t["dout"], t["q"], t["k"], t["v"], t["out"], t["lse"],
                                           bool(causal), _scale(scale, t["q"], op),
                                           _common.impl_arg(impl, op)))


def bmm(a: Any, b: Any, *, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0,
        impl: str = "auto", out: Tensor | None = None) -> Tensor:
    """y[i] = alpha * op(a[i]) @ op(b[i]) over the leading batch axis: a (batch, M, K) or
    (batch, K, M) with trans_a, b (batch, K, N) or (batch, N, K) with trans_b; y (batch, M, N)."""
    t = _common.tensors("bmm", a=a, b=b)
    y = _C.ops.bmm(t["a"], t["b"], bool(trans_a), bool(trans_b), _float_arg(alpha, "alpha", "bmm"),
                      _common.impl_arg(impl, "bmm"), _common.out_arg(out, "bmm"))
    return y if out is None else out


def _tensor_list(tensors: Any, name: str, op: str) -> list[Tensor]:
    """A sequence of tensors (a NumPy array per entry becomes a CPU tensor)."""
    if tensors is None or isinstance(tensors, (Tensor, str, bytes)) or not isinstance(tensors, Iterable):
        got = "None" if tensors is None else type(tensors).__name__
        raise TypeError(f"{op}: {name} must be a hipgrad Tensor list (a sequence of tensors), got {got}")
    return [as_tensor(x, f"{op}: {name}[{i}]") for i, x in enumerate(tensors)]


def sum_squares(tensors: Any, *, impl: str = "auto") -> Tensor:
    """(len(tensors),) float32 on the tensors' device: the sum of squares of each tensor."""
    items = _tensor_list(tensors, "tensors", "sum_squares")
    return _C.ops.sum_squares(items, _common.impl_arg(impl, "sum_squares"))


def scale_(x: Tensor, alpha: float, *, impl: str = "auto") -> Tensor:
    """x *= alpha in place; returns x."""
    if not isinstance(x, Tensor):
        got = "None" if x is None else type(x).__name__
        raise TypeError(f"scale_: x is updated in place and must be a hipgrad Tensor, got {got}")
    _C.ops.scale_(x, _float_arg(alpha, "alpha", "scale_"), _common.impl_arg(impl, "scale_"))
    return x


def clip_grad_norm_(grads: Any, max_norm: float, *, eps: float = 1e-6, impl: str = "auto") -> float:
    """Scales every tensor of `grads` in place by min(1, max_norm / (norm + eps)), norm the global
    L2 norm over all of them (PyTorch's clip_grad_norm_); returns the norm before clipping (inf or
    NaN when a gradient is not finite: then nothing is scaled)."""
    op = "clip_grad_norm_"
    max_norm = _float_arg(max_norm, "max_norm", op)
    if not max_norm > 0 or math.isinf(max_norm):
        raise ValueError(f"{op}: max_norm must be a finite number > 0, got {max_norm}")
    items = _tensor_list(grads, "grads", op)
    if not items:
        return 0.0
    sums = sum_squares(items, impl=impl).numpy()
    norm = math.sqrt(float(sums.astype("float64").sum()))
    coef = max_norm / (norm + eps)
    if math.isfinite(norm) and coef < 1.0:
        for g in items:
            scale_(g, coef, impl=impl)
    return norm
