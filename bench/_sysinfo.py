"""What the CPU benchmark reports besides timings: the CPU, its FP32 peak, which OpenBLAS (and
which of its kernels) NumPy and hipgrad run with how many threads, how busy the machine was
while the bench ran, and the tables (text and Markdown)."""

from __future__ import annotations

import ctypes
import glob
import os
import re
import resource
import time

import hipgrad as hg
import numpy as np

ISAS = ["generic", "avx2", "avx512"]
# Per-core FP32 FLOP per cycle: vector lanes x 2 (an FMA is two FLOPs) x FMA units.
FLOPS_PER_CYCLE = {"avx512": 16 * 2 * 2, "avx2": 8 * 2 * 2, "generic": 4 * 2}


def lesser_isas() -> list[str]:
    """The ISA variants below the detected one (forced for comparison)."""
    return ISAS[: ISAS.index(hg._C._cpu_isa_detected())][::-1]


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                out.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return out


def _openblas_runtime(lib_path: str, suffix: str) -> dict[str, object]:
    """Ask a loaded OpenBLAS which kernels (core) it picked at run time and its thread count."""
    try:
        lib = ctypes.CDLL(lib_path)
    except OSError as e:
        return {"error": str(e)}
    out: dict[str, object] = {"library": os.path.basename(lib_path)}
    for key, stem, restype in (("config", "get_config", ctypes.c_char_p),
                               ("core", "get_corename", ctypes.c_char_p),
                               ("threads", "get_num_threads", ctypes.c_int)):
        for name in (f"scipy_openblas_{stem}{suffix}", f"openblas_{stem}{suffix}", f"openblas_{stem}"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = restype
                value = fn()
                out[key] = value.decode() if isinstance(value, bytes) else value
                break
    return out


def _numpy_blas() -> dict[str, object]:
    out: dict[str, object] = {}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out["build"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
    except Exception as e:  # noqa: BLE001 - report what is available
        out["build"] = f"unavailable: {e}"
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*"))
    if libs:
        out["runtime"] = _openblas_runtime(libs[0], "64_" if "64" in os.path.basename(libs[0]) else "")
    try:
        import threadpoolctl
        out["threadpoolctl"] = threadpoolctl.threadpool_info()
    except ImportError:
        out["threadpoolctl"] = "not installed"
    return out


def _hipgrad_blas() -> dict[str, object]:
    out: dict[str, object] = {"build": hg.build_info()["facts"].get("cpu.blas", "")}
    try:
        import scipy_openblas32 as sob
        out["config"] = sob.get_openblas_config()
        out["runtime"] = _openblas_runtime(
            os.path.join(sob.get_lib_dir(), f"lib{sob.get_library()}.so"), "")
    except Exception as e:  # noqa: BLE001
        out["config"] = f"unavailable: {e}"
    return out


def collect(threads: int, flops_per_cycle: float | None, torch) -> dict:
    cpu = _cpuinfo()
    model = cpu.get("model name", "unknown")
    m = re.search(r"@\s*([\d.]+)\s*GHz", model)
    ghz = float(m.group(1)) if m else float(cpu.get("cpu MHz", 0)) / 1e3
    isa = hg._C._cpu_isa_detected()
    fpc = flops_per_cycle or FLOPS_PER_CYCLE[isa]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu_model": model, "logical_cpus": os.cpu_count(), "ghz_nominal": ghz, "threads": threads,
        "cpu_isa": isa, "flops_per_cycle_per_core": fpc,
        "peak_gflops": threads * ghz * fpc,
        "peak_note": (f"{threads} cores x {ghz} GHz x {fpc:g} FP32 FLOP/cycle "
                      f"({isa}: lanes x 2 FLOP/FMA x 2 FMA units), nominal clock"),
        "hipgrad": {"version": hg.__version__, "facts": hg.build_info()["facts"],
                    "gemm_blocking": dict(hg._C._gemm_blocking()),
                    "threads": hg.get_num_threads(), "openblas": _hipgrad_blas()},
        "numpy": {"version": np.__version__, "blas": _numpy_blas()},
        "torch": ({"version": torch.__version__, "threads": torch.get_num_threads()}
                  if torch is not None else "not installed"),
        "thread_setting": (f"OPENBLAS_NUM_THREADS={threads} OMP_NUM_THREADS={threads} set before "
                           f"NumPy loads; hg.set_num_threads({threads}); torch.set_num_threads({threads})"),
    }


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat (steal counts as busy)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])


def other_load(start: tuple[int, int], ru0, t0: float) -> dict:
    """How many cores other processes (or the hypervisor) kept busy while the bench ran."""
    busy, _ = cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ours = (ru.ru_utime - ru0.ru_utime) + (ru.ru_stime - ru0.ru_stime)
    wall = max(time.time() - t0, 1e-9)
    busy_s = (busy - start[0]) / hz
    return {"wall_s": round(wall, 1), "busy_cores": round(busy_s / wall, 2),
            "ours_cores": round(ours / wall, 2), "other_cores": round(max(busy_s - ours, 0) / wall, 2),
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def header_text(info: dict) -> str:
    nb, hb = info["numpy"]["blas"].get("runtime", {}), info["hipgrad"]["openblas"].get("runtime", {})
    return (f"CPU: {info['cpu_model']} ({info['logical_cpus']} logical), ISA {info['cpu_isa']}\n"
            f"threads: {info['threads']} ({info['thread_setting']})\n"
            f"numpy {info['numpy']['version']} OpenBLAS core {nb.get('core', '?')}, threads {nb.get('threads', '?')}; "
            f"hipgrad vendor OpenBLAS core {hb.get('core', '?')}, threads {hb.get('threads', '?')}\n"
            f"peak: {info['peak_gflops']:.1f} GFLOP/s = {info['peak_note']}")


def _fmt(r: dict) -> list[str]:
    return [r["kind"], r["case"], r["impl"], f"{r['ms']:.2f}", f"{r['gflops']:.1f}",
            "" if r["vs_ref"] is None else f"{r['vs_ref']:.2f}", f"{r['frac_peak']:.2f}",
            "" if r["max_rel_err"] is None else f"{r['max_rel_err']:.1e}", r["kernel"]]


HEAD = ["op", "case", "impl", "median ms", "GFLOP/s", "vs ref", "of peak", "max rel err", "kernel"]


def table(rows: list[dict]) -> str:
    cells = [HEAD] + [_fmt(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEAD))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(HEAD))) for c in cells)


def goals_text(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        vendor_goal = r["impl"] == "vendor" and r["case"] == "1024x1024x1024"
        if r["kind"] == "gemm" and (r["impl"] == "handwritten" or vendor_goal):
            goal = 0.8 if r["impl"] == "handwritten" else 0.9
            ok = "met" if r["vs_ref"] >= goal else "MISSED"
            lines.append(f"goal {r['impl']} >= {goal}x numpy at {r['case']}: {r['vs_ref']:.2f} ({ok})")
    return "\n".join(lines)


def load_text(info: dict) -> str:
    ol = info["other_load"]
    shared = ol["other_cores"] >= 0.2
    return (f"machine load during the bench: ours {ol['ours_cores']} cores, others {ol['other_cores']} "
            f"cores (loadavg {' '.join(ol['loadavg'])})"
            + (" -> SHARED machine: figures are pessimistic and noisy" if shared else " (quiet)"))


def markdown(info: dict, rows: list[dict]) -> str:
    nb, hb = info["numpy"]["blas"], info["hipgrad"]["openblas"]
    md = [f"# CPU benchmark, {info['date']}", "",
          f"- CPU: {info['cpu_model']}, {info['logical_cpus']} logical CPUs, hipgrad ISA `{info['cpu_isa']}`",
          f"- Threads: {info['threads']} on every side: {info['thread_setting']}",
          f"- Peak: {info['peak_gflops']:.1f} GFLOP/s = {info['peak_note']}",
          f"- NumPy {info['numpy']['version']}: build {nb.get('build')}; run time {nb.get('runtime')}",
          f"- hipgrad vendor: {hb.get('config')}; run time {hb.get('runtime')}",
          f"- hipgrad handwritten GEMM blocking: {info['hipgrad']['gemm_blocking']}",
          f"- PyTorch: {info['torch']}",
          f"- {load_text(info)}; bench took {info['bench_seconds']} s",
          ("- The peak uses the nominal clock; AVX-512 code may run at a lower licence clock,"
           " so the attainable peak is lower."),
          *([f"- Note: {info['note']}"] if info.get("note") else []), "",
          ("Median of repeated runs after a warm-up. `vs ref`: reference time / this time "
           "(reference: NumPy matmul for GEMM, PyTorch for conv), so > 1 is faster than the "
           "reference. `of peak`: achieved / peak above."), "",
          "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in _fmt(r)) + " |" for r in rows]
    md += ["", goals_text(rows).replace("\n", "  \n"), ""]
    return "\n".join(md)
