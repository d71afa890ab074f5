"""`hipgrad doctor`: the diagnosis over injected machine facts (AMD, NVIDIA, sim, CPU-only; device
node permissions, architectures missing from the fat binary, vendor files), the vendor file
lookups on fake install trees, and the command itself on this build."""

from __future__ import annotations

import json
import os
import random
import string

import numpy as np
import pytest

import hipgrad as hg
from hipgrad.cli import doctor, doctor_files
from hipgrad.cli import main


def word(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


@pytest.fixture
def r() -> random.Random:
    return random.Random(os.urandom(8))


def node(path, exists=True, access=True, group="render"):
    return {"path": path, "exists": exists, "access": access, "group": group,
            "in_group": access}


def amd_facts(r: random.Random, arch="gfx1030", user=None, **over):
    cu = r.randint(8, 120)
    total = r.randint(4, 64) * 2**30
    facts = {
        "flavour": "hip", "version": "0.1.0",
        "compiled_archs": ["gfx900", "gfx906", "gfx908", "gfx90a", "gfx1030"],
        "runtime_version": "5.2.21153", "driver_version": "5.2.21153", "count_error": "",
        "devices": [{"name": "AMD Radeon " + word(r), "arch": arch + ":sramecc-:xnack-",
                     "warp_size": 32, "multiprocessors": cu, "max_threads_per_block": 1024,
                     "shared_mem_per_block": 65536, "total_memory": total,
                     "free_memory": total // 2}],
        "usable": ["cpu", "gpu:0"], "unavailable_reason": "",
        "libs": {"rocblas": "not found", "miopen": "not found"},
        "env": {}, "kernel_driver": {"amdgpu": "loaded", "nvidia": None},
        "nodes": [node("/dev/kfd"), node("/dev/dri"), node("/dev/dri/renderD128")],
        "user": user or word(r), "groups": ["users", "render", "video"], "container": False,
        "cpu": {"name": "x", "isa": "avx2", "threads": 2}, "vendor_files": [],
        "gemm": [{"device": "gpu:0", "impl": "handwritten", "kernel": "gpu.gemm_tiled",
                  "error": "", "max_rel_err": 1e-7, "ok": True}],
    }
    facts.update(over)
    return facts


def problems(findings, topic=None):
    return [f for f in findings if f.level == "problem" and (topic is None or f.topic == topic)]


def test_working_amd_machine_has_no_problem(r):
    findings = doctor.diagnose(amd_facts(r))
    assert not doctor.broken(findings), [f.text for f in problems(findings)]
    assert any(f.topic == "arch" and f.level == "ok" for f in findings)


def test_arch_missing_from_fat_binary_names_it_and_the_fixes(r):
    arch = r.choice(["gfx1031", "gfx1032", "gfx1034"])
    facts = amd_facts(r, arch=arch, usable=["cpu"],
                      unavailable_reason=f"gpu:0 is {arch} but hipgrad was compiled for ...")
    [p] = problems(doctor.diagnose(facts), "arch")
    assert arch in p.text and "gfx1030" in p.text
    assert f"HIPGRAD_HIP_ARCHS={arch}" in p.fix and "HSA_OVERRIDE_GFX_VERSION=10.3.0" in p.fix
    assert doctor.broken(doctor.diagnose(facts))
    # No family member compiled in: no override to suggest.
    facts["compiled_archs"] = ["gfx900", "gfx90a"]
    [p] = problems(doctor.diagnose(facts), "arch")
    assert "HSA_OVERRIDE" not in p.fix


def test_override_is_reported_and_a_malformed_one_is_a_problem(r):
    facts = amd_facts(r, arch="gfx1030", env={"HSA_OVERRIDE_GFX_VERSION": "10.3.0"})
    findings = doctor.diagnose(facts)
    assert not doctor.broken(findings)
    assert any(f.level == "note" and "gfx1030" in f.text and "HSA_OVERRIDE" in f.text
               for f in findings)
    facts["env"] = {"HSA_OVERRIDE_GFX_VERSION": word(r)}
    assert "HSA_OVERRIDE_GFX_VERSION" in problems(doctor.diagnose(facts), "arch")[0].text


def test_gfx_from_override_against_the_major_minor_stepping_rule(r):
    for _ in range(20):
        major, minor, step = r.randint(8, 12), r.randint(0, 15), r.randint(0, 15)
        want = "gfx" + str(major) + "0123456789abcdef"[minor] + "0123456789abcdef"[step]
        assert doctor.gfx_from_override(f"{major}.{minor}.{step}") == want
    assert doctor.gfx_from_override("9.0.10") == "gfx90a"
    assert doctor.gfx_from_override("10.3") is None
    assert doctor.gfx_from_override("10.16.0") is None


def test_kfd_without_access_names_user_group_and_usermod(r):
    user, group = word(r), word(r, 5)
    facts = amd_facts(r, user=user, groups=["users"], usable=["cpu"], devices=[],
                      count_error="hipErrorNoDevice: no ROCm-capable device is detected",
                      nodes=[node("/dev/kfd", access=False, group=group), node("/dev/dri"),
                             node("/dev/dri/renderD128", access=False, group=group)])
    findings = doctor.diagnose(facts)
    [kfd] = problems(findings, "/dev/kfd")
    assert user in kfd.text and group in kfd.text and "users" in kfd.text
    assert kfd.fix.startswith(f"sudo usermod -aG {group},video {user}")
    [dri] = problems(findings, "/dev/dri")
    assert "renderD128" in dri.text and group in dri.fix
    assert problems(findings, "devices")  # the runtime's own error is reported too


def test_kfd_missing_driver_and_container_hint(r):
    facts = amd_facts(r, usable=["cpu"], devices=[], count_error="hipErrorNoDevice: x",
                      kernel_driver={"amdgpu": None, "nvidia": None}, container=True,
                      nodes=[node("/dev/kfd", exists=False)])
    [kfd] = problems(doctor.diagnose(facts), "/dev/kfd")
    assert "not loaded" in kfd.text and "--device=/dev/kfd" in kfd.fix
    facts["container"] = False
    facts["kernel_driver"] = {"amdgpu": "6.7.0", "nvidia": None}
    [kfd] = problems(doctor.diagnose(facts), "/dev/kfd")
    assert "is loaded" in kfd.text and "--device" not in kfd.fix


def test_render_node_missing_and_accessible_one_among_several(r):
    facts = amd_facts(r, nodes=[node("/dev/kfd"), node("/dev/dri")])
    assert "renderD" in problems(doctor.diagnose(facts), "/dev/dri")[0].text
    facts["nodes"] += [node("/dev/dri/renderD128", access=False),
                       node("/dev/dri/renderD129")]
    assert not problems(doctor.diagnose(facts), "/dev/dri")


@pytest.mark.parametrize("value", ["", "-1"])
def test_visibility_variable_hiding_every_gpu(r, value):
    var = r.choice(doctor.VISIBILITY_VARS)
    [p] = problems(doctor.diagnose(amd_facts(r, env={var: value})), "visibility")
    assert var in p.text and f"unset {var}" in p.fix
    assert not problems(doctor.diagnose(amd_facts(r, env={var: "0"})), "visibility")


def test_low_free_memory_is_a_warning(r):
    facts = amd_facts(r)
    facts["devices"][0]["free_memory"] = r.randint(0, 100) * 2**20
    [w] = [f for f in doctor.diagnose(facts) if f.topic == "memory"]
    assert w.level == "warn" and "free" in w.text


def test_gemm_failure_and_wrong_result_are_problems(r):
    err = r.uniform(1e-3, 1.0)
    facts = amd_facts(r, gemm=[
        {"device": "gpu:0", "impl": "handwritten", "kernel": "k1", "error": "",
         "max_rel_err": err, "ok": False},
        {"device": "gpu:0", "impl": "vendor", "kernel": "", "ok": False, "max_rel_err": None,
         "error": "BackendError: rocblas_status_internal_error"}])
    ps = problems(doctor.diagnose(facts), "gemm")
    assert len(ps) == 2 and f"{err:.2e}" in ps[0].text and "rocblas_status" in ps[1].text


@pytest.mark.parametrize("arch,level", [("sm_90", "ok"), ("sm_86", "ok"), ("sm_75", "problem")])
def test_nvidia_arch_against_compiled_and_ptx(r, arch, level):
    facts = amd_facts(r, flavour="cuda", compiled_archs=["sm_80", "sm_90"],
                      libs={"cublas": "13.0.1", "cudnn": "not found"},
                      kernel_driver={"amdgpu": None, "nvidia": "NVRM version: 580.1"},
                      nodes=[node("/dev/nvidiactl"), node("/dev/nvidia0")])
    facts["devices"][0]["arch"] = arch
    [a] = [f for f in doctor.diagnose(facts) if f.topic == "arch"]
    assert a.level == level and arch in a.text
    if level == "problem":
        assert "HIPGRAD_CUDA_ARCHS=75" in a.fix
    lib = {f.topic: f for f in doctor.diagnose(facts)}
    assert lib["cublas"].level == "ok" and "13.0.1" in lib["cublas"].text
    assert lib["cudnn"].level == "note" and "falls back" in lib["cudnn"].text


def test_nvidia_without_driver(r):
    facts = amd_facts(r, flavour="cuda", compiled_archs=["sm_80"], devices=[], usable=["cpu"],
                      count_error="cudaErrorInsufficientDriver: x", runtime_version="13.0",
                      kernel_driver={"amdgpu": None, "nvidia": None}, nodes=[])
    [p] = problems(doctor.diagnose(facts), "driver")
    assert "CUDA 13.0" in p.fix


def test_cpu_build_says_so_and_what_the_machine_has(r):
    facts = amd_facts(r, flavour="off", compiled_archs=[], devices=[], usable=["cpu"],
                      gemm=[], nodes=[node("/dev/kfd")])
    [p] = problems(doctor.diagnose(facts))
    assert "HIPGRAD_GPU=off" in p.text and "/dev/kfd" in p.text and "HIPGRAD_GPU=hip" in p.fix


# --- vendor file lookups on fake install trees -------------------------------------------------

def test_tensile_lookup_follows_rocblas_search_order(tmp_path, r):
    lib = tmp_path / "rocm" / "lib"
    folder = lib / "rocblas" / "library"
    folder.mkdir(parents=True)
    so = lib / "librocblas.so.0"
    so.write_text("")
    (folder / "TensileLibrary_lazy_gfx90a.dat").write_text("")
    assert doctor_files.tensile_folder(str(so), {}) == str(folder)
    assert doctor_files.tensile_files(str(folder), "gfx90a")[0].endswith("lazy_gfx90a.dat")
    assert doctor_files.tensile_files(str(folder), "gfx1031") == []
    # Older layout: TensileLibrary.dat with per-arch code objects.
    (folder / "TensileLibrary.dat").write_text("")
    (folder / "Kernels.so-000-gfx1031.co").write_text("")
    got = doctor_files.tensile_files(str(folder), "gfx1031")
    assert got[0].endswith("TensileLibrary.dat") and got[1].endswith("gfx1031.co")
    other = tmp_path / word(r)
    env = {"ROCBLAS_TENSILE_LIBPATH": str(other)}
    assert doctor_files.tensile_folder(str(so), env) == str(other)


def test_lookups_report_missing_tensile_and_kdb(tmp_path, r):
    lib = tmp_path / "lib"
    (lib / "rocblas" / "library").mkdir(parents=True)
    (lib / "rocblas" / "library" / "TensileLibrary_lazy_gfx906.dat").write_text("")
    db = tmp_path / "share" / "miopen" / "db"
    db.mkdir(parents=True)
    cu = r.randint(65, 200)
    (db / f"gfx90a{cu:x}.kdb").write_text("")
    loaded = {"librocblas": str(lib / "librocblas.so.4"), "libMIOpen": str(lib / "libMIOpen.so.1")}
    libs = {"rocblas": "4.0.0", "miopen": "3.0.0"}
    rows = doctor_files.lookups(0, "gfx90a:sramecc+:xnack-", cu, libs, loaded, {})
    by = {x["library"]: x for x in rows}
    assert by["rocblas"]["level"] == "problem"
    assert "TensileLibrary_lazy_gfx906.dat" in by["rocblas"]["text"]
    assert by["miopen"]["level"] == "ok" and f"gfx90a{cu:x}.kdb" in by["miopen"]["text"]
    small = r.randint(1, 64)
    rows = doctor_files.lookups(0, "gfx906", small, libs, loaded, {})
    by = {x["library"]: x for x in rows}
    assert by["rocblas"]["level"] == "ok"
    assert by["miopen"]["level"] == "warn" and f"gfx906_{small}.kdb" in by["miopen"]["text"]
    assert doctor_files.lookups(0, "gfx906", 60, {"rocblas": "not found"}, loaded, {}) == []


def test_loaded_libraries_reads_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /opt/rocm-6.2/lib/librocblas.so.4.2\n"
                    "7f02-7f03 r-xp 0 08:01 2 /usr/lib/libc.so.6\n7f04-7f05 rw-p 0 0 0\n")
    assert doctor_files.loaded_libraries(str(maps)) == {
        "librocblas": "/opt/rocm-6.2/lib/librocblas.so.4.2"}


# --- the command on this build -----------------------------------------------------------------

def test_doctor_command_on_this_build(capsys):
    code = main(["doctor", "--json"])
    out = json.loads(capsys.readouterr().out)
    facts = out["facts"]
    assert facts["flavour"] == hg.build_info()["gpu_platform"]
    assert code == (1 if out["broken"] else 0)
    assert out["broken"] == any(f["level"] == "problem" for f in out["findings"])
    # One GEMM per usable device and impl, each checked against float64 and passing.
    assert {(g["device"], g["impl"]) for g in facts["gemm"]} == {
        (d, i) for d in hg.devices() for i in ("handwritten", "vendor")}
    assert all(g["ok"] and g["max_rel_err"] < 1e-4 for g in facts["gemm"]), facts["gemm"]
    if len(hg.devices()) == 1:  # no GPU here: the doctor must say why and fail
        assert out["broken"]
        texts = " ".join(f["text"] for f in out["findings"] if f["level"] == "problem")
        if facts["flavour"] == "off":
            assert "HIPGRAD_GPU=off" in texts
        else:  # e.g. CI's AMD flavour without a GPU
            assert "no device" in texts or "/dev/kfd" in texts or "0 devices" in texts
    else:
        assert not out["broken"], out["findings"]
        assert facts["devices"][0]["warp_size"] in (32, 64)


def test_doctor_text_report_has_every_problem_and_its_fix(capsys):
    code = main(["doctor", "--no-gemm"])
    text = capsys.readouterr().out
    facts = doctor.gather(run_gemm=False)
    findings = doctor.diagnose(facts)
    for f in findings:
        assert f"{f.topic}: {f.text}" in text
        if f.level == "problem":
            assert f"fix: {f.fix}" in text
    assert code == (1 if doctor.broken(findings) else 0)
    assert text.strip().endswith("works") == (code == 0)


def test_gemm_checks_catch_a_wrong_kernel(monkeypatch):
    from hipgrad import ops
    real = ops.gemm

    def off_by_a_bit(a, b, **kw):
        out = real(a, b, **kw).numpy()
        out[np.unravel_index(np.argmax(np.abs(out)), out.shape)] *= 1.01
        return hg.tensor(out)
    monkeypatch.setattr(ops, "gemm", off_by_a_bit)
    rows = doctor.gemm_checks(["cpu"], ("handwritten",))
    assert not rows[0]["ok"] and rows[0]["max_rel_err"] > 1e-3


def test_sim_flavour_is_named_and_its_warp_size_reported(r):
    warp = r.choice([32, 64])
    facts = amd_facts(r, flavour="sim", compiled_archs=[], libs={}, nodes=[],
                      runtime_version="unknown", driver_version="unknown")
    facts["devices"][0].update(arch="gfx90a (simulated)", warp_size=warp)
    findings = doctor.diagnose(facts)
    assert not doctor.broken(findings)
    assert any(f.topic == "sim" and "simulated" in f.text for f in findings)
    [a] = [f for f in findings if f.topic == "arch"]
    assert f"warp size {warp}" in a.text
