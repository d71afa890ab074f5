"""hg.Tensor construction and conversion: NumPy copies, DLPack views, device moves."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ._native import _C

Tensor = _C.Tensor

_SUPPORTED = {np.dtype(t) for t in ("float32", "int64", "int32", "int8", "uint8")}


def _as_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
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
        raise TypeError(f"tensor: cannot convert data of dtype {arr.dtype} to {dt}")
    arr = np.asarray(arr, dtype=dt, order="C")  # keeps 0-d arrays 0-d
    return _C.from_numpy(arr, device)


def borrow(data: Any, device: str = "cpu", dtype: Any = None) -> Tensor:
    """A tensor over `data`'s memory when it can be one, else a copy as tensor() makes.

    On the CPU a C-contiguous, aligned NumPy array of a supported dtype (and of `dtype`, when
    given) is wrapped without a copy, as torch.from_numpy does: the tensor keeps the array alive,
    and writes through either are seen by both. The training loop and the inference engine use
    it for the batches they only read. Anything else (another device, dtype or layout) is copied.
    """
    t = try_borrow(data, device, dtype)
    return t if t is not None else tensor(data, device=device, dtype=dtype)


def try_borrow(data: Any, device: str = "cpu", dtype: Any = None) -> Tensor | None:
    """borrow()'s wrap without the copy: None when `data` cannot be wrapped."""
    if (isinstance(data, np.ndarray) and _check_device(device).startswith("cpu")
            and data.dtype in _SUPPORTED and (dtype is None or np.dtype(dtype) == data.dtype)
            and data.flags.c_contiguous and data.flags.aligned):
        try:
            return _C.from_dlpack(data)
        except BufferError:  # a read-only array under a NumPy without DLPack 1.0
            pass
    return None


def _shape(shape: Iterable[int] | int) -> list[int]:
    if isinstance(shape, (int, np.integer)):
        shape = [int(shape)]
    out = [int(s) for s in shape]
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

    Non-contiguous CPU data is copied into a contiguous tensor.
    """
    return _C.from_dlpack(obj)


def as_tensor(x: Any, name: str = "x") -> Tensor:
    """A Tensor as is; a NumPy array (or list) becomes a CPU tensor."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (np.ndarray, list, tuple, float, int, np.generic)):
        return tensor(x)
    raise TypeError(f"{name} must be a hipgrad Tensor or a NumPy array, got {type(x).__name__}")


def _repr(t: Tensor) -> str:
    dev = t.device
    if t.numel() <= 64:
        body = np.array2string(t.numpy(), separator=", ", prefix="tensor(")
    else:
        body = f"<{t.numel()} elements>"
    return f"tensor({body}, shape={t.shape}, dtype={t.dtype}, device='{dev}')"


def _array(t: Tensor, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
    arr = t.numpy()
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _reshape(t: Tensor, *shape: Any) -> Tensor:
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = tuple(shape[0])
    return t._reshape([int(s) for s in shape])


Tensor.__repr__ = _repr
Tensor.__array__ = _array
Tensor.reshape = _reshape
Tensor.size = property(lambda t: int(t.numel()))
