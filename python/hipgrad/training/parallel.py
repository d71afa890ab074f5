"""Data parallelism for the Trainer: what changes when `hipgrad.distributed.world_size() > 1`.

Every rank holds the whole model. At start rank 0's weights and buffers are broadcast and the
ranks compare hashes of the hipgrad version, the model spec and the weights (a mismatch is
refused naming the rank). Each global batch is cut into contiguous row slices, rank r taking
rows [r*B/N, (r+1)*B/N); the gradients are averaged with weights n_r/B (so the result is the
gradient of the mean loss over the global batch, as one process computes it) by a
GradReducer whose buckets start during the backward. BatchNorm running statistics stay per
rank (as in PyTorch DDP by default); checkpoints hold rank 0's.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from .. import distributed as dist


def active() -> bool:
    return dist.is_initialized() and dist.world_size() > 1


def rows(batch: int) -> tuple[int, int]:
    """This rank's rows [lo, hi) of a global batch of `batch` rows."""
    n, r = dist.world_size(), dist.rank()
    if batch < n:
        raise dist.DistributedError(f"a global batch of {batch} rows cannot be split over {n} "
                                    "ranks: use a batch size of at least the number of ranks")
    return r * batch // n, (r + 1) * batch // n


def _state(model: Any) -> list[tuple[str, Any]]:
    params = [(k, p.data) for k, p in model.named_parameters()]
    return params + list(model.named_buffers())


def weights_digest(model: Any) -> str:
    h = hashlib.sha256()
    for key, t in _state(model):
        h.update(key.encode())
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    return h.hexdigest()


def sync_model(model: Any) -> None:
    """Rank 0's weights and buffers on every rank, then the start-up consistency checks."""
    from .._version import __version__
    dist.check_consistent("the hipgrad version", __version__)
    spec = getattr(model, "spec", None)
    dist.check_consistent("the model spec", json.dumps(spec, sort_keys=True, default=str))
    dist.check_consistent("the model's tensor names and shapes",
                          repr([(k, tuple(t.shape), str(t.dtype)) for k, t in _state(model)]))
    for _, t in _state(model):
        dist.broadcast_(t, root=0)
    check_weights(model)


def check_weights(model: Any) -> None:
    dist.check_consistent("the weights after broadcast", weights_digest(model))


def clip_grad_norm(params: list[Any], max_norm: float) -> float:
    """Scale the gradients so their global L2 norm is at most `max_norm` (as
    torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6)); returns the norm.
    Run on the averaged gradients, so every rank computes the same norm."""
    grads = [p.grad for p in params if p.grad is not None]
    hosts = [np.asarray(g, copy=False) if str(g.device).startswith("cpu") else g.numpy()
             for g in grads]
    norm = float(np.sqrt(sum(float(np.dot(a.ravel().astype(np.float64), a.ravel())) for a in hosts)))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        from ..tensor import borrow
        for g, a in zip(grads, hosts):
            a *= np.float32(coef)
            if not str(g.device).startswith("cpu"):
                g.copy_(borrow(a, device=g.device))
    return norm
