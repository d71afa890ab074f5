"""Devices, memory statistics, threads and what this build contains."""

from __future__ import annotations

from collections.abc import Callable

from typing import Any

from ._native import _C
from .tensor import int_arg


def devices() -> list[str]:
    """The usable devices: ["cpu"] or ["cpu", "gpu:0", ...]."""
    return list(_C.devices())


def resolve_device(device: str) -> str:
    """"auto" -> "gpu:0" where one is usable, else "cpu"; any other name as given."""
    if device == "auto":
        return "gpu:0" if "gpu:0" in devices() else "cpu"
    return device


def gpu_unavailable_reason() -> str:
    """Why no GPU is usable ("" when one is)."""
    return _C.gpu_unavailable_reason()


def synchronize(device: str = "cpu") -> None:
    """Wait for all queued work on `device`."""
    _C.synchronize(device)


def time_ms(fn: Callable[[], object], device: str = "cpu") -> float:
    """Call `fn()` (which runs hipgrad ops on `device`) and return the device time it took, in
    milliseconds: GPU events recorded on the device's stream around it (waited for), or the
    steady clock on the CPU. Work queued before the call is waited for first on the CPU and is
    not counted on the GPU. For benches: `hg.time_ms(lambda: ops.gemm(a, b), "gpu:0")`."""
    if not callable(fn):
        raise TypeError(f"time_ms: fn must be callable, got {type(fn).__name__}")
    return float(_C.time_ms(fn, device))


def memory_stats(device: str = "cpu") -> dict[str, int]:
    """Bytes held by live tensors (current, peak), bytes reserved from the system, allocations."""
    return dict(_C.memory_stats(device))


def reset_peak_memory_stats(device: str = "cpu") -> None:
    _C.reset_peak_memory_stats(device)


def empty_cache(device: str = "cpu") -> None:
    """Return cached, unused device blocks to the system."""
    _C.empty_cache(device)


def set_num_threads(n: int) -> None:
    """Threads used by the CPU kernels and the CPU BLAS: 1 to max(64, 4 x the hardware threads)
    (ValueError outside; far more threads than cores fail to start)."""
    _C.set_num_threads(int_arg(n, "set_num_threads: n"))


def get_num_threads() -> int:
    return int(_C.get_num_threads())


def build_info() -> dict[str, Any]:
    """Which backends and vendor libraries were compiled in (with versions), and the kernel
    each (op, backend, variant) runs, with a note where a vendor variant falls back."""
    facts = dict(_C.build_facts())
    return {
        "version": facts.pop("version", ""),
        "backends": ["cpu"] + (["gpu"] if facts.get("gpu.platform", "off") != "off" else []),
        "gpu_platform": facts.get("gpu.platform", "off"),
        "devices": devices(),
        "gpu_unavailable_reason": gpu_unavailable_reason(),
        "facts": facts,
        "kernels": [dict(r) for r in _C.kernel_table()],
    }
