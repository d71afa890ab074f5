"""Gradient averaging for data-parallel training, in buckets that start while backward runs.

The parameters are laid end to end in backward order (last layer first) and cut into buckets
of `bucket_mb` MiB (a cut may fall inside a tensor). nn's accumulate_grad calls `on_grad` after
each gradient lands; once every piece of a bucket has its gradient, the bucket is copied
(scaled by this rank's share of the global batch) into a flat buffer and a non-blocking
MPI_Iallreduce(SUM) starts, overlapping the rest of the backward. `finish()` waits (with the
collective timeout) and writes the sums back: every rank then holds the gradient of the loss
averaged over the global batch. A parameter whose gradient is accumulated again after its
bucket started (a shared weight) gets its bucket reduced again, blocking, at finish.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import distributed as dist
from ..nn import grad as nn_grad
from ..tensor import borrow


class GradReducer:
    def __init__(self, params: list[Any], bucket_mb: float = 4.0) -> None:
        if not bucket_mb > 0:
            raise ValueError(f"GradReducer: bucket_mb must be positive, got {bucket_mb!r}")
        self.params = [p for p in params if getattr(p, "requires_grad", True)]
        cap = max(1, int(bucket_mb * (1 << 20)) // 4)
        # bucket = (flat float32 buffer, [(param index, start in param, stop, start in bucket)])
        self.buckets: list[tuple[np.ndarray, list[tuple[int, int, int, int]]]] = []
        self.where: dict[int, list[int]] = {}   # id(param) -> its buckets
        segs: list[tuple[int, int, int, int]] = []
        fill = 0
        for i, p in enumerate(self.params):
            n, start = int(np.prod(p.data.shape)), 0
            while start < n:
                take = min(n - start, cap - fill)
                segs.append((i, start, start + take, fill))
                fill += take
                start += take
                if fill == cap:
                    self._close(segs, fill)
                    segs, fill = [], 0
        if segs:
            self._close(segs, fill)
        self.comm_s = 0.0      # seconds spent issuing collectives and waiting for them
        self.wait_s = 0.0      # of which waiting in finish (not overlapped with backward)
        self._active = False

    def _close(self, segs: list, fill: int) -> None:
        b = len(self.buckets)
        self.buckets.append((np.empty(fill, np.float32), list(segs)))
        for i, *_ in segs:
            ids = self.where.setdefault(id(self.params[i]), [])
            if b not in ids:
                ids.append(b)

    def begin(self, scale: float) -> None:
        """Start a step: gradients will be multiplied by `scale` (local rows / global rows)."""
        self.scale = np.float32(scale)
        self.ready: set[int] = set()
        self.missing = [len({i for i, *_ in segs}) for _, segs in self.buckets]
        self.requests: list[Any] = [None] * len(self.buckets)
        self.late: set[int] = set()
        nn_grad.GRAD_HOOKS.append(self.on_grad)
        self._active = True

    def on_grad(self, param: Any) -> None:
        key = id(param)
        if key not in self.where:
            return
        if key in self.ready:
            self.late.update(b for b in self.where[key] if self.requests[b] is not None)
            return
        self.ready.add(key)
        for b in self.where[key]:
            self.missing[b] -= 1
            if self.missing[b] == 0:
                self._fire(b)

    def _grad_flat(self, p: Any) -> np.ndarray | None:
        if p.grad is None:
            return None
        g = p.grad
        arr = np.asarray(g, copy=False) if str(g.device).startswith("cpu") else g.numpy()
        return arr.reshape(-1)

    def _fill(self, b: int) -> None:
        flat, segs = self.buckets[b]
        for i, s0, s1, o in segs:
            g = self._grad_flat(self.params[i])
            if g is None:
                flat[o:o + s1 - s0] = 0
            else:
                np.multiply(g[s0:s1], self.scale, out=flat[o:o + s1 - s0])

    def _fire(self, b: int) -> None:
        t0 = time.perf_counter()
        self._fill(b)
        if dist.world_size() > 1:
            MPI = dist._mpi()
            self.requests[b] = dist._call("MPI_Iallreduce", dist._comm().Iallreduce,
                                          MPI.IN_PLACE, [self.buckets[b][0], MPI.FLOAT], MPI.SUM)
        else:
            self.requests[b] = True
        self.comm_s += time.perf_counter() - t0

    def finish(self) -> None:
        """Wait for every bucket and write the averaged gradients back into param.grad."""
        if not self._active:
            raise RuntimeError("GradReducer.finish without begin")
        nn_grad.GRAD_HOOKS.remove(self.on_grad)
        self._active = False
        for b in range(len(self.buckets)):
            if self.requests[b] is None:
                self._fire(b)     # parameters that got no gradient this step: zeros
        t0 = time.perf_counter()
        pending = [r for r in self.requests if r is not True]
        if pending:
            dist.wait(pending, "gradient all-reduce (MPI_Iallreduce)")
        for b in sorted(self.late):
            self._fire(b)
            if self.requests[b] is not True:
                dist.wait([self.requests[b]], "gradient all-reduce (MPI_Iallreduce)")
        waited = time.perf_counter() - t0
        self.wait_s += waited
        self.comm_s += waited
        hosts: dict[int, np.ndarray] = {}
        for flat, segs in self.buckets:
            for i, s0, s1, o in segs:
                p = self.params[i]
                if p.grad is None:
                    continue
                if i not in hosts:
                    hosts[i] = self._grad_flat(p)
                hosts[i][s0:s1] = flat[o:o + s1 - s0]
        for i, arr in hosts.items():
            g = self.params[i].grad
            if not str(g.device).startswith("cpu"):
                g.copy_(borrow(arr.reshape(list(g.shape)), device=g.device))

    def abandon(self) -> None:
        """Drop the hook without reducing (a step that raised)."""
        if self._active:
            nn_grad.GRAD_HOOKS.remove(self.on_grad)
            self._active = False


def reduced_backward(reducer: GradReducer | None, model: Any, loss: Any, share: float) -> None:
    """model.backward(loss.backward()); with a reducer, this rank's gradients (scaled by
    `share`, its part of the global batch) are all-reduced bucket by bucket as they land."""
    if reducer is None:
        model.backward(loss.backward())
        return
    reducer.begin(share)
    try:
        model.backward(loss.backward())
    except BaseException:
        reducer.abandon()
        raise
    reducer.finish()
