"""The inference engine: a model lowered to a list of steps, run forward only.

    steps.py      the Step type and the one walker over nested steps
    lowering.py   nn.Module -> steps, then the passes over steps (BatchNorm folding, activation
                  fusion)
    onnx.py       ONNX file -> steps
    serialize.py  saving an engine, loading a plan from a saved engine / checkpoint / ONNX file
    memplan.py    output shapes and the activation buffers planned per input shape
    quantize.py   INT8: weight quantization and calibration
    checks.py     input checks (dtype, shape, finite values)
    execute.py    running steps: each step bound to its op call
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
