"""The conversion of scalar arguments (flags and real numbers) shared by ops, nn layers,
optimizers and schedulers: one place decides what is accepted, and every refusal names the
argument and the expected form.

- flag(): a bool or a NumPy bool only (a string such as 'False' is truthy and would silently
  flip the meaning; an int 0/1 is refused too, as PyTorch's kernels refuse it).
- real(): an int, float or NumPy real scalar (not a bool, a string, an array or None), within
  float64, finite unless allowed, inside an optional range; with f32=True the value the float32
  kernels will see is checked as well (1e40 is finite in float64 but inf in float32, 1e-300 is
  positive in float64 but 0 in float32).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

_F32_MAX = float(np.finfo(np.float32).max)
_F32 = struct.Struct("<f")


def flag(value: Any, what: str) -> bool:
    """`value` as a bool: only True/False (or a NumPy bool); TypeError naming `what` otherwise."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{what} must be a bool (True or False), got {value!r}")


def _describe(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool,
              finite: bool) -> str:
    """"a finite number >= 0", "a number in [0, 1)", ..."""
    what = "a finite number" if finite else "a number"
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"  # finite
    if lo is not None:
        return f"{what} {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{what} {'<' if hi_open else '<='} {hi:g}"
    return what


def real(value: Any, what: str, *, lo: float | None = None, hi: float | None = None,
         lo_open: bool = False, hi_open: bool = False, finite: bool = True,
         f32: bool = False) -> float:
    """`value` as a Python float, checked: TypeError when it is not a real number, ValueError
    naming `what` when it is NaN / infinite (unless finite=False), outside [lo, hi] (open ends
    with lo_open / hi_open), or (f32=True) not representable as such in float32."""
    if (isinstance(value, (bool, np.bool_))
            or not isinstance(value, (int, float, np.integer, np.floating))):
        raise TypeError(f"{what} must be a real number (int or float), got {value!r}")
    try:
        x = float(value)
    except OverflowError:
        raise ValueError(f"{what} must be a finite number, got an int of {int(value).bit_length()} "
                         "bits (beyond float64)") from None
    _check(x, what, lo, hi, lo_open, hi_open, finite, "")
    if f32:
        try:  # the float32 nearest x, as the C++ side will read it (struct is the fast way)
            x32 = _F32.unpack(_F32.pack(x))[0]
        except OverflowError:  # beyond float32's range, or just above its largest value
            with np.errstate(over="ignore"):
                x32 = float(np.float32(x))
        if math.isfinite(x) and math.isinf(x32):  # lossy whether or not inf is allowed
            raise ValueError(f"{what} must be finite in float32 (the kernels' precision, at most "
                             f"{_F32_MAX:.4g} in magnitude), got {x!r}")
        _check(x32, what, lo, hi, lo_open, hi_open, finite,
               f" in float32 (the kernels' precision: {x!r} becomes {x32!r})")
    return x


def _check(x: float, what: str, lo: float | None, hi: float | None, lo_open: bool,
           hi_open: bool, finite: bool, where: str) -> None:
    if math.isnan(x):
        bad = finite or lo is not None or hi is not None
    else:
        bad = ((finite and math.isinf(x))
               or (lo is not None and (x <= lo if lo_open else x < lo))
               or (hi is not None and (x >= hi if hi_open else x > hi)))
    if bad:
        raise ValueError(f"{what} must be {_describe(lo, hi, lo_open, hi_open, finite)}{where}, "
                         f"got {x!r}")
