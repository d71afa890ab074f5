"""hipgrad.device_info: the CPU as this process may use it (fake /proc and cgroup trees, and the
real machine against independent reads), GPUs from the runtime's properties."""

from __future__ import annotations

import os
import random

import pytest

import hipgrad as hg
from hipgrad import sysinfo


def fake_root(tmp_path, *, model, cpu_max=None, mem_max=None, total_kib, avail_kib, cores,
              v1=False):
    """A /proc + /sys tree: `cores` maps cpu index -> (package, core)."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/cpuinfo").write_text(
        "".join(f"processor\t: {i}\nvendor_id\t: X\nmodel name\t: {model}\nflags\t\t: fpu\n\n"
                for i in cores))
    (tmp_path / "proc/meminfo").write_text(
        f"MemTotal:       {total_kib} kB\nMemFree:   1 kB\nMemAvailable:   {avail_kib} kB\n")
    if v1:
        (tmp_path / "proc/self/cgroup").write_text("4:cpu,cpuacct:/docker/abc\n")
        (tmp_path / "sys/fs/cgroup/cpu").mkdir(parents=True)
        (tmp_path / "sys/fs/cgroup/memory").mkdir(parents=True)
        if cpu_max:
            q, p = cpu_max
            (tmp_path / "sys/fs/cgroup/cpu/cpu.cfs_quota_us").write_text(f"{q}\n")
            (tmp_path / "sys/fs/cgroup/cpu/cpu.cfs_period_us").write_text(f"{p}\n")
        (tmp_path / "sys/fs/cgroup/memory/memory.limit_in_bytes").write_text(
            f"{mem_max if mem_max else 9223372036854771712}\n")
    else:
        (tmp_path / "proc/self/cgroup").write_text("0::/user.slice/job.scope\n")
        own = tmp_path / "sys/fs/cgroup/user.slice/job.scope"
        own.mkdir(parents=True)
        (own / "cpu.max").write_text(f"{cpu_max[0]} {cpu_max[1]}\n" if cpu_max else "max 100000\n")
        (own / "memory.max").write_text(f"{mem_max}\n" if mem_max else "max\n")
    for i, (pkg, core) in cores.items():
        topo = tmp_path / f"sys/devices/system/cpu/cpu{i}/topology"
        topo.mkdir(parents=True)
        (topo / "core_id").write_text(f"{core}\n")
        (topo / "physical_package_id").write_text(f"{pkg}\n")
    return tmp_path


@pytest.mark.parametrize("v1", [False, True])
def test_cpu_info_from_a_fake_machine(tmp_path, v1):
    r = random.Random(os.urandom(8))
    n_cores = r.randint(2, 16)
    smt = r.choice([1, 2])
    cores = {c * smt + t: (0, c) for c in range(n_cores) for t in range(smt)}
    affinity = set(r.sample(sorted(cores), r.randint(1, len(cores))))
    quota_cpus = r.randint(1, 4)
    total_kib = r.randint(2**20, 2**26)
    limit = r.randint(2**28, 2**33)
    model = f"Fake CPU {r.randint(1000, 9999)}"
    root = fake_root(tmp_path, model=model, cpu_max=(quota_cpus * 50000, 50000), mem_max=limit,
                     total_kib=total_kib, avail_kib=total_kib // 2, cores=cores, v1=v1)
    info = sysinfo.cpu_info(root, affinity)
    usable = min(len(affinity), quota_cpus)
    physical = len({cores[c] for c in affinity})
    assert info["name"] == model
    assert info["threads"] == usable and info["affinity_cpus"] == len(affinity)
    assert info["multiprocessors"] == min(usable, physical)
    assert info["cgroup_cpu_limit"] == pytest.approx(quota_cpus)
    assert info["total_memory"] == min(total_kib * 1024, limit)
    assert info["machine_memory"] == total_kib * 1024
    assert info["free_memory"] == total_kib // 2 * 1024


def test_cpu_info_without_limits(tmp_path):
    cores = {0: (0, 0), 1: (0, 0), 2: (0, 1), 3: (0, 1)}
    root = fake_root(tmp_path, model="M", total_kib=1 << 22, avail_kib=1, cores=cores)
    info = sysinfo.cpu_info(root, {0, 1, 2, 3})
    assert info["threads"] == 4 and info["multiprocessors"] == 2
    assert info["cgroup_cpu_limit"] is None and info["total_memory"] == (1 << 22) * 1024


def test_cpu_device_info_on_this_machine():
    info = hg.device_info("cpu")
    for key in ("name", "arch", "warp_size", "multiprocessors", "total_memory"):
        assert key in info
    assert info["threads"] <= len(os.sched_getaffinity(0))
    assert 1 <= info["multiprocessors"] <= info["threads"]
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < info["total_memory"] <= total
    assert info["isa"] == hg.build_info()["facts"]["cpu.isa"]
    assert info["warp_size"] * 4 in (16, 32, 64)  # float32 lanes of SSE/NEON, AVX2, AVX-512


@pytest.mark.parametrize("bad", ["gpu:x", "cuda:0", "", 0, None, "gpu:-1"])
def test_device_info_refuses_bad_names(bad):
    with pytest.raises(ValueError, match="device_info: device must be"):
        hg.device_info(bad)


def test_gpu_device_info_matches_the_runtime_or_says_why():
    if len(hg.devices()) == 1:
        with pytest.raises(ValueError, match="gpu:0 is not usable") as e:
            hg.device_info("gpu:0")
        assert hg.gpu_unavailable_reason() in str(e.value)
        return
    probe = hg._C._gpu_probe()
    for i, name in enumerate(hg.devices()[1:]):
        info = hg.device_info(name)
        assert info["warp_size"] in (32, 64) and info["multiprocessors"] > 0
        assert info["arch"] == probe["devices"][i]["arch"] != ""
        assert info["total_memory"] == probe["devices"][i]["total_memory"] > 0
    with pytest.raises(ValueError, match="not usable"):
        hg.device_info(f"gpu:{len(hg.devices()) - 1}")
