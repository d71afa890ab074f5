"""Exceptions raised by hipgrad beyond Python's own ValueError/TypeError/MemoryError."""

from __future__ import annotations


class BackendError(RuntimeError):
    """A runtime or vendor-library call failed (HIP/CUDA, rocBLAS/cuBLAS, MIOpen/cuDNN, BLAS).

    Attributes name the library, its status code, the failed call and the source location.
    """

    def __init__(self, message: str, library: str = "", status: int = 0, call: str = "",
                 location: str = "") -> None:
        super().__init__(message)
        self.library = library
        self.status = status
        self.call = call
        self.location = location

    def __reduce__(self):
        return (type(self), (str(self), self.library, self.status, self.call, self.location))
