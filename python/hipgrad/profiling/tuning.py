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
import contextlib
import json
import os
import pathlib
import re
import tempfile
import warnings
from collections.abc import Iterator

from .._native import _C

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


def _entry(r: object) -> tuple[str, str, str, list[tuple[str, float]]]:
    """One cache row as (op, key, kernel, [(candidate, ms)]); ValueError if it is malformed."""
    if not isinstance(r, dict):
        raise ValueError(f"an entry is not an object: {r!r}")
    op, key, kernel, cands = r.get("op"), r.get("key"), r.get("kernel"), r.get("candidates")
    if not (isinstance(op, str) and isinstance(key, str) and isinstance(kernel, str)
            and isinstance(cands, dict)):
        raise ValueError(f"malformed entry {str(r)[:120]}")
    times = []
    for k, v in cands.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= float(v) < float("inf"):
            raise ValueError(f"entry {op} {key}: candidate {k!r} has time {v!r}")
        times.append((str(k), float(v)))
    return op, key, kernel, times


def _valid(r: object) -> bool:
    try:
        _entry(r)
        return True
    except (ValueError, OverflowError):
        return False


def _read(path: pathlib.Path, device: str) -> list:
    """The rows of a cache file written for `device`'s identity and this format (every device
    of that identity: gpu:0 and gpu:1 of one model share a file). OSError / ValueError if
    unreadable or foreign."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("identity") != device_identity(device):
        raise ValueError("written for another device, build or format")
    rows = data.get("choices")
    if not isinstance(rows, list):
        raise ValueError("no list of choices")
    return rows


def load(device: str = "cpu") -> int:
    """Feed the cached choices for `device` to the dispatcher; returns how many were loaded.
    A file that cannot be read or parsed, or an entry that is malformed or names a kernel this
    build lacks, is skipped with a RuntimeWarning: never fatal."""
    path = cache_file(device)
    try:
        if not path.is_file():
            return 0
        rows = _read(path, device)
    except (OSError, ValueError, OverflowError) as e:  # JSONDecodeError is a ValueError
        warnings.warn(f"hipgrad: ignoring tuning cache {path}: {e}", RuntimeWarning, stacklevel=2)
        return 0
    count = 0
    for r in rows:
        try:
            op, key, kernel, times = _entry(r)
        except (ValueError, OverflowError) as e:
            warnings.warn(f"hipgrad: ignoring a tuning cache entry in {path}: {e}", RuntimeWarning, stacklevel=2)
            continue
        if key.split("|", 1)[0] != device:
            continue
        if _C.set_tuning_choice_kernel(op, key, kernel, times):
            count += 1
        else:
            warnings.warn(f"hipgrad: ignoring tuning cache entry {op} {key} in {path}: this "
                          f"build has no kernel '{kernel}' for {op}", RuntimeWarning, stacklevel=2)
    return count


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    """An exclusive lock beside `path` (flock), so that two processes saving at once merge
    instead of one overwriting the other's choices."""
    try:
        import fcntl
    except ImportError:  # no flock: saves are still atomic, only not merged under a race
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def save(device: str = "cpu") -> pathlib.Path | None:
    """Write the current choices for `device` atomically (temp file, fsync, rename), merged with
    what the file already holds: another process's choices and other devices' rows are kept,
    ours replace the same (op, key)."""
    rows = [r for r in tuning_report() if r["key"].split("|", 1)[0] == device]
    if not rows:
        return None
    path = cache_file(device)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            try:
                old = _read(path, device) if path.is_file() else []
            except (ValueError, OverflowError):  # a corrupt or foreign file is replaced
                old = []
            ours = {(r["op"], r["key"]) for r in rows}
            kept = [r for r in old if _valid(r) and (r["op"], r["key"]) not in ours]
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tuning-", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump({"format": FORMAT, "identity": device_identity(device), "choices": kept + rows},
                          f, indent=1)
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
