"""The simulated device itself (HIPGRAD_GPU=sim builds only): shuffle and vote rules at the
process's wavefront width, the wave-32 reduction bug class, bounds errors naming the kernel,
deadlocks, and the reversed schedule that exposes shared-memory races. The scenarios are kernels
in csrc/hip/sim/selftest.hip, run through hg_sim_selftest (ctypes)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

import hipgrad as hg

pytestmark = pytest.mark.skipif(hg.build_info()["facts"].get("gpu.platform") != "sim",
                                reason="only the simulated device (HIPGRAD_GPU=sim) has these")
WARP = int(hg.build_info()["facts"].get("gpu.warp_size", "0"))
RACECHECK = hg.build_info()["facts"].get("gpu.sim_racecheck") == "on"
CHECKS = os.environ.get("HIPGRAD_SIM_CHECK", "1") != "0"


def run(name: str) -> tuple[int, list[float], str]:
    lib = ctypes.CDLL(hg._C.__file__)
    fn = lib.hg_sim_selftest
    fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_double), ctypes.c_char_p, ctypes.c_int]
    result = (ctypes.c_double * 4)(*([float("nan")] * 4))
    msg = ctypes.create_string_buffer(2048)
    status = fn(name.encode(), result, msg, 2048)
    assert status >= 0, msg.value.decode()
    return status, list(result), msg.value.decode()


def test_shuffles_and_votes_follow_hip_rules_at_this_wavefront():
    status, res, msg = run("shuffle_rules")
    assert status == 0, msg
    assert res[0] == 0, f"{res[0]:.0f} lane checks failed at warpSize {WARP}"


def test_full_warp_reduction_sums_every_lane():
    status, res, msg = run("warp_sum")
    assert status == 0, msg
    full = WARP * (WARP + 1) / 2
    assert res[: 128 // WARP] == [full] * (128 // WARP)


def test_reduction_from_offset_16_is_wrong_only_on_wave64():
    status, res, msg = run("warp_sum_from16")
    assert status == 0, msg
    assert res[0] == 32 * 33 / 2  # lanes 0..31 only
    if WARP == 64:
        assert res[0] != 64 * 65 / 2


def test_read_past_an_allocation_names_kernel_thread_and_offset():
    status, _, msg = run("read_past_end")
    assert status != 0
    assert "sim_read_past_end" in msg and "thread (3,0,0)" in msg and "byte offset 4000" in msg, msg


def test_write_into_the_slack_after_an_allocation_is_reported():
    status, _, msg = run("write_past_end")
    assert status != 0
    assert "sim_write_past_end" in msg and "byte offset 4004" in msg, msg


def test_shared_memory_past_the_dynamic_size_is_reported():
    status, _, msg = run("shared_past_end")
    assert status != 0
    assert "sim_shared_past_end" in msg and "shared memory" in msg, msg


def test_static_shared_memory_beyond_64_kib_is_refused():
    status, _, msg = run("shared_too_big")
    assert status != 0
    assert "big" in msg and "65536" in msg and "sim_shared_too_big" in msg, msg


def test_barrier_against_a_shuffle_deadlocks_only_on_wave64():
    status, res, msg = run("split_barrier")
    if WARP == 64:
        assert status != 0 and "deadlock" in msg and "sim_split_barrier" in msg, msg
    else:
        assert status == 0, msg
        assert res[0] == 0.0 and res[1] == 1.0  # lanes 0, 1 passed the barrier with their values


@pytest.mark.skipif(not (RACECHECK and CHECKS), reason="needs the racecheck build and checks on")
def test_read_past_a_static_shared_array_is_reported():
    status, _, msg = run("static_shared_past_end")
    assert status != 0
    assert "outside the block's declared shared memory" in msg and "sim_static_shared_past_end" in msg, msg


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_shared_memory_race_is_reported_or_reads_poison(order):
    """Thread 1 reads what thread 0 wrote with no barrier between. In thread order the racecheck
    reports it (in a build without racecheck the read sees the write); reversed, thread 1 reads
    first and gets the poisoned bytes (NaN), which is how CI's reversed run exposes races."""
    code = ("from tests.gpu.test_sim import run; import math, json; s, r, m = run('racy'); "
            "print(json.dumps([s, 'nan' if math.isnan(r[0]) else r[0], m]))")
    env = dict(os.environ, HIPGRAD_SIM_ORDER=order)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), timeout=120)
    assert out.returncode == 0, out.stderr
    status, value, msg = json.loads(out.stdout.strip().splitlines()[-1])
    if order == "reverse":
        assert status == 0 and value == "nan", (status, value, msg)
    elif RACECHECK and CHECKS:
        assert status != 0 and "shared-memory race" in msg and "sim_racy" in msg, msg
        assert "thread (1,0,0) reads __shared__ s + 0 bytes" in msg and "thread (0,0,0)" in msg, msg
    else:
        assert status == 0 and value == 42.0, (status, value, msg)
