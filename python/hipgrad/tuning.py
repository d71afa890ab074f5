"""Solver selection that outlives the process.

impl="auto" times every candidate kernel of an op once per (op, shape key, device) -- the
default handwritten kernel, each handwritten alternate (other tile sizes, a small-problem kernel)
and the vendor kernel -- and keeps the fastest (native dispatcher). This module persists those
choices, by kernel name, in one JSON file per device and hipgrad version under the user's cache
directory ($HIPGRAD_CACHE_DIR, else $XDG_CACHE_HOME/hipgrad, else ~/.cache/hipgrad), loads them at
import so later processes skip the timing, and writes them atomically at exit. A corrupt, foreign
or older-format file is ignored with a warning, never fatal; so is a single entry whose kernel
this build no longer has. HIPGRAD_IMPL=handwritten|vendor|auto overrides every impl="auto";
hipgrad.ops.force_kernel (or HIPGRAD_KERNEL) runs one candidate by name.
"""

from __future__ import annotations

import atexit
import json
import os
import pathlib
import re
import tempfile
import warnings

from ._native import _C

FORMAT = 3  # 2: choices by kernel name, with every candidate's time; 3: on a multi-threaded CPU
#             OpenBLAS is kept only when clearly faster (dispatch.h kCpuVendorMargin)


def cache_dir() -> pathlib.Path:
    env = os.environ.get("HIPGRAD_CACHE_DIR")
    if env:
        return pathlib.Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "hipgrad"


def device_identity(device: str) -> str:
    """What a choice depends on: the device model (CPU model name or GPU name) and the build."""
    facts = _C.build_facts()
    if device.startswith("gpu"):
        name = facts.get("gpu.device", "gpu")
    else:
        name = _cpu_model() + " " + facts.get("cpu.isa", "")
    return f"{name.strip()} | hipgrad {facts.get('version', '')}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def cache_file(device: str) -> pathlib.Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", device_identity(device))[:120]
    return cache_dir() / f"tuning-{device.split(':')[0]}-{slug}.json"


def tuning_report() -> list[dict]:
    """Each remembered choice: op, key ("<device>|<shape>"), chosen variant ("handwritten" or
    "vendor"), kernel (the winner's kernel name), candidates ({kernel name: ms} for every
    candidate timed), handwritten_ms and vendor_ms (the default handwritten and the vendor
    kernel's times; 0 where that variant was not a candidate)."""
    return [dict(r, candidates=dict(r["candidates"])) for r in _C.tuning_choices()]


def load(device: str = "cpu") -> int:
    """Feed the cached choices for `device` to the dispatcher; returns how many were loaded."""
    path = cache_file(device)
    if not path.exists():
        return 0
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT or data.get("identity") != device_identity(device):
            raise ValueError("written for another device, build or format")
        rows = [r for r in data["choices"] if r["key"].split("|", 1)[0] == device]
        entries = [(r["op"], r["key"], str(r["kernel"]),
                    [(str(k), float(v)) for k, v in r["candidates"].items()]) for r in rows]
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        warnings.warn(f"hipgrad: ignoring tuning cache {path}: {e}", RuntimeWarning, stacklevel=2)
        return 0
    count = 0
    for op, key, kernel, times in entries:
        if _C.set_tuning_choice_kernel(op, key, kernel, times):
            count += 1
        else:
            warnings.warn(f"hipgrad: ignoring tuning cache entry {op} {key} in {path}: this "
                          f"build has no kernel '{kernel}' for {op}", RuntimeWarning, stacklevel=2)
    return count


def save(device: str = "cpu") -> pathlib.Path | None:
    """Write the current choices for `device` atomically (temp file, fsync, rename)."""
    rows = [r for r in tuning_report() if r["key"].split("|", 1)[0] == device]
    if not rows:
        return None
    path = cache_file(device)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tuning-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"format": FORMAT, "identity": device_identity(device), "choices": rows}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path
    except OSError as e:
        warnings.warn(f"hipgrad: could not write tuning cache {path}: {e}", RuntimeWarning, stacklevel=2)
        return None


def _load_all() -> None:
    for dev in _C.devices():
        load(dev)


def _save_all() -> None:
    for dev in _C.devices():
        save(dev)


if os.environ.get("HIPGRAD_NO_TUNING_CACHE") != "1":
    _load_all()
    atexit.register(_save_all)
