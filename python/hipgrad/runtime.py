"""Devices, memory statistics, threads and what this build contains."""

from __future__ import annotations

from typing import Any

from ._native import _C


def devices() -> list[str]:
    """The usable devices: ["cpu"] or ["cpu", "gpu:0", ...]."""
    return list(_C.devices())


def gpu_unavailable_reason() -> str:
    """Why no GPU is usable ("" when one is)."""
    return _C.gpu_unavailable_reason()


def synchronize(device: str = "cpu") -> None:
    """Wait for all queued work on `device`."""
    _C.synchronize(device)


def memory_stats(device: str = "cpu") -> dict[str, int]:
    """Bytes held by live tensors (current, peak), bytes reserved from the system, allocations."""
    return dict(_C.memory_stats(device))


def reset_peak_memory_stats(device: str = "cpu") -> None:
    _C.reset_peak_memory_stats(device)


def empty_cache(device: str = "cpu") -> None:
    """Return cached, unused device blocks to the system."""
    _C.empty_cache(device)


def set_num_threads(n: int) -> None:
    """Threads used by the CPU kernels and the CPU BLAS."""
    _C.set_num_threads(int(n))


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
