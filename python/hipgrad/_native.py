"""Loads the native module after making the wheel's OpenBLAS visible to the dynamic linker
(and telling it not to spin its idle threads, see _preload_openblas), then refuses a bad
HIPGRAD_IMPL or HIPGRAD_CPU_ISA (ValueError naming the variable and the values it takes)."""

from __future__ import annotations

import ctypes
import os


def _preload_openblas() -> None:
    # OpenBLAS's idle worker threads spin for 2^OPENBLAS_THREAD_TIMEOUT cycles after a call
    # (default 2^28, ~0.1 s) and take the cores from hipgrad's OpenMP kernels that run next:
    # measured on 2 cores, a handwritten GEMM after an OpenBLAS call took 8.0 ms instead of
    # 0.86 ms. 2^4 cycles lets them sleep at once; back-to-back OpenBLAS calls were not slower
    # within noise. Read when the library loads (here); the user's own setting wins.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    try:
        import scipy_openblas32
    except ImportError:  # the RPATH may still find it
        return
    path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(True))
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_preload_openblas()

from . import _C  # noqa: E402

_C._check_environment()  # a HIPGRAD_IMPL / HIPGRAD_CPU_ISA it cannot honour: ValueError here

__all__ = ["_C"]
