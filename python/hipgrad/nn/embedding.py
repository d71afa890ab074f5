"""Embedding: rows of a (num_embeddings, embedding_dim) table picked by int64 indices."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from ..engine.steps import Step, host_copy
from ..tensor import Tensor, int_arg, tensor
from . import init
from .module import Module, Parameter, accumulate_grad

# exported as hipgrad.nn.<name>
__all__ = ["Embedding"]


class Embedding(Module):
    """idx (any shape, int64) -> weight[idx] (idx.shape + (embedding_dim,)); weight ~ N(0, 1).
    backward returns None: indices have no gradient."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        num_embeddings, embedding_dim = (int_arg(num_embeddings, "Embedding: num_embeddings"),
                                         int_arg(embedding_dim, "Embedding: embedding_dim"))
        if num_embeddings <= 0 or embedding_dim <= 0:
            raise ValueError(f"Embedding: num_embeddings and embedding_dim must be positive, got "
                             f"{num_embeddings} and {embedding_dim}")
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.weight = Parameter(tensor(init.normal((self.num_embeddings, self.embedding_dim))))

    def _input(self, idx: Any) -> Any:
        if isinstance(idx, (np.ndarray, list, tuple)):
            arr = np.asarray(idx)
            if arr.dtype.kind not in "iu":
                raise TypeError(f"Embedding: idx must hold integers, got dtype {arr.dtype}")
            try:
                return tensor(arr, device=self.weight.device, dtype=np.int64)
            except ValueError as exc:  # values beyond int64
                raise ValueError(f"Embedding: idx: {exc}") from None
        if not isinstance(idx, Tensor):
            raise TypeError(f"Embedding: idx must be an int64 hg.Tensor or an integer array, got "
                            f"{type(idx).__name__}")
        return idx

    def forward(self, idx: Tensor) -> Tensor:
        if np.dtype(idx.dtype) != np.int64:
            raise TypeError(f"Embedding: idx must be an int64 tensor, got {idx.dtype}")
        y = ops.embedding(self.weight.data, idx, impl=self.impl)
        self._save(idx)
        return y

    def backward(self, dy: Tensor) -> None:
        (idx,) = self._take_saved()
        if self.weight.requires_grad:
            accumulate_grad(self.weight, ops.embedding_backward(dy, idx, self.num_embeddings,
                                                                 impl=self.impl))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"

    def to_steps(self, name: str) -> list[Step]:
        return [Step("embedding", name, arrays={"weight": host_copy(self.weight)})]
