"""The op contract: every op takes hg.Tensors (NumPy arrays are treated as CPU tensors), returns
new tensors on the inputs' device, and accepts impl="auto"|"handwritten"|"vendor".
force_kernel(op, name) runs one candidate kernel by name (tests, benches).

One module per op family (_activation.py, _conv.py, ...); each lists its ops in `__all__`, and
this package exports them all, so a new op is written in its family's module only (a new
family is one new `_<family>.py`). _common.py holds the argument checks they share.
"""

from __future__ import annotations

import importlib
import pkgutil

from .._native import _C


def last_impl() -> dict:
    """What the latest op call on this thread ran: op, impl (kernel name), key, device, ms."""
    return _C.last_run()


def _export_families() -> list[str]:
    names = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_") or info.name == "_common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name in getattr(module, "__all__", ()):
            if name in globals():
                raise ImportError(f"hipgrad.ops.{name} is exported by two op families "
                                  f"({module.__name__} and another)")
            globals()[name] = getattr(module, name)
            names.append(name)
    return names


__all__ = sorted(_export_families() + ["last_impl"])
