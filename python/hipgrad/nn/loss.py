"""Losses: calling one returns the mean loss as a Python float and keeps what backward() needs;
backward() returns d(loss)/d(pred) as a tensor on pred's device."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import ops
from ..tensor import Tensor, tensor
from .module import Module

# exported as hipgrad.nn.<name>
__all__ = ["CrossEntropyLoss", "MSELoss"]

_LABEL_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))


class CrossEntropyLoss(Module):
    """Mean over N of -log softmax(logits)[label]; logits (N, C), labels (N,) int64 or int32.
    N-D logits (..., C) take labels (...) (a language model's (B, T, V) and (B, T)): the mean is
    over every position, and backward returns the logits' shape."""

    def _labels(self, labels: Any, device: str) -> Tensor:
        if isinstance(labels, Tensor):
            if np.dtype(labels.dtype) not in _LABEL_DTYPES:
                raise TypeError(f"CrossEntropyLoss: labels must be int64 or int32 class indices, "
                                f"got {labels.dtype}")
            return labels
        arr = np.asarray(labels)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"CrossEntropyLoss: labels must be integer class indices, got dtype "
                            f"{arr.dtype}")
        dtype = arr.dtype if arr.dtype in _LABEL_DTYPES else np.int64
        return tensor(arr, device=device, dtype=dtype)

    def forward(self, logits: Tensor, labels: Any) -> float:
        labels_t = self._labels(labels, logits.device)
        shape = tuple(logits.shape)
        if len(shape) > 2:
            if tuple(labels_t.shape) != shape[:-1]:
                raise ValueError(f"CrossEntropyLoss: labels must have shape {shape[:-1]} for logits "
                                 f"{shape}, got {tuple(labels_t.shape)}")
            rows = math.prod(shape[:-1])
            logits, labels_t = logits.reshape(rows, shape[-1]), labels_t.reshape(rows)
        loss, probs = ops.softmax_cross_entropy(logits, labels_t, impl=self.impl)
        self.loss_tensor = loss
        self._save(probs, labels_t, shape)
        return float(loss.numpy())

    def backward(self) -> Tensor:  # type: ignore[override]
        probs, labels, shape = self._take_saved()
        dlogits = ops.softmax_cross_entropy_backward(probs, labels, impl=self.impl)
        return dlogits if len(shape) <= 2 else dlogits.reshape(*shape)


class MSELoss(Module):
    """Mean over all elements of (pred - target)^2."""

    def forward(self, pred: Tensor, target: Any) -> float:
        if not isinstance(target, Tensor):
            target = tensor(np.asarray(target, dtype=np.float32), device=pred.device)
        loss = ops.mse_loss(pred, target, impl=self.impl)
        self.loss_tensor = loss
        self._save(pred, target)
        return float(loss.numpy())

    def backward(self) -> Tensor:  # type: ignore[override]
        pred, target = self._take_saved()
        return ops.mse_loss_backward(pred, target, impl=self.impl)
