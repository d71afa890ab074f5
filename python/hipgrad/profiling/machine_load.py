"""How busy the machine was while figures were taken: the cores other processes kept busy
(/proc/stat against this process's own CPU time), the load average, and what hipgrad's CPU
thread pool saw (regions where a worker was descheduled, falls back to one thread). `hipgrad
explain`, `hipgrad compare` and the benches print it and warn when the figures were taken under
contention, since a busy neighbour changes timings (and which variant looks faster).

    with LoadMonitor() as load:
        ...timed work...
    print(load.summary()); load.warning()  # None on a quiet machine
"""

from __future__ import annotations

import os
import resource
import time

# Other processes keeping at least this many cores busy on average: the figures are contended.
CONTENDED_CORES = 0.25


def _busy_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat; None where it is unreadable."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def _own_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _pool_stats() -> dict:
    from .._native import _C

    try:
        return dict(_C._thread_pool_stats())
    except AttributeError:  # a build without the pool hooks
        return {}


def usable_cpus() -> int:
    """CPUs this process may run on (affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class LoadMonitor:
    """Measures the machine load over a `with` block (or between start() and stop())."""

    def __init__(self) -> None:
        self.result: dict | None = None
        self._t0 = 0.0

    def start(self) -> "LoadMonitor":
        self._ticks0, self._own0, self._t0 = _busy_ticks(), _own_cpu_s(), time.monotonic()
        self._pool0 = _pool_stats()
        self.result = None
        return self

    def stop(self) -> dict:
        wall = max(time.monotonic() - self._t0, 1e-9)
        ticks, own = _busy_ticks(), _own_cpu_s() - self._own0
        pool = _pool_stats()
        out: dict = {"wall_s": round(wall, 3), "cpus": usable_cpus(),
                     "ours_cores": round(own / wall, 2)}
        if ticks is not None and self._ticks0 is not None:
            busy_s = (ticks[0] - self._ticks0[0]) / os.sysconf("SC_CLK_TCK")
            out["busy_cores"] = round(busy_s / wall, 2)
            out["other_cores"] = round(max(busy_s - own, 0.0) / wall, 2)
        try:
            with open("/proc/loadavg") as f:
                out["loadavg"] = [float(v) for v in f.read().split()[:3]]
        except (OSError, ValueError):
            pass
        if pool:
            out["pool"] = {k: pool[k] - self._pool0.get(k, 0)
                           for k in ("regions", "stalled_regions", "degradations") if k in pool}
            out["pool"]["degraded_now"] = bool(pool.get("degraded"))
        out["contended"] = contended(out)
        self.result = out
        return out

    def __enter__(self) -> "LoadMonitor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def summary(self) -> str:
        return summary(self.result or self.stop())

    def warning(self) -> str | None:
        return warning(self.result or self.stop())


def contended(load: dict) -> bool:
    """Other processes kept >= CONTENDED_CORES cores busy, or hipgrad's pool fell back to one
    thread because its workers were descheduled."""
    pool = load.get("pool", {})
    return (load.get("other_cores", 0.0) >= CONTENDED_CORES or pool.get("degradations", 0) > 0
            or bool(pool.get("degraded_now")))


def summary(load: dict) -> str:
    parts = [f"machine load: other processes {load.get('other_cores', '?')} of {load['cpus']} "
             f"cores, hipgrad {load['ours_cores']}"]
    if "loadavg" in load:
        parts.append("loadavg " + " ".join(f"{v:.2f}" for v in load["loadavg"]))
    pool = load.get("pool")
    if pool:
        parts.append(f"thread pool: {pool.get('stalled_regions', 0)} of {pool.get('regions', 0)} "
                     f"regions waited on a descheduled worker, {pool.get('degradations', 0)} "
                     "fall-backs to one thread")
    return "; ".join(parts)


def warning(load: dict) -> str | None:
    if not load.get("contended"):
        return None
    return ("WARNING: these figures were taken under contention (other processes kept "
            f"{load.get('other_cores', '?')} cores busy); timings and the ranking of variants "
            "differ on a quiet machine: re-run there before comparing.")
