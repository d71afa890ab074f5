"""The GPU runtime layer: caching allocator statistics, poisoning, copies, out-of-memory."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg

DEV = "gpu:0"


def test_build_facts_name_the_device():
    facts = hg.build_info()["facts"]
    assert facts["gpu.platform"] in ("hip", "cuda", "sim")
    assert facts["gpu.device"] and facts["gpu.arch"]
    assert int(facts["gpu.warp_size"]) in (32, 64)
    if facts["gpu.platform"] == "sim":  # the simulated device: the wavefront chosen at start
        import os
        assert int(facts["gpu.warp_size"]) == int(os.environ.get("HIPGRAD_SIM_WARP", "64"))
        assert facts["gpu.arch"].endswith("(simulated)")
    assert hg.devices()[1] == DEV


def test_memory_stats_count_live_bytes_and_reuse_the_cache():
    hg.synchronize(DEV)
    hg.empty_cache(DEV)
    base = hg.memory_stats(DEV)
    t = hg.empty((1000, 1000), device=DEV)  # 4 MB: the large pool
    s = hg.memory_stats(DEV)
    assert s["current"] == base["current"] + 4_000_000
    assert s["allocations"] == base["allocations"] + 1
    assert s["peak"] >= s["current"] and s["reserved"] >= s["current"]
    reserved = s["reserved"]
    del t
    s = hg.memory_stats(DEV)
    assert s["current"] == base["current"] and s["reserved"] == reserved  # cached, not freed
    t = hg.empty((999, 1000), device=DEV)  # same 2 MiB bin: served from the cache
    assert hg.memory_stats(DEV)["reserved"] == reserved
    del t
    hg.reset_peak_memory_stats(DEV)
    assert hg.memory_stats(DEV)["peak"] == hg.memory_stats(DEV)["current"]
    hg.empty_cache(DEV)
    assert hg.memory_stats(DEV)["reserved"] < reserved


def test_small_blocks_are_reused_by_bin():
    hg.empty_cache(DEV)
    t = hg.empty((100,), device=DEV)
    reserved = hg.memory_stats(DEV)["reserved"]
    del t
    t = hg.empty((120,), device=DEV)  # 400 and 480 bytes share the 512-byte bin
    assert hg.memory_stats(DEV)["reserved"] == reserved
    del t


def test_new_blocks_are_poisoned_in_tests():
    t = hg.empty((257,), device=DEV)
    assert np.all(np.isnan(t.numpy()))


def test_copies_round_trip(rng):
    x = rng.standard_normal((33, 65)).astype(np.float32)
    g = hg.tensor(x, device=DEV)
    g2 = g.to(DEV)  # device to device
    np.testing.assert_array_equal(g2.numpy(), x)
    z = hg.zeros((5, 7), device=DEV)
    np.testing.assert_array_equal(z.numpy(), np.zeros((5, 7), np.float32))


def test_out_of_memory_is_a_memory_error_naming_the_size():
    with pytest.raises(MemoryError, match=r"out of memory allocating \d+ bytes; the device has"):
        hg.empty((2**48,), device=DEV)  # a petabyte
    assert hg.zeros((3,), device=DEV).numpy().tolist() == [0.0, 0.0, 0.0]  # still usable
