"""Lowering an nn.Module to the engine's graph, then the passes over it (passes.py): BatchNorm
folded into the convolution before it, activations fused into the step before them, a residual
add fused into the epilogue of the convolution producing one of its inputs.

Each layer lowers itself (`Module.to_steps(name)`, weights copied to host arrays; containers
with branches through `lower_graph`, see steps.Lowering): Dropout and Identity give no step.
ONNX files lower in onnx.py, saved engines load in serialize.py; all end in `optimize`.
"""

from __future__ import annotations

from typing import Any

from . import passes
from .steps import Graph, Step, chain, lower_module


def plan_from_module(model: Any) -> Graph:
    """The model's graph (weights copied to host arrays), rewritten by `optimize`."""
    if not callable(getattr(model, "to_steps", None)):
        raise ValueError(f"inference plan: layer (root) of type {type(model).__name__} is not "
                         "supported (not an nn.Module)")
    return optimize(lower_module(model))


def optimize(graph: Graph | list[Step]) -> Graph:
    """The passes of passes.py over `graph` (edited in place and returned). A list of unwired
    steps is taken as a chain reading the value "input"."""
    if not isinstance(graph, Graph):
        graph = chain(list(graph))
    graph.validate()
    passes.fold_batchnorm(graph)
    passes.fuse_activations(graph)
    passes.fuse_residuals(graph)
    return graph
