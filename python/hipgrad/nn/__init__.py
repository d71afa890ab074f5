"""Layers with explicit forward/backward, PyTorch-compatible state_dicts, and losses.

One module per kind of layer (activation.py, conv.py, normalization.py, ...); each lists its
layers in `__all__` and this package exports them all, so a new layer is written in one module
(a new kind of layer is one new module). Each layer also says how the inference engine runs it
(`to_steps`, see module.py). init.py holds the initialisations (hipgrad.nn.init).
"""

from __future__ import annotations

import importlib
import pkgutil

from . import init


def _export_modules() -> list[str]:
    names = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "init":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name in getattr(module, "__all__", ()):
            if name in globals():
                raise ImportError(f"hipgrad.nn.{name} is exported by two modules "
                                  f"({module.__name__} and another)")
            globals()[name] = getattr(module, name)
            names.append(name)
    return names


__all__ = sorted(_export_modules() + ["init"])
