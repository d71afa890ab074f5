"""Memory planning for the inference engine: activation buffers by liveness, once per input shape.

For an input shape the planner walks the graph without running it: every value's shape
(shapes.py), the step that writes it and the last step that reads it (a graph output lives to
the end; a flatten / reshape output is a view, so it keeps its input's buffer alive). Each write
of a step (step_writes: its outputs, and scratch some kinds need) is a block of memory live from
that step to its value's last reader. Blocks are placed greedy by size (largest first, each at
the lowest address where it overlaps no block live at the same time), so memory freed by a
value's last reader is reused by later values of any size that fit. A few ops may write over an
input that dies at that very step (`add_` / ops.binary, the activation after a residual add, an
INT8 conv/linear whose input went to the int8 scratch first): their block may sit exactly where
that input's block is. The placed address range is then cut into buffers wherever no block
straddles: a chain gives two buffers (ping-pong).

The MemoryPlan records which buffer, offset and shape each write of each step uses; execution binds
those views, so the engine and the planner cannot disagree on a choice. `intermediate_bytes`
is the sum of all intermediate values (every value a step writes into the plan: not views, not
the scratch of a step), what a predict would hold if no buffer were reused, next to
`activation_bytes`, what the plan holds. Arena / ArenaPool (arena.py) hold
the buffers.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .shapes import Shape, check_shapes, numel, output_shapes
from .steps import VIEWS

QUANTIZED = ("conv", "linear")  # the step kinds that run as qconv2d / qgemm in an int8 engine


def quantized(step: Any) -> bool:
    """`step` runs as qconv2d / qgemm in an int8 engine: a QUANTIZED kind not kept in float32
    (attrs["fp32"], quantize.mark_fp32)."""
    return step.kind in QUANTIZED and not step.attrs.get("fp32")
# kinds whose op takes no `out=`: their outputs are allocated by the op, outside the plan
ALLOCATING = ("layer_norm", "attention", "conv_transpose")


@functools.lru_cache(maxsize=None)
def conv_residual_native() -> bool:
    """Whether conv2d_bias_act takes a residual (y = act(conv + bias + residual)) in this build."""
    from ..ops import conv2d_bias_act

    return "residual" in inspect.signature(conv2d_bias_act).parameters


@dataclass(frozen=True)
class Write:
    """One tensor a step writes: `shape`, and the input positions whose buffer it may take when
    that input dies at this step (the op can write over it)."""

    shape: Shape
    inplace: tuple[int, ...] = ()


def step_writes(step: Any, ins: list[Shape], outs: list[Shape], int8: bool) -> list[Write]:
    """The tensors `step` writes, scratch first, its outputs last (one per output); execute.py
    binds them in this order. Views and ALLOCATING kinds write none."""
    kind, act = step.kind, step.attrs.get("act")
    if kind in VIEWS or kind in ALLOCATING:
        return []
    q8 = int8 and quantized(step)
    if kind == "conv" and len(ins) > 1:  # a fused residual
        if not q8 and conv_residual_native() and tuple(ins[1]) == tuple(outs[0]):
            # not written over the residual, though the op allows it: auto-tuning such a call
            # copies the residual aside first (a tuning run must not accumulate onto it), an
            # allocation outside the plan on a shape's first predict
            return [Write(outs[0])]
        # conv (or qconv) without its activation, + residual in place, then the activation,
        # which may write over either input (both are read by then)
        first = Write(outs[0], (0,) if q8 else ())
        return [first, Write(outs[0], (0, 1))] if act else [first]
    if q8:
        return [Write(outs[0], (0,))]
    if kind in ("add", "sub", "mul", "div"):  # then the activation, as for the conv above
        # ops.binary (and add_) may write over an operand of the result's shape
        first = Write(outs[0], tuple(j for j, x in enumerate(ins) if tuple(x) == tuple(outs[0])))
        return [first, Write(outs[0], tuple(range(len(ins))))] if act else [first]
    if kind == "softmax" and int(step.attrs.get("axis", -1)) % len(ins[0]) != len(ins[0]) - 1:
        axis = int(step.attrs["axis"]) % len(ins[0])  # transposed (axis last), softmax, back
        moved = tuple(d for i, d in enumerate(ins[0]) if i != axis) + (ins[0][axis],)
        return [Write(moved), Write(moved), Write(outs[0])]
    return [Write(o) for o in outs]


@dataclass(frozen=True)
class MemoryPlan:
    """The buffers one predict of `input_shape` needs (bytes are float32 / int8 / the input's)."""

    input_shape: Shape
    input_dtype: str
    slot_numels: tuple[int, ...]  # float32 elements of each activation buffer
    int8_numel: int               # int8 scratch for quantized layer inputs (0 for fp32)
    step_shapes: tuple[tuple[str, Shape], ...]  # (value, shape) of every value steps write
    staged_input: bool = True     # a host input is staged (False on the CPU: read in place)
    # per step: ((buffer, offset, shape) per write of step_writes), () for views and allocating
    # kinds; offsets in float32 elements
    writes: tuple[tuple[tuple[int, int, Shape], ...], ...] = ()
    intermediate_numel: int = 0   # float32 elements of every value steps write into the plan

    @property
    def slots(self) -> int:
        return len(self.slot_numels)

    @property
    def activation_bytes(self) -> int:
        return 4 * sum(self.slot_numels)

    @property
    def intermediate_bytes(self) -> int:
        return 4 * self.intermediate_numel

    @property
    def input_bytes(self) -> int:
        if not self.staged_input:
            return 0
        return numel(self.input_shape) * np.dtype(self.input_dtype).itemsize

    @property
    def total_bytes(self) -> int:
        return self.activation_bytes + self.int8_numel + self.input_bytes

    def as_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "input_dtype": self.input_dtype,
                "slots": self.slots, "slot_bytes": [4 * n for n in self.slot_numels],
                "activation_bytes": self.activation_bytes,
                "intermediate_bytes": self.intermediate_bytes,
                "int8_scratch_bytes": self.int8_numel,
                "input_bytes": self.input_bytes, "planned_bytes": self.total_bytes}


@dataclass
class _Block:
    """One planned write while planning: its size (float32 elements), the steps from its write
    to its last reader, the blocks it may share an address with (an op writing over an input
    that dies at that step), and where it was placed."""

    size: int
    start: int
    end: int
    alias: set[int]
    offset: int = -1


def _place(blocks: list[_Block]) -> None:
    """Greedy by size: largest block first, each at the lowest offset where it overlaps no placed
    block live at the same time (a block it may alias only at that block's own offset)."""
    placed: list[_Block] = []
    for i in sorted(range(len(blocks)), key=lambda j: (-blocks[j].size, blocks[j].start, j)):
        b = blocks[i]
        clash = [(q, k in b.alias or i in q.alias) for k, q in placed
                 if q.start <= b.end and b.start <= q.end]
        cands = sorted({0} | {q.offset + q.size for q, _ in clash} | {q.offset for q, ok in clash if ok})
        for off in cands:
            if all(off + b.size <= q.offset or q.offset + q.size <= off or (ok and off == q.offset)
                   for q, ok in clash):
                b.offset = off
                break
        placed.append((i, b))


def _buffers(blocks: list[_Block]) -> tuple[list[int], list[tuple[int, int]]]:
    """The arena cut where no block straddles: (each buffer's elements, (buffer, offset in it)
    per block). A chain gives two buffers, ping and pong."""
    order = sorted(range(len(blocks)), key=lambda j: blocks[j].offset)
    sizes: list[int] = []
    where: list[tuple[int, int]] = [(0, 0)] * len(blocks)
    base = top = -1
    for j in order:
        b = blocks[j]
        if b.offset >= top:  # nothing placed so far reaches past here: a new buffer
            sizes.append(0)
            base = b.offset
        top = max(top, b.offset + b.size)
        sizes[-1] = top - base
        where[j] = (len(sizes) - 1, b.offset - base)
    return sizes, where


def make_plan(graph: Any, input_shape: Sequence[int], input_dtype: Any, int8: bool,
              staged_input: bool = True) -> MemoryPlan:
    shape = tuple(int(v) for v in input_shape)
    shapes = check_shapes(graph, {graph.inputs[0]: shape})
    steps = list(graph.steps)
    end = len(steps)
    root: dict[str, str | None] = {v: None for v in graph.inputs}  # the value whose buffer holds v
    for s in steps:
        for v in s.outputs:
            root[v] = root[s.inputs[0]] if s.kind in VIEWS else (None if s.kind in ALLOCATING else v)
    last: dict[str, int] = {}  # buffer-holding value -> index of its last reader
    for i, s in enumerate(steps):
        for v in s.inputs:
            if root[v] is not None:
                last[root[v]] = i
    for v in graph.outputs:
        if root[v] is not None:
            last[root[v]] = end
    blocks: list[_Block] = []
    block_of: dict[str, int] = {}  # buffer-holding value -> its block
    step_blocks: list[list[tuple[int, Shape]]] = []
    qnumel = total = 0
    for i, s in enumerate(steps):
        ins = [shapes[v] for v in s.inputs]
        outs = [shapes[v] for v in s.outputs]
        if int8 and quantized(s):
            qnumel = max(qnumel, numel(ins[0]))
        writes = step_writes(s, ins, outs, int8)
        n_out = len(s.outputs) if writes else 0
        mine: list[tuple[int, Shape]] = []
        for k, w in enumerate(writes):
            alias = set()
            for j in w.inplace:
                r = root[s.inputs[j]]
                alone = sum(root[v] == r for v in s.inputs) == 1  # not read twice by this step
                if r is not None and last.get(r) == i and alone and r in block_of:
                    alias.add(block_of[r])
            out = k >= len(writes) - n_out
            v = s.outputs[k - (len(writes) - n_out)] if out else None
            blocks.append(_Block(numel(w.shape), i, last.get(v, i) if out else i, alias))
            if out:
                block_of[v] = len(blocks) - 1
                total += numel(w.shape)
            mine.append((len(blocks) - 1, tuple(w.shape)))
        step_blocks.append(mine)
    _place(blocks)
    sizes, where = _buffers(blocks)
    writes_plan = tuple(tuple(where[b] + (shp,) for b, shp in mine) for mine in step_blocks)
    return MemoryPlan(shape, np.dtype(input_dtype).name, tuple(sizes), qnumel,
                      tuple((v, shapes[v]) for s in steps for v in s.outputs), staged_input,
                      writes_plan, total)
