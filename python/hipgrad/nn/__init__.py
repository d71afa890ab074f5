"""Layers with explicit forward/backward, PyTorch-compatible state_dicts, and losses.

One module per kind of layer (activation.py, conv.py, normalization.py, ...); each lists its
layers in `__all__` and this package exports them all, so a new layer is written in one module
(a new kind of layer is one new module). Each layer also says how the inference engine runs it
(`to_steps`, see module.py). init.py holds the initialisations (hipgrad.nn.init).
"""

from __future__ import annotations

from .._exports import export_submodules
from . import init

__all__ = sorted(export_submodules(__name__, __path__, globals(),
                                   lambda m: not m.startswith("_") and m != "init", "modules")
                 + ["init"])
