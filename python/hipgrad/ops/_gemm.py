"""GEMM: y = alpha * op(a) @ op(b) + beta * c."""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor
from . import _common
from .._native import _C

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["gemm"]


def gemm(a: Any, b: Any, c: Any = None, *, trans_a: bool = False, trans_b: bool = False,
         alpha: float = 1.0, beta: float = 0.0, impl: str = "auto",
         out: Tensor | None = None) -> Tensor:
    """alpha * op(a) @ op(b) + beta * c, with op(a) (M, K), op(b) (K, N), c (M, N) or None.
    With `out`, the result is written there (see _common.out_arg) and `out` is returned."""
    t = _common.tensors("gemm", a=a, b=b, c=c, optional=("c",))
    return _C.ops.gemm(t["a"], t["b"], t["c"], _common.flag(trans_a, "gemm: trans_a"),
                       _common.flag(trans_b, "gemm: trans_b"),
                       _common.real(alpha, "gemm: alpha", f32=True),
                       _common.real(beta, "gemm: beta", f32=True), _common.impl_arg(impl, "gemm"), _common.out_arg(out, "gemm"))
