"""The inference engine: a model lowered to a graph of steps, run forward only.

    steps.py      the Step and Graph types (steps over named values) and the lowering of nn
                  modules into a graph (Lowering)
    lowering.py   nn.Module -> graph, then `optimize`: the passes of passes.py (BatchNorm
                  folding, activation fusion, residual-add fusion into a conv's epilogue)
    onnx.py       ONNX file -> graph
    serialize.py  saving an engine, loading a plan from a saved engine / checkpoint / ONNX file
    shapes.py     every value's shape for an input shape; the input check built on it
    memplan.py    activation buffers planned by liveness per input shape (MemoryPlan)
    arena.py      the planned buffers of one predict (Arena) and their pool (ArenaPool)
    quantize.py   INT8: weight quantization and calibration
    checks.py     input checks (dtype, shape, finite values)
    kernels.py    each step kind bound to its op calls
    execute.py    running a graph (Program, run, replay of recorded calls)
    copies.py     splitting a tensor into planned tensors along an axis
    report.py     digests, weight bytes, memory reports, describe()
    engine.py     InferenceEngine, which ties these together

Importing hipgrad.engine.steps stays light; InferenceEngine loads on first use.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "InferenceEngine":
        from .engine import InferenceEngine

        return InferenceEngine
    raise AttributeError(f"module 'hipgrad.engine' has no attribute {name!r}")
