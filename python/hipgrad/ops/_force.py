"""Run one candidate kernel of an op by name, whatever impl its calls ask for (tests, benches).

impl="auto" chooses among an op's candidates (the default handwritten kernel, its handwritten
alternates, the vendor kernel; hipgrad.build_info()["kernels"] lists them). To check or time one
of them on its own:

    with hg.ops.force_kernel("gemm", "cpu.gemm_unpacked_avx512_12x32"):
        y = hg.ops.gemm(a, b)          # runs that kernel; hg.ops.last_impl() names it

HIPGRAD_KERNEL=<name>[,<name>...] forces kernels for the whole process (read at import), for
every op that has a kernel of that name; a name no op has is reported with a warning. Forcing applies to the backend the kernel belongs to.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

from .._native import _C

# the ops of this family, exported as hipgrad.ops.<name>
__all__ = ["force_kernel"]


def _ops_of(kernel: str) -> list[str]:
    """Every op with a kernel of that name (conv2d_forward and conv2d_backward_weight both have
    cpu.conv2d_im2col_openblas, for one)."""
    ops = [str(row["op"]) for row in _C.kernel_table()
           if row["kernel"] == kernel and not row["note"].startswith("vendor fallback")]
    return list(dict.fromkeys(ops))


@contextlib.contextmanager
def force_kernel(op: str, kernel: str) -> Iterator[None]:
    """Within the block, every call of `op` on the kernel's backend runs `kernel` (by name, as
    build_info()["kernels"] lists it). ValueError when the op has no such kernel."""
    backend = kernel.split(".", 1)[0]
    before = _C.forced_kernel(op, backend)
    _C.force_kernel(op, kernel)
    try:
        yield
    finally:
        if before:
            _C.force_kernel(op, before)
        else:
            _C.clear_forced_kernel(op, backend)


def _force_from_env() -> None:
    for name in filter(None, (n.strip() for n in os.environ.get("HIPGRAD_KERNEL", "").split(","))):
        ops = _ops_of(name)
        if not ops:
            warnings.warn(f"hipgrad: HIPGRAD_KERNEL names no kernel of this build: '{name}'",
                          RuntimeWarning, stacklevel=2)
        for op in ops:  # every op that has it
            _C.force_kernel(op, name)


_force_from_env()
