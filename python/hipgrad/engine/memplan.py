"""Memory planning for the inference engine: activation buffers allocated once per input shape.

For an input shape the planner walks the plan without running it: every step's output shape,
which buffer each op writes (replaying the engine's choices), each buffer's size (the largest
output written into it), and the largest quantized input (the int8 scratch). A chain needs
two buffers (ping-pong A/B); a residual block keeps its input alive while its body runs, then
its input and the body's output while the shortcut runs (three).

An Arena holds one set of those buffers plus a staging buffer for a host input, made on first
need: on a GPU a NumPy input is copied into it (an input already on the device is read as it
is); on the CPU a float32 C-contiguous NumPy input is read in place, as torch.from_numpy does,
and only another layout or dtype is converted into it. Each op writes
into `arena.out(shape, *live)`: a prefix view of the lowest-numbered buffer that holds neither a
`live` tensor nor a pinned one (a residual's input, body output or shortcut output). Flatten
and reshape are views. An arena serves one predict at a time; ArenaPool hands them out per input shape under a lock,
so concurrent predicts of one shape each get their own (never two threads on one buffer).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..tensor import Tensor, empty, from_dlpack, try_borrow

Shape = tuple[int, ...]


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(v) for v in shape)


def _weight_shape(step: Any) -> tuple[int, ...]:
    t = step.tensors
    if "weight_packed" in t:  # (panels, K, NR) of an (N, K) linear weight
        return (step.attrs["out_features"], t["weight_packed"].shape[1])
    return tuple((t["weight"] if "weight" in t else t["wq"]).shape)


def step_output_shape(step: Any, shape: Shape) -> Shape:
    """The output shape of one (non-residual) step for an input of `shape`."""
    kind, a = step.kind, step.attrs
    if kind == "conv":
        k, _, r, s = _weight_shape(step)
        (sh, sw), (ph, pw), (dh, dw) = a["stride"], a["padding"], a["dilation"]
        return (shape[0], k, (shape[2] + 2 * ph - dh * (r - 1) - 1) // sh + 1,
                (shape[3] + 2 * pw - dw * (s - 1) - 1) // sw + 1)
    if kind == "linear":  # on the last axis, as nn.Linear and ONNX MatMul
        return tuple(shape[:-1]) + (_weight_shape(step)[0],)
    if kind in ("maxpool", "avgpool"):
        (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        return (shape[0], shape[1], (shape[2] + 2 * ph - kh) // sh + 1, (shape[3] + 2 * pw - kw) // sw + 1)
    if kind == "flatten":  # dims start..end merged (nn.Flatten's start_dim, end_dim; 1, -1 by default)
        start, end = _flatten_dims(step, len(shape))
        return tuple(shape[:start]) + (_numel(shape[start:end + 1]),) + tuple(shape[end + 1:])
    if kind == "embedding":
        return tuple(shape) + (_weight_shape(step)[1],)
    if kind in ("act", "affine", "softmax"):
        return tuple(shape)
    raise ValueError(f"plan step {step.name!r} has an unknown kind {kind!r}")


def _flatten_dims(step: Any, rank: int) -> tuple[int, int]:
    start, end = int(step.attrs.get("start_dim", 1)), int(step.attrs.get("end_dim", -1))
    return (start + rank if start < 0 else start), (end + rank if end < 0 else end)


def check_input_shape(steps: list, shape: Shape, given: Shape | None = None) -> Shape:
    """The output shape of `steps` for an input of `shape` (batch first), or a ValueError that
    names the caller's input (`given`, default `shape`), the first step it does not fit, the
    shape that step gets and what it expects."""
    given = tuple(shape) if given is None else tuple(given)
    for s in steps:
        kind, a, rank = s.kind, s.attrs, len(shape)

        def bad(expected: str) -> ValueError:
            gets = "(" + ", ".join(["batch"] + [str(v) for v in shape[1:]]) + ")"
            return ValueError(f"x of shape {given} does not fit the model: step {s.name!r} ({kind}) "
                              f"gets {gets} but expects {expected}")

        if kind == "residual":
            body = check_input_shape(s.body, shape, given)
            short = check_input_shape(s.shortcut, shape, given) if s.shortcut else tuple(shape)
            if body != short:
                raise bad(f"its body and shortcut to agree; they give {body} and {short}")
            shape = body
            continue
        if kind == "conv":
            k, cg, r, q = _weight_shape(s)
            if rank != 4 or shape[1] != cg * a["groups"]:
                raise bad(f"(batch, {cg * a['groups']}, height, width)")
        elif kind in ("maxpool", "avgpool") and rank != 4:
            raise bad("(batch, channels, height, width)")
        elif kind == "linear":
            k = _weight_shape(s)[1]
            if rank < 2 or shape[-1] != k:
                raise bad(f"(batch, ..., {k})")
        elif kind == "affine":
            c = _numel(s.tensors["running_mean"].shape if s.tensors else s.arrays["running_mean"].shape)
            if rank < 2 or shape[1] != c:
                raise bad(f"(batch, {c}, ...)")
        elif kind == "flatten":
            start, end = _flatten_dims(s, rank)
            if not 1 <= start <= end < rank:  # the batch dimension is never merged
                raise bad(f"a rank that start_dim={a.get('start_dim', 1)}, end_dim={a.get('end_dim', -1)} "
                          "fit, the batch dimension (0) left alone")
        out = step_output_shape(s, shape)
        if any(v < 1 for v in out):
            raise bad(f"an input its window fits; its output would be {out}")
        shape = out
    return tuple(shape)


def fp32_ops(step: Any) -> int:
    """How many ops execute.bind runs for an fp32 step, each writing a new buffer: one
    for every kind (conv and linear run fused with their bias and activation: conv2d_bias_act,
    linear_bias_act). Keep in step with bind: the planner replays these writes to size each
    buffer."""
    return 1


@dataclass(frozen=True)
class MemoryPlan:
    """The buffers one predict of `input_shape` needs (bytes are float32 / int8 / the input's)."""

    input_shape: Shape
    input_dtype: str
    slot_numels: tuple[int, ...]  # float32 elements of each activation buffer
    int8_numel: int               # int8 scratch for quantized layer inputs (0 for fp32)
    step_shapes: tuple[tuple[str, Shape], ...]  # (step name, output shape), nested steps included
    staged_input: bool = True     # a host input is staged (False on the CPU: read in place)

    @property
    def slots(self) -> int:
        return len(self.slot_numels)

    @property
    def activation_bytes(self) -> int:
        return 4 * sum(self.slot_numels)

    @property
    def input_bytes(self) -> int:
        if not self.staged_input:
            return 0
        return _numel(self.input_shape) * np.dtype(self.input_dtype).itemsize

    @property
    def total_bytes(self) -> int:
        return self.activation_bytes + self.int8_numel + self.input_bytes

    def as_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "input_dtype": self.input_dtype,
                "slots": self.slots, "slot_bytes": [4 * n for n in self.slot_numels],
                "activation_bytes": self.activation_bytes, "int8_scratch_bytes": self.int8_numel,
                "input_bytes": self.input_bytes, "planned_bytes": self.total_bytes}


class _Planner:
    """Replays the buffer choices of execute.bind without running any op: each write
    goes to the lowest-numbered buffer outside `busy` (what Arena.out does), and each buffer
    grows to the largest output written into it. A slot of None is a tensor outside the
    buffers (the caller's input)."""

    def __init__(self, int8: bool) -> None:
        self.int8, self.numels, self.qnumel = int8, [], 0
        self.shapes: list[tuple[str, Shape]] = []

    def _take(self, busy: set, shape: Shape) -> int:
        i = next(i for i in range(len(self.numels) + 1) if i not in busy)
        if i == len(self.numels):
            self.numels.append(0)
        self.numels[i] = max(self.numels[i], _numel(shape))
        return i

    def walk(self, steps: list, shape: Shape, slot: int | None, pinned: set) -> tuple[Shape, int | None]:
        for s in steps:
            if s.kind == "flatten":  # a view of x
                shape = step_output_shape(s, shape)
            elif s.kind == "residual":  # body first, then the shortcut: 3 buffers, not 4
                inner = pinned | {slot}
                body, b = self.walk(s.body, shape, slot, inner)
                _, c = self.walk(s.shortcut, shape, slot, inner | {b}) if s.shortcut else (shape, slot)
                if b is None or b in inner | {c}:  # the body was views of x only
                    b = self._take(inner | {b, c}, body)
                shape, slot = body, self._take(pinned | {b}, body) if s.attrs.get("act") else b
            elif self.int8 and s.kind in ("conv", "linear"):
                self.qnumel = max(self.qnumel, _numel(shape))  # x goes to the int8 scratch,
                shape = step_output_shape(s, shape)            # so its buffer is free again
                slot = self._take(set(pinned), shape)
            else:
                shape = step_output_shape(s, shape)
                for _ in range(fp32_ops(s)):
                    slot = self._take(pinned | {slot}, shape)
            self.shapes.append((s.name, shape))
        return shape, slot


def make_plan(steps: list, input_shape: Sequence[int], input_dtype: Any, int8: bool,
              staged_input: bool = True) -> MemoryPlan:
    p = _Planner(int8)
    p.walk(steps, tuple(int(v) for v in input_shape), None, set())
    return MemoryPlan(tuple(int(v) for v in input_shape), np.dtype(input_dtype).name,
                      tuple(p.numels), p.qnumel, tuple(p.shapes), staged_input)


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
        self._ranges = [(t.data_ptr(), t.data_ptr() + t.nbytes) for t in self.slots]
        self._views: dict[tuple[int, Shape], Tensor] = {}
        self._pinned: list[int] = []
        self.tapes: dict[tuple, list] = {}  # the engine's recorded step calls on this arena

    def slot_of(self, t: Tensor) -> int | None:
        p = t.data_ptr()
        for i, (lo, hi) in enumerate(self._ranges):
            if lo <= p < hi:
                return i
        return None

    def out(self, shape: Sequence[int], *live: Tensor) -> Tensor:
        """A float32 view of `shape` in a buffer holding no `live` tensor and no pinned one."""
        busy = set(self._pinned)
        busy.update(self.slot_of(t) for t in live)
        for i in range(len(self.slots)):
            if i not in busy:
                key = (i, tuple(shape))
                view = self._views.get(key)
                if view is None:
                    if self.slots[i].numel() < _numel(shape):
                        raise RuntimeError(
                            f"memory plan: buffer {i} holds {self.slots[i].numel()} elements, the "
                            f"op writes {tuple(shape)}; the planner and execute.bind "
                            "disagree (see memplan.fp32_ops)")
                    view = self._views[key] = self.slots[i].prefix_view(list(shape))
                return view
        raise RuntimeError(f"memory plan: all {len(self.slots)} activation buffers are live "
                           "(the planner and the engine disagree; this is a bug)")

    def owns(self, t: Tensor) -> bool:
        """`t` lives in a buffer that is not pinned (so an op may overwrite it in place)."""
        i = self.slot_of(t)
        return i is not None and i not in self._pinned

    def quantized(self, shape: Sequence[int]) -> Tensor:
        return self.int8.prefix_view(list(shape))

    @contextmanager
    def pinned(self, *tensors: Tensor) -> Iterator[None]:
        """Keep the buffers of `tensors` (a residual's input, its shortcut) out of `out`."""
        slots = [i for i in (self.slot_of(t) for t in tensors) if i is not None]
        self._pinned.extend(slots)
        try:
            yield
        finally:
            del self._pinned[len(self._pinned) - len(slots):]

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

    def plan(self, steps: list, shape: Sequence[int], dtype: Any, int8: bool) -> MemoryPlan:
        key = (tuple(int(v) for v in shape), np.dtype(dtype), bool(int8))
        with self._lock:
            plan = self._plans.get(key)
        if plan is None:
            staged = not self.device.startswith("cpu")  # the CPU reads the caller's array
            plan = make_plan(steps, shape, dtype, int8, staged_input=staged)
            with self._lock:
                plan = self._plans.setdefault(key, plan)
        return plan

    def acquire(self, steps: list, shape: tuple[int, ...], dtype: np.dtype, int8: bool) -> Arena:
        """An idle arena for (shape, dtype, int8), made on first need; give it back with release.
        `shape` is a tuple of ints and `dtype` a np.dtype (the key of the idle lists as given)."""
        key = (shape, dtype, int8)
        with self._lock:
            free = self._free.get(key)
            if free:
                return free.pop()
        plan = self.plan(steps, shape, dtype, int8)
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
    def arena(self, steps: list, shape: Sequence[int], dtype: Any, int8: bool) -> Iterator[Arena]:
        arena = self.acquire(steps, tuple(int(v) for v in shape), np.dtype(dtype), bool(int8))
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
