"""The op contract: every op takes hg.Tensors (NumPy arrays are treated as CPU tensors), returns
new tensors on the inputs' device, and accepts impl="auto"|"handwritten"|"vendor".
force_kernel(op, name) runs one candidate kernel by name (tests, benches).

One module per op family (_activation.py, _conv.py, ...); each lists its ops in `__all__`, and
this package exports them all, so a new op is written in its family's module only (a new
family is one new `_<family>.py`). _common.py holds the argument checks they share.
"""

from __future__ import annotations

from .._exports import export_submodules
from .._native import _C


def last_impl() -> dict:
    """What the latest op call on this thread ran: op, impl (kernel name), key, device, ms."""
    return _C.last_run()


__all__ = sorted(export_submodules(__name__, __path__, globals(),
                                   lambda m: m.startswith("_") and m != "_common", "op families")
                 + ["last_impl"])
