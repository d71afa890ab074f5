"""`hipgrad doctor`: why the GPU path does or does not work on this machine.

Three steps kept apart so each can be tested alone:
  gather()   -> facts: plain data read from the build (_C), the runtime (_C._gpu_probe), the
                environment, /dev, /sys and the vendor libraries' own file lookups;
  diagnose() -> findings: a pure function of the facts, so tests inject any machine (a device
                node without access, an architecture missing from the fat binary, ...);
  report()   -> text, one line per finding and its fix in one line.
The exit status is 1 when any finding is a problem (the GPU path is broken), else 0.
"""

from __future__ import annotations

import glob
import grp
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import doctor_files

LEVELS = ("ok", "note", "warn", "problem")
VISIBILITY_VARS = ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES",
                   "GPU_DEVICE_ORDINAL")
ENV_VARS = VISIBILITY_VARS + ("HSA_OVERRIDE_GFX_VERSION", "ROCBLAS_TENSILE_LIBPATH",
                              "MIOPEN_SYSTEM_DB_PATH", "HIPGRAD_IMPL", "HIPGRAD_GPU_GEMM_VARIANT")


@dataclass
class Finding:
    level: str   # one of LEVELS; "problem" means the GPU path is broken
    topic: str
    text: str
    fix: str = ""


# --- facts -----------------------------------------------------------------------------------

def _node(path: str, groups: set[str]) -> dict[str, Any]:
    try:
        st = os.stat(path)
    except OSError:
        return {"path": path, "exists": False, "access": False, "group": "", "in_group": False}
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"path": path, "exists": True, "access": os.access(path, os.R_OK | os.W_OK),
            "group": group, "in_group": group in groups}


def _user_groups() -> tuple[str, list[str]]:
    try:
        import pwd
        user = pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        user = str(os.getuid())
    names = []
    for gid in sorted(set(os.getgroups()) | {os.getgid()}):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.append(str(gid))
    return user, names


def _first_line(path: str) -> str | None:
    try:
        return Path(path).read_text().strip().splitlines()[0]
    except (OSError, IndexError):
        return None


def gather(run_gemm: bool = True) -> dict[str, Any]:
    """Everything diagnose() needs, read from this process and machine."""
    from .._native import _C
    from ..sysinfo import cpu_info
    build = dict(_C.build_facts())
    probe = dict(_C._gpu_probe())
    flavour = build.get("gpu.platform", "off")
    user, groups = _user_groups()
    nodes = [_node(p, set(groups)) for p in
             ["/dev/kfd", "/dev/dri"] + sorted(glob.glob("/dev/dri/renderD*")) +
             ["/dev/nvidiactl"] + sorted(glob.glob("/dev/nvidia[0-9]*"))]
    devices = [dict(d) for d in probe.get("devices", [])]
    facts: dict[str, Any] = {
        "flavour": flavour,
        "version": build.get("version", ""),
        "compiled_archs": [a for a in re.split(r"[,;]", build.get("gpu.archs", "")) if a],
        "runtime_version": probe.get("runtime_version", ""),
        "driver_version": probe.get("driver_version", ""),
        "count_error": probe.get("count_error", ""),
        "devices": devices,
        "usable": list(_C.devices()),
        "unavailable_reason": _C.gpu_unavailable_reason(),
        "libs": {k.split(".")[-1]: v for k, v in build.items() if k.startswith("gpu.vendor.")},
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        "kernel_driver": {
            "amdgpu": (_first_line("/sys/module/amdgpu/version") or "loaded")
            if os.path.isdir("/sys/module/amdgpu") else None,
            "nvidia": _first_line("/proc/driver/nvidia/version"),
        },
        "nodes": nodes,
        "user": user,
        "groups": groups,
        "container": os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv"),
        "cpu": cpu_info(),
        "vendor_files": [],
        "gemm": [],
    }
    loaded = doctor_files.loaded_libraries()
    for i, d in enumerate(devices):
        if flavour == "hip" and d.get("arch"):
            facts["vendor_files"] += doctor_files.lookups(
                i, d["arch"], d.get("multiprocessors", 0), facts["libs"], loaded, os.environ)
    if run_gemm:
        facts["gemm"] = gemm_checks(facts["usable"])
    return facts


def gemm_checks(devices: list[str], impls: tuple[str, ...] = ("handwritten", "vendor")) \
        -> list[dict[str, Any]]:
    """One small GEMM per (device, impl) against NumPy float64 on fresh random inputs."""
    import numpy as np

    from .. import ops
    from ..tensor import tensor
    rng = np.random.default_rng()
    m, k, n = 19, 23, 17  # odd sizes: edge tiles in every kernel
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    rows = []
    for dev in devices:
        for impl in impls:
            row: dict[str, Any] = {"device": dev, "impl": impl, "kernel": "", "error": "",
                                   "max_rel_err": None, "ok": False}
            try:
                out = ops.gemm(tensor(a, device=dev), tensor(b, device=dev), impl=impl)
                row["kernel"] = ops.last_impl().get("impl", "")
                got = out.numpy().astype(np.float64)
                err = float(np.max(np.abs(got - ref)) / max(1.0, float(np.max(np.abs(ref)))))
                row["max_rel_err"] = err
                row["ok"] = bool(np.isfinite(got).all() and err < 1e-4)
            except Exception as e:  # the doctor reports any failure; it must not crash on it
                row["error"] = f"{type(e).__name__}: {e}"
            rows.append(row)
    return rows


# --- diagnosis -------------------------------------------------------------------------------

def gfx_from_override(value: str) -> str | None:
    """HSA_OVERRIDE_GFX_VERSION "10.3.0" -> "gfx1030", "9.0.10" -> "gfx90a"; None if malformed."""
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\.(\d+)\s*", value)
    if not m:
        return None
    major, minor, step = (int(x) for x in m.groups())
    if minor > 15 or step > 15:
        return None
    return f"gfx{major}{minor:x}{step:x}"


def override_for(arch: str, compiled: list[str]) -> str | None:
    """The HSA_OVERRIDE_GFX_VERSION that runs a compiled architecture of the same family on
    `arch` (RDNA2 gfx103x -> 10.3.0, RDNA3 gfx110x -> 11.0.0, Vega APUs gfx90c -> 9.0.0)."""
    for prefix, target, value in (("gfx103", "gfx1030", "10.3.0"), ("gfx110", "gfx1100", "11.0.0"),
                                  ("gfx90c", "gfx900", "9.0.0"), ("gfx902", "gfx900", "9.0.0")):
        if arch.startswith(prefix) and arch != target and target in compiled:
            return value
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _container_fix(facts: dict[str, Any], devices: str) -> str:
    return f" (in a container: run it with {devices})" if facts.get("container") else ""


def _visibility(facts: dict[str, Any]) -> list[Finding]:
    out = []
    for var in VISIBILITY_VARS:
        if var not in facts["env"]:
            continue
        value = facts["env"][var]
        if value.strip() in ("", "-1"):
            out.append(Finding("problem", "visibility", f"{var}={value!r} hides every GPU",
                               f"unset {var}, or set it to the GPU indices to use (e.g. {var}=0)"))
        else:
            out.append(Finding("note", "visibility", f"{var}={value} limits the GPUs the "
                               "runtime shows"))
    return out


def _amd_access(facts: dict[str, Any]) -> list[Finding]:
    nodes = {n["path"]: n for n in facts["nodes"]}
    out = []
    kfd = nodes.get("/dev/kfd", {"exists": False})
    renders = [n for p, n in nodes.items() if p.startswith("/dev/dri/renderD") and n["exists"]]
    run_devices = "--device=/dev/kfd --device=/dev/dri --group-add video --group-add render"
    if not kfd["exists"]:
        drv = facts["kernel_driver"].get("amdgpu")
        why = ("the amdgpu kernel driver is loaded but does not expose compute (kfd)" if drv
               else "the amdgpu kernel driver is not loaded")
        out.append(Finding("problem", "/dev/kfd", f"/dev/kfd does not exist: {why}, so the ROCm "
                           "runtime sees no GPU",
                           "install ROCm's amdgpu driver (amdgpu-dkms) and reboot"
                           + _container_fix(facts, run_devices)))
    elif not kfd["access"]:
        out.append(Finding("problem", "/dev/kfd",
                           f"{facts['user']} cannot read and write /dev/kfd (group "
                           f"{kfd['group']}; {facts['user']}'s groups: "
                           f"{', '.join(facts['groups']) or 'none'})",
                           f"sudo usermod -aG {kfd['group'] or 'render'},video {facts['user']}, "
                           "then log out and in again"))
    else:
        out.append(Finding("ok", "/dev/kfd", f"{facts['user']} can open /dev/kfd"))
    if kfd["exists"]:
        if not renders:
            out.append(Finding("problem", "/dev/dri", "no /dev/dri/renderD* node: the GPU's "
                               "render node is missing", "load the amdgpu driver"
                               + _container_fix(facts, run_devices)))
        elif not any(n["access"] for n in renders):
            groups = sorted({n["group"] for n in renders})
            out.append(Finding("problem", "/dev/dri",
                               f"{facts['user']} cannot open "
                               f"{', '.join(n['path'] for n in renders)}"
                               f" (group {', '.join(groups)}; {facts['user']}'s groups: "
                               f"{', '.join(facts['groups']) or 'none'})",
                               f"sudo usermod -aG {','.join(groups + ['video'])} {facts['user']}, "
                               "then log out and in again"))
        else:
            ok = [n["path"] for n in renders if n["access"]]
            out.append(Finding("ok", "/dev/dri", f"{facts['user']} can open {', '.join(ok)}"))
    return out


def _nvidia_access(facts: dict[str, Any]) -> list[Finding]:
    nodes = {n["path"]: n for n in facts["nodes"]}
    out = []
    ctl = nodes.get("/dev/nvidiactl", {"exists": False})
    if facts["kernel_driver"].get("nvidia") is None and not ctl["exists"]:
        out.append(Finding("problem", "driver", "the NVIDIA kernel driver is not loaded "
                           "(no /proc/driver/nvidia/version, no /dev/nvidiactl)",
                           "install the NVIDIA driver for CUDA " + (facts["runtime_version"] or "")
                           + _container_fix(facts, "--gpus all")))
        return out
    blocked = [p for p, n in nodes.items() if p.startswith("/dev/nvidia") and n["exists"]
               and not n["access"]]
    if blocked:
        out.append(Finding("problem", "/dev/nvidia*", f"{facts['user']} cannot open "
                           f"{', '.join(blocked)}", "ask the administrator for access to the "
                           "NVIDIA device nodes (group " + nodes[blocked[0]]["group"] + ")"))
    return out


def _arch(facts: dict[str, Any], i: int, d: dict[str, Any]) -> list[Finding]:
    compiled = facts["compiled_archs"]
    arch = d["arch"].split(":")[0]
    override = facts["env"].get("HSA_OVERRIDE_GFX_VERSION")
    where = f"gpu:{i} ({d['name']})"
    if facts["flavour"] == "cuda":
        cc = int(arch[3:]) if arch[3:].isdigit() else 0
        built = sorted(int(a[3:]) for a in compiled if a[3:].isdigit())
        if arch in compiled:
            return [Finding("ok", "arch", f"{where} is {arch}, compiled in "
                            f"({', '.join(compiled)})")]
        if built and cc > built[0]:
            return [Finding("ok", "arch", f"{where} is {arch}: runs the PTX of sm_{built[0]} "
                            "compiled just in time at first use")]
        return [Finding("problem", "arch", f"{where} is {arch}, older than every architecture "
                        f"this build has ({', '.join(compiled)})",
                        f"rebuild with --config-settings=cmake.define.HIPGRAD_CUDA_ARCHS={cc}")]
    if facts["flavour"] != "hip":
        return [Finding("ok", "arch", f"{where} reports {d['arch']}, warp size {d['warp_size']}")]
    out = []
    if override is not None:
        target = gfx_from_override(override)
        if target is None:
            out.append(Finding("problem", "arch", f"HSA_OVERRIDE_GFX_VERSION={override!r} is not "
                               "of the form major.minor.stepping", "unset it, or set e.g. 10.3.0"))
        else:
            out.append(Finding("note", "arch", f"HSA_OVERRIDE_GFX_VERSION={override} is set: the "
                               f"runtime presents the GPU as {target}"))
    if arch in compiled:
        out.append(Finding("ok", "arch", f"{where} runs as {arch}, which this build has"))
        return out
    hint = override_for(arch, compiled)
    fix = f"rebuild: pip install . --config-settings=cmake.define.HIPGRAD_HIP_ARCHS={arch}"
    if hint and override is None:
        fix += f" (or try export HSA_OVERRIDE_GFX_VERSION={hint}, unsupported by AMD)"
    out.append(Finding("problem", "arch", f"{where} is {arch}, not in this build's fat binary "
                       f"({', '.join(compiled) or 'none'})", fix))
    return out


def _memory(i: int, d: dict[str, Any]) -> Finding:
    total, free = d.get("total_memory", 0), d.get("free_memory", -1)
    text = f"gpu:{i} has {_gib(total)}" + (f", {_gib(free)} free" if free >= 0 else "")
    if 0 <= free < min(256 * 2**20, total // 20):
        return Finding("warn", "memory", text + ": other processes hold almost all of it",
                       "stop them (rocm-smi / nvidia-smi lists them) or use another GPU")
    return Finding("ok", "memory", text)


def _libraries(facts: dict[str, Any]) -> list[Finding]:
    names = {"hip": ("rocblas", "miopen"), "cuda": ("cublas", "cudnn")}.get(facts["flavour"], ())
    pretty = {"rocblas": "rocBLAS", "miopen": "MIOpen", "cublas": "cuBLAS", "cudnn": "cuDNN"}
    install = {"rocblas": "rocblas-dev", "miopen": "miopen-hip-dev",
               "cublas": "the CUDA toolkit's libcublas-dev (or pip nvidia-cublas)",
               "cudnn": "cuDNN (pip nvidia-cudnn-cu13)"}
    out = []
    for lib in names:
        version = facts["libs"].get(lib, "not found")
        if version == "not found":
            out.append(Finding("note", lib, f"{pretty[lib]} is not in this build: impl='vendor' "
                               "falls back to the handwritten kernels",
                               f"install {install[lib]} and rebuild hipgrad"))
        else:
            out.append(Finding("ok", lib, f"{pretty[lib]} {version}"))
    for v in facts.get("vendor_files", []):
        out.append(Finding(v["level"], v["library"], v["text"], v.get("fix", "")))
    return out


def _gemm(facts: dict[str, Any]) -> list[Finding]:
    out = []
    for r in facts.get("gemm", []):
        what = f"GEMM on {r['device']}, impl={r['impl']}"
        if r["error"]:
            out.append(Finding("problem", "gemm", f"{what} failed: {r['error']}",
                               "see the findings above; HIPGRAD_SYNC_DEBUG=1 names the kernel"))
        elif not r["ok"]:
            out.append(Finding("problem", "gemm", f"{what} ({r['kernel']}) is wrong: max "
                               f"relative error {r['max_rel_err']:.2e} vs NumPy float64",
                               "report it with this output; impl='handwritten' or 'vendor' "
                               "avoids the failing one"))
        else:
            out.append(Finding("ok", "gemm", f"{what} ran {r['kernel']}: max relative error "
                               f"{r['max_rel_err']:.1e}"))
    return out


def diagnose(facts: dict[str, Any]) -> list[Finding]:
    """Findings for the facts gather() returns (any subset a test injects must be complete)."""
    flavour = facts["flavour"]
    out: list[Finding] = []
    if flavour == "off":
        seen = []
        if any(n["path"] == "/dev/kfd" and n["exists"] for n in facts["nodes"]):
            seen.append("an AMD GPU (/dev/kfd exists): use HIPGRAD_GPU=hip")
        if facts["kernel_driver"].get("nvidia"):
            seen.append("an NVIDIA driver: use HIPGRAD_GPU=cuda")
        out.append(Finding("problem", "build", "this hipgrad was built without a GPU backend "
                           "(HIPGRAD_GPU=off): only the CPU runs"
                           + (f"; this machine has {'; '.join(seen)}" if seen else ""),
                           "pip install . --config-settings=cmake.define.HIPGRAD_GPU=hip (AMD) "
                           "or =cuda (NVIDIA)"))
        return out + _gemm(facts)
    runtime = {"hip": "ROCm/HIP", "cuda": "CUDA", "sim": "simulated HIP"}.get(flavour, flavour)
    archs = ", ".join(facts["compiled_archs"]) or ("the host" if flavour == "sim" else "no list")
    out.append(Finding("ok", "build", f"hipgrad {facts['version']}, {flavour} flavour, compiled "
                       f"for {archs}"))
    if flavour == "sim":  # the simulator answers the version queries with "not supported"
        out.append(Finding("ok", "runtime", "simulated HIP runtime (no runtime or driver version)"))
    else:
        out.append(Finding("ok", "runtime", f"{runtime} runtime {facts['runtime_version']}, "
                           f"driver {facts['driver_version']}"))
    if flavour == "sim":
        out.append(Finding("note", "sim", "the simulated device runs the kernels' logic on the "
                           "CPU; it says nothing about a real GPU"))
    out += _visibility(facts)
    if flavour == "hip":
        out += _amd_access(facts)
    elif flavour == "cuda":
        out += _nvidia_access(facts)
    if facts["count_error"]:
        out.append(Finding("problem", "devices", f"the {runtime} runtime found no device: "
                           f"{facts['count_error']}", "see the findings above"))
    elif not facts["devices"]:
        out.append(Finding("problem", "devices", f"the {runtime} runtime reports 0 devices",
                           "see the findings above"))
    for i, d in enumerate(facts["devices"]):
        if not d.get("arch"):
            out.append(Finding("problem", "devices", f"gpu:{i}: the runtime could not read its "
                               "properties", "check the driver (dmesg) and the runtime install"))
            continue
        out += _arch(facts, i, d)
        out.append(_memory(i, d))
    gpus = [u for u in facts["usable"] if u != "cpu"]
    if facts["devices"] and not gpus and not any(f.level == "problem" for f in out):
        out.append(Finding("problem", "devices", f"hipgrad uses no GPU: "
                           f"{facts['unavailable_reason']}", "see the reason above"))
    out += _libraries(facts)
    return out + _gemm(facts)


def broken(findings: list[Finding]) -> bool:
    return any(f.level == "problem" for f in findings)


def report(facts: dict[str, Any], findings: list[Finding]) -> str:
    cpu = facts["cpu"]
    lines = [f"hipgrad doctor: {facts['flavour']} build; CPU {cpu['name']} ({cpu['isa']}, "
             f"{cpu['threads']} threads usable); devices: {', '.join(facts['usable'])}"]
    for f in findings:
        lines.append(f"[{f.level:7}] {f.topic}: {f.text}")
        if f.fix and f.level != "ok":
            lines.append(f"          fix: {f.fix}")
    lines.append("GPU path: " + ("BROKEN (problems above)" if broken(findings) else "works"))
    return "\n".join(lines)


# --- the command: add_arguments(parser) -> run, as in hipgrad.cli ----------------------

def add_arguments(p: Any) -> Any:
    p.add_argument("--json", action="store_true", help="print the facts and findings as JSON")
    p.add_argument("--no-gemm", action="store_true", help="skip the test GEMMs")

    def run(args: Any) -> int:
        import json
        facts = gather(run_gemm=not args.no_gemm)
        findings = diagnose(facts)
        if args.json:
            print(json.dumps({"facts": facts, "findings": [f.__dict__ for f in findings],
                              "broken": broken(findings)}, indent=1, default=str))
        else:
            print(report(facts, findings))
        return 1 if broken(findings) else 0
    return run
