"""Running a graph: each step bound to the op calls that compute it.

A Program numbers the graph's values once; a run keeps them in a list. With an `arena`
(arena.py) every op writes into the views the memory plan chose for that step; without one, ops
allocate and each value is dropped after its last reader. With `tape`, each step's bound call is
recorded with the numbers of the values it reads and writes, so a later run of the same arena replays the
calls without deciding anything again in Python (`replay`): the views a call writes are fixed
per arena, and only the graph inputs change between runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..tensor import Tensor
from .arena import Arena
from .kernels import bind
from .quantize import observe_input


class Program:
    """A graph with its values numbered: the graph inputs first, then each step's outputs."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        index: dict[str, int] = {}
        for v in graph.inputs:
            index[v] = len(index)
        for s in graph.steps:
            for v in s.outputs:
                index[v] = len(index)
        self.index = index
        self.io = [([index[v] for v in s.inputs], [index[v] for v in s.outputs]) for s in graph.steps]
        self.outputs = [index[v] for v in graph.outputs]
        keep = set(self.outputs)
        last: dict[int, int] = {}
        for i, (ins, _) in enumerate(self.io):
            for j in ins:
                last[j] = i
        # values to drop after each step on the unplanned path (their last reader has run)
        self.dies: list[list[int]] = [[] for _ in graph.steps]
        for j, i in last.items():
            if j not in keep:
                self.dies[i].append(j)


def run(prog: Program, inputs: list[Tensor], int8: bool, observe: dict | None = None,
        arena: Arena | None = None, tape: list | None = None) -> list[Tensor]:
    """The graph's outputs for `inputs` (one tensor per graph input). `observe` (calibration)
    collects each quantized step's largest |input|."""
    env: list[Any] = [None] * len(prog.index)
    env[:len(inputs)] = inputs
    del inputs
    for i, s in enumerate(prog.graph.steps):
        ii, oo = prog.io[i]
        ins = [env[j] for j in ii]
        if observe is not None:
            observe_input(observe, s, ins[0])
        views = None if arena is None else arena.views[i]
        scratch = arena.quantized if arena is not None and arena.int8 is not None else None
        call = bind(s, ins, views, int8, scratch)
        if tape is not None:
            tape.append(_entry(call, ii, oo))
        out = call(*ins)
        del ins
        if len(oo) == 1:
            env[oo[0]] = out
        else:
            for j, t in zip(oo, out):
                env[j] = t
        if arena is None:  # unplanned: a value's memory goes with its last reader
            for j in prog.dies[i]:
                env[j] = None
    return [env[j] for j in prog.outputs]


def _entry(call: Callable, ii: list[int], oo: list[int]) -> Callable[[list], None]:
    """A recorded step: reads its inputs from the value list, writes its outputs there."""
    if len(ii) == 1 and len(oo) == 1:  # the common case, kept to one call and two indexings
        i, o = ii[0], oo[0]

        def one(env: list) -> None:
            env[o] = call(env[i])
        return one

    def many(env: list) -> None:
        out = call(*[env[k] for k in ii])
        if len(oo) == 1:
            env[oo[0]] = out
        else:
            for j, t in zip(oo, out):
                env[j] = t
    return many


def replay(prog: Program, tape: list[Callable[[list], None]], inputs: list[Tensor]) -> list[Tensor]:
    """A recorded run again, on new graph inputs of the recorded shapes."""
    env: list[Any] = [None] * len(prog.index)
    env[:len(inputs)] = inputs
    for step in tape:
        step(env)
    return [env[j] for j in prog.outputs]
