"""hg.Tensor construction and conversion: NumPy copies, DLPack views, device moves."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ._native import _C

Tensor = _C.Tensor

_SUPPORTED = {np.dtype(t) for t in ("float32", "int64", "int32", "int8", "uint8")}


def _as_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be one of float32, int64, int32, int8, uint8; got "
                        f"{dtype!r}") from None
    if dt not in _SUPPORTED:
        raise TypeError(f"dtype must be one of float32, int64, int32, int8, uint8; got {dt}")
    return dt


def _check_device(device: str) -> str:
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'gpu:0', got {type(device).__name__}")
    return device


def tensor(data: Any, device: str = "cpu", dtype: Any = None) -> Tensor:
    """Copy `data` (anything NumPy accepts, or a Tensor) into a new tensor on `device`.

    Floating-point data defaults to float32, integer data to int64, booleans to uint8.
    Values must convert exactly (ValueError naming the value otherwise): no fraction, NaN or
    out-of-range value into an integer dtype, no finite value that overflows float32; complex
    data is refused. The tensor is allocated before the values are read, and a broadcast view
    (zero strides) is checked over its distinct elements only, so an impossible size fails at
    once rather than after a pass over it.
    """
    _check_device(device)
    if isinstance(data, Tensor):
        data = data.numpy()
    arr = np.asarray(data)
    if dtype is None:
        if arr.dtype.kind == "f":
            dtype = np.float32
        elif arr.dtype.kind in "iu" and arr.dtype not in _SUPPORTED:
            dtype = np.int64
        elif arr.dtype.kind == "b":
            dtype = np.uint8
        else:
            dtype = arr.dtype
    dt = _as_dtype(dtype)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"tensor: data must be real numbers (bool, int or float), got dtype "
                        f"{arr.dtype}")
    out = _C.empty(list(arr.shape), dt, device)  # the size is decided before any pass
    if out.numel():
        check_exact(distinct_view(arr), dt)
        if str(out.device).startswith("cpu"):
            np.copyto(np.from_dlpack(out), arr, casting="unsafe")
        else:
            out.copy_(_C.from_numpy(np.ascontiguousarray(arr, dtype=dt).reshape(arr.shape), "cpu"))
    return out


def distinct_view(arr: np.ndarray) -> np.ndarray:
    """`arr` without its broadcast axes (stride 0): the same values, each once per real
    element, so a check over it costs what the data costs, not what the broadcast shape says."""
    if arr.ndim == 0 or all(st != 0 for st in arr.strides):
        return arr
    return np.asarray(arr[tuple(0 if st == 0 else slice(None) for st in arr.strides)])


def check_exact(arr: np.ndarray, dt: np.dtype) -> None:
    """ValueError unless every value of `arr` converts to `dt` exactly (float32 rounding of a
    finite value aside)."""
    kind = arr.dtype.kind
    if dt.kind in "iu" and kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(f"tensor: data holds {arr[bad].flat[0].item()}, which has no {dt} value")
        frac = arr != np.trunc(arr)
        if frac.any():
            raise ValueError(f"tensor: data holds {arr[frac].flat[0].item()!r}, which is not a whole "
                             f"number; {dt} would drop the fraction (round it first)")
    if dt.kind in "iu" and kind in "iuf" and arr.size:
        info, lo, hi = np.iinfo(dt), arr.min().item(), arr.max().item()
        if lo < info.min or hi > info.max:  # Python compares int and float exactly
            raise ValueError(f"tensor: values {lo}..{hi} do not fit {dt} ({info.min}..{info.max})")
    if dt == np.float32 and kind == "f" and arr.dtype.itemsize > 4 and arr.size:
        big = np.isfinite(arr) & (np.abs(arr) > np.finfo(np.float32).max)
        if big.any():
            raise ValueError(f"tensor: data holds {arr[big].flat[0].item()!r}, which is finite but "
                             "overflows float32")


def borrow(data: Any, device: str = "cpu", dtype: Any = None) -> Tensor:
    """A tensor over `data`'s memory when it can be one, else a copy as tensor() makes.

    On the CPU a C-contiguous, aligned, writeable NumPy array of a supported dtype (and of
    `dtype`, when given) is wrapped without a copy, as torch.from_numpy does: the tensor keeps the
    array alive, and writes through either are seen by both. The training loop and the inference
    engine use it for the batches they only read. Anything else (another device, dtype or layout,
    or a read-only array: a tensor is always writable) is copied.
    """
    t = try_borrow(data, device, dtype)
    return t if t is not None else tensor(data, device=device, dtype=dtype)


def try_borrow(data: Any, device: str = "cpu", dtype: Any = None) -> Tensor | None:
    """borrow()'s wrap without the copy: None when `data` cannot be wrapped (a read-only array
    included: a tensor over it would be writable)."""
    if (isinstance(data, np.ndarray) and _check_device(device).startswith("cpu")
            and data.dtype in _SUPPORTED and (dtype is None or np.dtype(dtype) == data.dtype)
            and data.flags.c_contiguous and data.flags.aligned and data.flags.writeable):
        return _C.from_dlpack(data)
    return None


def is_int(value: Any) -> bool:
    """An int or a NumPy integer, not a bool (nor a float, however whole)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def int_arg(value: Any, what: str) -> int:
    """`value` as an int: is_int and within int64. TypeError / ValueError naming `what`
    (e.g. "conv2d: groups") otherwise."""
    if not is_int(value):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if not -2**63 <= int(value) < 2**63:
        raise ValueError(f"{what} must fit in a signed 64-bit int, got {int(value)}")
    return int(value)


def _sizes(shape: Any, what: str) -> list[int]:
    """An int or a sequence of ints as a list of ints (each checked by int_arg)."""
    if is_int(shape):
        shape = [shape]
    try:
        entries = list(shape)
    except TypeError:
        raise TypeError(f"{what} must be an int or a sequence of ints, got {shape!r}") from None
    if not all(map(is_int, entries)):
        raise TypeError(f"{what} must be an int or a sequence of ints, got {shape!r}")
    return [int_arg(s, what) for s in entries]


def _shape(shape: Iterable[int] | int) -> list[int]:
    out = _sizes(shape, "shape")
    for s in out:
        if s < 0:
            raise ValueError(f"shape must hold non-negative sizes, got {tuple(out)}")
    return out


def empty(shape: Iterable[int] | int, device: str = "cpu", dtype: Any = np.float32) -> Tensor:
    """An uninitialised tensor."""
    return _C.empty(_shape(shape), _as_dtype(dtype), _check_device(device))


def zeros(shape: Iterable[int] | int, device: str = "cpu", dtype: Any = np.float32) -> Tensor:
    """A tensor of zeros."""
    return _C.zeros(_shape(shape), _as_dtype(dtype), _check_device(device))


def from_dlpack(obj: Any) -> Tensor:
    """A zero-copy view of a DLPack producer's data (NumPy array, PyTorch tensor, ...).

    Non-contiguous CPU data is copied into a contiguous tensor. Contiguous data the producer marks
    read-only raises BufferError (the tensor would be writable); hg.tensor(data) copies it.
    """
    return _C.from_dlpack(obj)


def as_tensor(x: Any, name: str = "x") -> Tensor:
    """A Tensor as is; a NumPy array (or list) becomes a CPU tensor."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (np.ndarray, list, tuple, float, int, np.generic)):
        try:
            return tensor(x)
        except (TypeError, ValueError) as exc:  # name the argument, not just "tensor"
            raise type(exc)(f"{name}: {exc}") from None
    got = "None" if x is None else type(x).__name__
    raise TypeError(f"{name} must be a hipgrad Tensor or a NumPy array, got {got}")


def _repr(t: Tensor) -> str:
    dev = t.device
    if t.numel() <= 64:
        body = np.array2string(t.numpy(), separator=", ", prefix="tensor(")
    else:
        body = f"<{t.numel()} elements>"
    return f"tensor({body}, shape={t.shape}, dtype={t.dtype}, device='{dev}')"


def _array(t: Tensor, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
    """np.asarray(t): a copy; with copy=False (NumPy 2) a view of a CPU tensor of that dtype,
    else a ValueError, as NumPy's protocol asks (never a copy that looks like a view)."""
    if copy is False:
        if not str(t.device).startswith("cpu"):
            raise ValueError(f"np.asarray(copy=False): the tensor is on {t.device}; only a CPU tensor "
                             "can be viewed (use .numpy() for a copy)")
        view = np.from_dlpack(t)
        if dtype is not None and np.dtype(dtype) != view.dtype:
            raise ValueError(f"np.asarray(copy=False): {view.dtype} to {np.dtype(dtype)} needs a copy")
        return view
    arr = t.numpy()
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _reshape(t: Tensor, *shape: Any) -> Tensor:
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = shape[0]
    return t._reshape(_sizes(shape, "reshape: shape"))


def _scalar(t: Tensor, what: str) -> Any:
    """The value of a one-element tensor (any rank) as a NumPy scalar."""
    if t.numel() != 1:
        raise TypeError(f"only a one-element tensor can be converted to {what}, got shape {t.shape}")
    return t.numpy().reshape(-1)[0]


def _bool(t: Tensor) -> bool:
    """As torch: a one-element tensor's truth value; ValueError for any other size."""
    if t.numel() != 1:
        raise ValueError(f"the truth value of a tensor of shape {t.shape} ({t.numel()} elements) "
                         "is ambiguous; a one-element tensor has one")
    return bool(_scalar(t, "a bool"))


Tensor.__repr__ = _repr
Tensor.__bool__ = _bool
Tensor.__float__ = lambda t: float(_scalar(t, "a float"))
Tensor.__int__ = lambda t: int(_scalar(t, "an int"))
Tensor.__array__ = _array
Tensor.reshape = _reshape
Tensor.size = property(lambda t: int(t.numel()))
