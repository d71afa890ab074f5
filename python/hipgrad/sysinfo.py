"""What a device is: `hipgrad.device_info(device)` for the CPU and each GPU.

The CPU's facts come from the files Linux exposes (`/proc/cpuinfo`, `/proc/meminfo`, the
process's CPU affinity and its cgroup's CPU and memory limits), so they say what *this process*
may use, not what the machine has; a GPU's come from the runtime's device properties
(`hipGetDeviceProperties` / `cudaGetDeviceProperties`, or the simulated device's) through
`_C._gpu_probe()`. The readers take a `root` folder so tests can feed them fake files.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from ._native import _C

# float32 lanes of one SIMD register for the CPU kernels' instruction set: the CPU's "warp".
_ISA_LANES = {"avx512": 16, "avx512_vnni": 16, "avx2": 8, "generic": 4}


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel.lstrip("/")).read_text()
    except OSError:
        return None


def cpu_model(root: Path = Path("/")) -> str:
    """The CPU's model name from /proc/cpuinfo ("" when it does not say)."""
    text = _read(root, "/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model", "Hardware"):
            return value.strip()
    return ""


def cgroup_dir(root: Path = Path("/")) -> Path:
    """This process's cgroup v2 folder under /sys/fs/cgroup (the mount itself in a container)."""
    base = root / "sys/fs/cgroup"
    for line in (_read(root, "/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            own = base / line[3:].strip().lstrip("/")
            if (own / "cpu.max").exists() or (own / "memory.max").exists():
                return own
    return base


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """CPUs the cgroup's quota allows (cpu.max "quota period", or v1 cfs files); None: no limit."""
    text = _read(root, str(cgroup_dir(root).relative_to(root) / "cpu.max"))
    if text is not None:
        quota, _, period = text.strip().partition(" ")
        if quota == "max" or not period:
            return None
        return int(quota) / int(period)
    quota = _read(root, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    period = _read(root, "/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if quota is None or period is None or int(quota) <= 0:
        return None
    return int(quota) / int(period)


def cgroup_memory_limit(root: Path = Path("/")) -> int | None:
    """Bytes the cgroup allows (memory.max, or v1 limit_in_bytes); None: no limit."""
    text = _read(root, str(cgroup_dir(root).relative_to(root) / "memory.max"))
    if text is None:
        text = _read(root, "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if text is None or text.strip() == "max":
        return None
    value = int(text.strip())
    return None if value >= 1 << 60 else value  # v1 writes "no limit" as a huge number


def meminfo_bytes(root: Path = Path("/"), key: str = "MemTotal") -> int:
    for line in (_read(root, "/proc/meminfo") or "").splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0]) * 1024
    return 0


def physical_cores(cpus: set[int], root: Path = Path("/")) -> int:
    """Distinct (package, core) pairs among `cpus`; len(cpus) where topology is not readable."""
    cores = set()
    for cpu in cpus:
        topo = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        core = _read(root, topo + "core_id")
        pkg = _read(root, topo + "physical_package_id")
        if core is None or pkg is None:
            return len(cpus)
        cores.add((pkg.strip(), core.strip()))
    return len(cores)


def cpu_info(root: Path = Path("/"), affinity: set[int] | None = None) -> dict[str, Any]:
    """The CPU as this process sees it (see hipgrad.device_info)."""
    if affinity is None:
        affinity = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else set(range(os.cpu_count() or 1))
    quota = cgroup_cpu_limit(root)
    threads = len(affinity)
    usable = threads if quota is None else max(1, min(threads, int(quota + 0.999)))
    total = meminfo_bytes(root, "MemTotal")
    limit = cgroup_memory_limit(root)
    isa = _C._cpu_isa()
    return {
        "device": "cpu",
        "name": cpu_model(root) or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "isa": isa,
        "isa_detected": _C._cpu_isa_detected(),
        "warp_size": _ISA_LANES.get(isa, 1),
        "multiprocessors": min(usable, physical_cores(affinity, root)),
        "threads": usable,
        "affinity_cpus": threads,
        "cgroup_cpu_limit": quota,
        "kernel_threads": int(_C.get_num_threads()),
        "total_memory": total if limit is None else min(total, limit),
        "machine_memory": total,
        "free_memory": meminfo_bytes(root, "MemAvailable"),
    }


def _gpu_index(device: Any) -> int | None:
    """None for "cpu", the index for "gpu" / "gpu:N"; ValueError for anything else."""
    if isinstance(device, str):
        if device == "cpu":
            return None
        if device == "gpu":
            return 0
        head, sep, tail = device.partition(":")
        if head == "gpu" and sep and tail.isdigit():
            return int(tail)
    raise ValueError(f"device_info: device must be 'cpu', 'gpu' or 'gpu:N', got {device!r}")


def device_info(device: str = "cpu") -> dict[str, Any]:
    """What `device` is: at least name, arch, warp_size, multiprocessors and total_memory
    (bytes).

    CPU: the model name, the machine arch and the instruction set the kernels use (isa), warp_size
    as float32 SIMD lanes of that ISA, multiprocessors as physical cores and threads as hardware
    threads this process may use (CPU affinity and cgroup quota), total_memory as the smaller of
    the machine's memory and the cgroup's limit.
    GPU: the runtime's device properties (arch "gfx90a:sramecc+:xnack-" / "sm_90"), free memory,
    the runtime and driver versions. A device hipgrad cannot use is a ValueError saying why.
    """
    index = _gpu_index(device)
    if index is None:
        return cpu_info()
    name = f"gpu:{index}"
    usable = list(_C.devices())
    if name not in usable:
        why = _C.gpu_unavailable_reason()
        raise ValueError(f"device_info: {name} is not usable here (usable: {', '.join(usable)})"
                         + (f"; {why}" if why else ""))
    probe = _C._gpu_probe()
    props = dict(probe["devices"][index])
    facts = dict(_C.build_facts())
    return {"device": name, **props, "platform": facts.get("gpu.platform", ""),
            "runtime_version": probe["runtime_version"],
            "driver_version": probe["driver_version"]}
