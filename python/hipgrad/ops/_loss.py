"""Losses and softmax: softmax cross-entropy (with its gradient), softmax, mean squared error."""

from __future__ import annotations

from typing import Any

from .._native import _C
from ..tensor import Tensor
from . import _common

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["mse_loss", "mse_loss_backward", "softmax", "softmax_cross_entropy",
           "softmax_cross_entropy_backward"]


def softmax_cross_entropy(logits: Any, labels: Any, impl: str = "auto") -> tuple[Tensor, Tensor]:
    """(loss, probs): loss is the 0-d mean over all positions of -log softmax(logits)[..., label],
    probs is softmax(logits) over the last axis. logits (N, C) or (..., C) float32 (class axis
    last); labels (N,) or (...) int64 or int32 in [0, C)."""
    t = _common.tensors("softmax_cross_entropy", logits=logits, labels=labels)
    loss, probs = _C.ops.softmax_cross_entropy(
        t["logits"], t["labels"], _common.impl_arg(impl, "softmax_cross_entropy"))
    return loss, probs


def softmax_cross_entropy_backward(probs: Any, labels: Any, impl: str = "auto") -> Tensor:
    """dlogits = (probs - onehot(labels)) / N, N the number of positions: the gradient of the mean
    loss, with probs' (the logits') shape."""
    t = _common.tensors("softmax_cross_entropy_backward", probs=probs, labels=labels)
    return _C.ops.softmax_cross_entropy_backward(
        t["probs"], t["labels"], _common.impl_arg(impl, "softmax_cross_entropy_backward"))


def softmax(x: Any, impl: str = "auto", *, out: Tensor | None = None) -> Tensor:
    """softmax over the last axis of x (float32, any rank >= 1); same shape as x.
    With `out`, the result is written there (see _common.out_arg) and `out` is returned."""
    t = _common.tensors("softmax", x=x)
    return _C.ops.softmax(t["x"], _common.impl_arg(impl, "softmax"), _common.out_arg(out, "softmax"))


def mse_loss(pred: Any, target: Any, impl: str = "auto") -> Tensor:
    """The 0-d mean of (pred - target)^2; pred and target float32 of one shape."""
    t = _common.tensors("mse_loss", pred=pred, target=target)
    return _C.ops.mse_loss(t["pred"], t["target"], _common.impl_arg(impl, "mse_loss"))


def mse_loss_backward(pred: Any, target: Any, impl: str = "auto") -> Tensor:
    """dpred = 2 (pred - target) / n, pred's shape."""
    t = _common.tensors("mse_loss_backward", pred=pred, target=target)
    return _C.ops.mse_loss_backward(t["pred"], t["target"],
                                    _common.impl_arg(impl, "mse_loss_backward"))
