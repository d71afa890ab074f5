"""The files AMD's vendor libraries need for one GPU architecture, looked up the way they do it,
for `hipgrad doctor`.

rocBLAS (library/src/tensile_host.cpp): the Tensile folder is $ROCBLAS_TENSILE_LIBPATH, else the
first of <dir of librocblas.so>/library, /../rocblas/library, /rocblas/library that exists, with
a /<arch> subfolder where there is one; in it TensileLibrary_lazy_<arch>.dat (or .yaml), or
TensileLibrary_<arch>.dat, or (older releases) TensileLibrary.dat with <arch> code objects.
Without them every rocBLAS GEMM on that GPU fails (rocBLAS aborts with "Cannot read
TensileLibrary").
MIOpen: its system database folder is $MIOPEN_SYSTEM_DB_PATH, else <prefix>/share/miopen/db;
the precompiled kernels of an architecture are <arch>_<CUs>.kdb (<arch><CUs in hex>.kdb above
64 CUs, Handle::GetDbBasename). Without it MIOpen compiles each kernel on first use and caches
it under ~/.cache/miopen: it works, slowly the first time.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from typing import Any


def loaded_libraries(maps: str = "/proc/self/maps") -> dict[str, str]:
    """Paths of the shared libraries this process has loaded, by short name (librocblas ...)."""
    out: dict[str, str] = {}
    try:
        with open(maps) as f:
            for line in f:
                path = line.split()[-1] if "/" in line else ""
                base = os.path.basename(path)
                for name in ("librocblas", "libMIOpen", "libamdhip64", "libcublas", "libcudnn"):
                    if base.startswith(name + ".so"):
                        out.setdefault(name, path)
    except OSError:
        pass
    return out


def tensile_folder(rocblas_so: str | None, env: Mapping[str, str]) -> str:
    if env.get("ROCBLAS_TENSILE_LIBPATH"):
        return env["ROCBLAS_TENSILE_LIBPATH"]
    base = os.path.dirname(rocblas_so) if rocblas_so else "/opt/rocm/lib"
    for rel in ("library", "../rocblas/library"):
        if os.access(os.path.join(base, rel), os.R_OK):
            return os.path.normpath(os.path.join(base, rel))
    return os.path.join(base, "rocblas", "library")


def tensile_files(folder: str, arch: str) -> list[str]:
    """The Tensile files rocBLAS would load for `arch` (without feature suffixes) in `folder`."""
    if os.path.isdir(os.path.join(folder, arch)):
        folder = os.path.join(folder, arch)
    for name in (f"TensileLibrary_lazy_{arch}.dat", f"TensileLibrary_lazy_{arch}.yaml",
                 f"TensileLibrary_{arch}.dat", f"TensileLibrary_{arch}.yaml"):
        if os.path.isfile(os.path.join(folder, name)):
            return [os.path.join(folder, name)]
    if os.path.isfile(os.path.join(folder, "TensileLibrary.dat")):
        objects = sorted(glob.glob(os.path.join(folder, f"*{arch}*.co")))
        if objects:
            return [os.path.join(folder, "TensileLibrary.dat")] + objects
    return []


def miopen_db_folder(miopen_so: str | None, env: Mapping[str, str]) -> str:
    if env.get("MIOPEN_SYSTEM_DB_PATH"):
        return env["MIOPEN_SYSTEM_DB_PATH"]
    prefix = os.path.dirname(os.path.dirname(miopen_so)) if miopen_so else "/opt/rocm"
    return os.path.join(prefix, "share", "miopen", "db")


def kdb_name(arch: str, compute_units: int) -> str:
    return f"{arch}_{compute_units}.kdb" if compute_units <= 64 else f"{arch}{compute_units:x}.kdb"


def lookups(index: int, full_arch: str, compute_units: int, libs: Mapping[str, str],
            loaded: Mapping[str, str], env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Findings (as dicts: library, level, text, fix) on gpu:`index`'s rocBLAS and MIOpen files."""
    arch = full_arch.split(":")[0]
    out = []
    if libs.get("rocblas", "not found") != "not found":
        folder = tensile_folder(loaded.get("librocblas"), env)
        files = tensile_files(folder, arch)
        if files:
            out.append({"library": "rocblas", "level": "ok",
                        "text": f"rocBLAS's Tensile library for {arch}: {files[0]}"})
        else:
            have = sorted(os.path.basename(p)
                          for p in glob.glob(os.path.join(folder, "TensileLibrary*")))
            out.append({"library": "rocblas", "level": "problem",
                        "text": f"rocBLAS has no Tensile library for gpu:{index} ({arch}) in "
                                f"{folder} (found: {', '.join(have[:6]) or 'nothing'}): every "
                                "rocBLAS GEMM on it fails",
                        "fix": f"install a rocBLAS built for {arch}, or point "
                               "ROCBLAS_TENSILE_LIBPATH at its library folder; meanwhile "
                               "HIPGRAD_IMPL=handwritten avoids rocBLAS"})
    if libs.get("miopen", "not found") != "not found":
        folder = miopen_db_folder(loaded.get("libMIOpen"), env)
        name = kdb_name(arch, compute_units)
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            out.append({"library": "miopen", "level": "ok",
                        "text": f"MIOpen's kernel database for {arch}: {path}"})
        else:
            others = sorted(os.path.basename(p)
                            for p in glob.glob(os.path.join(folder, f"{arch}*.kdb")))
            out.append({"library": "miopen", "level": "warn",
                        "text": f"no MIOpen kernel database {name} in {folder}"
                                + (f" (only {', '.join(others)})" if others else "")
                                + ": MIOpen compiles each kernel on first use (minutes), then "
                                  "caches it in ~/.cache/miopen",
                        "fix": f"install MIOpen's precompiled kernels for {arch} (package "
                               f"miopen-hip-{arch}*kdb), or accept the slow first run"})
    return out
