"""The buffers of one predict (an Arena, built from a memplan.MemoryPlan) and the pool that hands
them out per input shape.

An Arena holds the planned activation buffers, an int8 scratch for INT8, and a staging buffer
for a host input, made on first need: on a GPU a NumPy input is copied into it (an input already
on the device is read as it is); on the CPU a float32 C-contiguous NumPy input is read in place,
as torch.from_numpy does, and only another layout or dtype is converted into it. Every planned
write is a view at its planned offset in its buffer, made once with the arena (`views[i]`: step
i's writes in memplan.step_writes order). An arena serves one predict at a time; ArenaPool hands them out per
input shape under a lock, so concurrent predicts of one shape each get their own (never two
threads on one buffer).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..tensor import Tensor, empty, from_dlpack, try_borrow
from .memplan import MemoryPlan, make_plan


class Arena:
    """One predict's buffers for one MemoryPlan on one device (see the module docstring)."""

    def __init__(self, plan: MemoryPlan, device: str,
                 on_alloc: Callable[[int], None] | None = None) -> None:
        self.plan = plan
        self._on_alloc = on_alloc  # told the bytes of a buffer made later (the staging one)
        self.slots = [empty([n], device=device) for n in plan.slot_numels]
        self.int8 = empty([plan.int8_numel], device=device, dtype=np.int8) if plan.int8_numel else None
        self.device = device
        self.key: tuple = ()  # set by ArenaPool.acquire
        self.input: Tensor | None = None  # the staging buffer, made by stage() on first need
        self.buffers = len(self.slots) + (self.int8 is not None)
        self.views = [[self._view(*w) for w in step] for step in plan.writes]
        self.tapes: dict[Any, list] = {}  # the engine's recorded step calls on this arena

    def _view(self, b: int, offset: int, shape: Sequence[int]) -> Tensor:
        """A view of `shape` at element `offset` of buffer `b`."""
        buf, n = self.slots[b], int(np.prod(shape))
        if offset + n > buf.numel():
            raise RuntimeError(f"memory plan: buffer {b} holds {buf.numel()} elements, a step writes "
                               f"{tuple(shape)} at {offset}; the planner is wrong (this is a bug)")
        return buf.narrow(offset, n).reshape(*shape)

    def slot_of(self, t: Tensor) -> int | None:
        """The buffer `t` starts in (None: outside the arena)."""
        p = t.data_ptr()
        for i, s in enumerate(self.slots):
            if s.data_ptr() <= p < s.data_ptr() + s.nbytes:
                return i
        return None

    def quantized(self, shape: Sequence[int]) -> Tensor:
        return self.int8.prefix_view(list(shape))

    def _staging(self) -> Tensor:
        t = empty(list(self.plan.input_shape), device=self.device, dtype=self.plan.input_dtype)
        self.buffers += 1
        if self._on_alloc is not None:
            self._on_alloc(t.nbytes)
        return t

    def stage(self, arr: np.ndarray) -> Tensor:
        """The input as a tensor on the arena's device: on the CPU a writeable C-contiguous array
        of the plan's dtype is wrapped, not copied (the engine only reads its input); anything
        else (a read-only array included: tensors are writable) is converted into the staging
        buffer (allocated here on first need)."""
        if not self.plan.staged_input:
            t = try_borrow(arr, self.device, self.plan.input_dtype)
            if t is not None:
                return t
        if self.input is None:
            self.input = self._staging()
        if self.device.startswith("cpu"):  # converted straight into the buffer: one pass
            np.copyto(np.from_dlpack(self.input), arr, casting="unsafe")
            return self.input
        src = np.ascontiguousarray(arr, dtype=self.plan.input_dtype)
        if not src.flags.writeable:  # the caller's read-only array: from_dlpack refuses to wrap it
            src = src.copy()
        self.input.copy_(from_dlpack(src))
        return self.input


class ArenaPool:
    """Arenas per (input shape, dtype, int8), each used by one predict at a time."""

    def __init__(self, device: str) -> None:
        self.device = device
        self._lock = threading.Lock()
        self._plans: dict[tuple, MemoryPlan] = {}
        self._free: dict[tuple, list[Arena]] = {}
        self.arenas_created = 0
        self.buffers_allocated = 0
        self.bytes_allocated = 0

    def plan(self, graph: Any, shape: Sequence[int], dtype: Any, int8: bool) -> MemoryPlan:
        key = (tuple(int(v) for v in shape), np.dtype(dtype), bool(int8))
        with self._lock:
            plan = self._plans.get(key)
        if plan is None:
            staged = not self.device.startswith("cpu")  # the CPU reads the caller's array
            plan = make_plan(graph, shape, dtype, int8, staged_input=staged)
            with self._lock:
                plan = self._plans.setdefault(key, plan)
        return plan

    def acquire(self, graph: Any, shape: tuple[int, ...], dtype: np.dtype, int8: bool) -> Arena:
        """An idle arena for (shape, dtype, int8), made on first need; give it back with release.
        `shape` is a tuple of ints and `dtype` a np.dtype (the key of the idle lists as given)."""
        key = (shape, dtype, int8)
        with self._lock:
            free = self._free.get(key)
            if free:
                return free.pop()
        plan = self.plan(graph, shape, dtype, int8)
        # A weak reference back to the pool: the pool holds its arenas, so a strong one would
        # make a cycle that keeps a dropped engine's buffers alive until the garbage collector
        # runs (which also made memory figures depend on its timing).
        count = weakref.WeakMethod(self._count_staging)
        arena = Arena(plan, self.device, on_alloc=lambda n: (count() or (lambda _: None))(n))
        arena.key = key
        with self._lock:
            self.arenas_created += 1
            self.buffers_allocated += arena.buffers
            self.bytes_allocated += plan.total_bytes - plan.input_bytes
        return arena

    def _count_staging(self, nbytes: int) -> None:
        with self._lock:
            self.buffers_allocated += 1
            self.bytes_allocated += nbytes

    def release(self, arena: Arena) -> None:
        with self._lock:
            self._free.setdefault(arena.key, []).append(arena)

    @contextmanager
    def arena(self, graph: Any, shape: Sequence[int], dtype: Any, int8: bool) -> Iterator[Arena]:
        arena = self.acquire(graph, tuple(int(v) for v in shape), np.dtype(dtype), bool(int8))
        try:
            yield arena
        finally:
            self.release(arena)

    def drop(self, shape: Sequence[int] | None = None) -> None:
        """Free the idle arenas (of one input shape, or all)."""
        with self._lock:
            for key in list(self._free):
                if shape is None or key[0] == tuple(shape):
                    del self._free[key]

    def plans(self) -> list[tuple[MemoryPlan, int]]:
        """Each cached plan with its number of idle arenas."""
        with self._lock:
            return [(p, len(self._free.get(k, []))) for k, p in self._plans.items()]
