"""Loads the native module after making the wheel's OpenBLAS visible to the dynamic linker."""

from __future__ import annotations

import ctypes
import os


def _preload_openblas() -> None:
    try:
        import scipy_openblas32
    except ImportError:  # the RPATH may still find it
        return
    path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(True))
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_preload_openblas()

from . import _C  # noqa: E402

__all__ = ["_C"]
