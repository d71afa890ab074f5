"""hipgrad's CPU thread pool (csrc/cpu/parallel.h): every index of a parallel-for runs exactly
once whatever the size and thread count, exceptions in a region surface as Python exceptions,
nested regions run on their caller's thread, and set_num_threads bounds the participants.
No timing asserts: the machine these run on may be busy."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import _C

SIZES = [0, 1, 2, 3, 7, 8, 9, 31, 33, 127, 1000, 4099]


@pytest.fixture(autouse=True)
def _restore_threads():
    n = hg.get_num_threads()
    yield
    hg.set_num_threads(n)


@pytest.mark.parametrize("threads", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("n", SIZES)
def test_every_index_visited_once(n, threads):
    counts, max_slot, _ = _C._parallel_test(n, threads)
    assert counts.shape == (n, 1)
    np.testing.assert_array_equal(counts, np.ones((n, 1), np.int32))
    assert 0 <= max_slot < threads


@pytest.mark.parametrize("threads", [2, 3])
def test_slow_tasks_are_shared_and_each_runs_once(threads):
    # Tasks that sleep let a worker join while the caller is busy: more than one slot runs them.
    rng = np.random.default_rng()
    n = int(rng.integers(9, 40))
    counts, max_slot, _ = _C._parallel_test(n, threads, task_us=300.0)
    np.testing.assert_array_equal(counts[:, 0], np.ones(n, np.int32))
    assert max_slot < threads


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_exception_in_a_task_is_a_python_exception(threads):
    rng = np.random.default_rng()
    n = int(rng.integers(50, 500))
    at = int(rng.integers(0, n))
    with pytest.raises(ValueError, match=f"task {at} failed on purpose"):
        _C._parallel_test(n, threads, throw_at=at, task_us=20.0)
    # The pool is usable afterwards and still visits everything once.
    counts, _, _ = _C._parallel_test(n, threads)
    np.testing.assert_array_equal(counts[:, 0], np.ones(n, np.int32))


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("n,inner", [(1, 5), (7, 3), (33, 17)])
def test_nested_regions_run_on_the_callers_thread(n, inner, threads):
    counts, max_slot, nested_parallel = _C._parallel_test(n, threads, nested=inner)
    np.testing.assert_array_equal(counts, np.ones((n, inner), np.int32))
    if n > 1:  # an outer region of one task runs on the caller alone: its inner one may spread
        assert nested_parallel == 0  # no inner index ran on another slot than its caller's
    assert max_slot < threads


def test_regions_from_two_python_threads():
    # A second caller while a region runs: its region runs on its own thread, no index lost.
    errors, results = [], []

    def work():
        try:
            for _ in range(20):
                c, _, _ = _C._parallel_test(257, 2, task_us=5.0)
                results.append(int(c.sum()))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert results == [257] * 60


def test_set_num_threads_is_the_upper_bound():
    hg.set_num_threads(1)
    _, max_slot, _ = _C._parallel_test(64, hg.get_num_threads(), task_us=50.0)
    assert max_slot == 0
    hg.set_num_threads(3)
    assert hg.get_num_threads() == 3
    counts, max_slot, _ = _C._parallel_test(64, hg.get_num_threads(), task_us=50.0)
    assert max_slot <= 2 and int(counts.sum()) == 64
    with pytest.raises(ValueError, match="set_num_threads: n must be >= 1"):
        hg.set_num_threads(0)


def test_pool_stats_describe_the_pool():
    s = _C._thread_pool_stats()
    assert set(s) >= {"regions", "serial_regions", "stalled_regions", "degradations", "workers",
                      "threads_now", "default_threads", "degraded", "spin_us", "spin_source"}
    assert 1 <= s["default_threads"] <= len(os.sched_getaffinity(0))
    before = _C._thread_pool_stats()["regions"] + _C._thread_pool_stats()["serial_regions"]
    _C._parallel_test(100, 2)
    after = _C._thread_pool_stats()
    assert after["regions"] + after["serial_regions"] > before


def _run(code, env_extra, cpus=None):
    # The hipgrad under test (the dev tree's or the installed one), not the source tree.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(hg.__file__))))
    for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(k, None)
    env.update(env_extra)
    cmd = [sys.executable, "-W", "error", "-c", code]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


STATS = "import hipgrad as hg; s = hg._C._thread_pool_stats(); " \
        "print(hg.get_num_threads(), s['spin_us'], s['spin_source'])"


def test_default_threads_follow_affinity_and_omp_num_threads():
    if len(os.sched_getaffinity(0)) < 2 or not os.path.exists("/usr/bin/taskset"):
        pytest.skip("needs 2 CPUs and taskset")
    assert _run(STATS, {}, cpus="0")[0] == "1"  # one CPU in the mask: one thread
    assert _run(STATS, {"OMP_NUM_THREADS": "3"})[0] == "3"  # the user's explicit setting wins


@pytest.mark.parametrize("env,spin,source", [
    ({}, "50.0", "default"),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, "0.0", "OMP_WAIT_POLICY"),
    ({"OMP_WAIT_POLICY": "active"}, "2000.0", "OMP_WAIT_POLICY"),
    ({"GOMP_SPINCOUNT": "10000"}, "10.0", "GOMP_SPINCOUNT"),
])
def test_wait_policy_honours_the_users_openmp_settings(env, spin, source):
    _, got_spin, got_source = _run(STATS, env)
    assert (got_spin, got_source) == (spin, source)


@pytest.mark.parametrize("impl", ["vendor", "handwritten"])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gemm_split_over_the_pool_matches_float64(impl, trans_a, trans_b, threads):
    # Large enough that both GEMMs split C into blocks over the pool; odd sizes cross block edges.
    hg.set_num_threads(threads)
    rng = np.random.default_rng()
    M, N, K = (int(v) for v in rng.integers(150, 330, 3))
    if rng.random() < 0.5:
        M, N = N, M  # rows or columns split
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    out = hg.ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, impl=impl).numpy()
    ref = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.sqrt(K))


@pytest.mark.parametrize("threads", [2, 3])
def test_reductions_do_not_depend_on_which_thread_ran_a_part(threads):
    # Partial sums have a fixed split (by the thread count, not by the thread that ran a part):
    # repeated runs give bit-identical weight gradients, matching float64 closely.
    hg.set_num_threads(threads)
    rng = np.random.default_rng()
    x = rng.standard_normal((7, 3, 13, 11)).astype(np.float32)
    dy = rng.standard_normal((7, 5, 11, 9)).astype(np.float32)
    runs = [hg.ops.conv2d_backward_weight(dy, x, (5, 3, 3, 3), impl="handwritten").numpy()
            for _ in range(5)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])
    cols = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), (3, 3), axis=(2, 3))
    ref = np.einsum("nkpq,ncpqrs->kcrs", dy.astype(np.float64), cols)
    np.testing.assert_allclose(runs[0], ref, rtol=1e-4, atol=1e-4)
    db = [hg.ops.bias_backward(dy, impl="handwritten").numpy() for _ in range(3)]
    np.testing.assert_array_equal(db[1], db[0])
    np.testing.assert_allclose(db[0], dy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-4)


def test_cpu_sources_use_the_pool_not_openmp_threads():
    # The build compiles with -fopenmp-simd only: an `omp parallel` region would silently run on
    # one thread. CPU kernels thread through csrc/cpu/parallel.h.
    root = os.path.join(os.path.dirname(__file__), "..", "csrc")
    if not os.path.isdir(root):
        pytest.skip("no source tree next to the tests")
    bad = []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith((".cpp", ".h", ".inc")):
                with open(os.path.join(d, f), encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                for word in ("#pragma omp parallel", "#pragma omp for", "#pragma omp barrier",
                             "omp_get_thread_num", "omp_get_num_threads", "omp_in_parallel"):
                    if word in text:
                        bad.append(f"{os.path.relpath(os.path.join(d, f), root)}: {word}")
    assert not bad, "use hg::cpu::parallel_for (csrc/cpu/parallel.h) instead: " + "; ".join(bad)


def test_reductions_do_not_depend_on_what_the_pool_gets():
    """Conv backward-weight and attention backward sum in an order fixed by set_num_threads,
    not by how many threads the pool could get for this call (it runs on fewer under load)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((6, 8, 12, 12)).astype(np.float32)
    q, k, v, do = (rng.standard_normal((1, 1, 200, 32)).astype(np.float32) for _ in range(4))
    out, lse = hg.ops.attention(q, k, v, causal=True)

    def both():
        dw = hg.ops.conv2d_backward_weight(dy, x, w.shape, padding=1, impl="handwritten").numpy()
        dq = hg.ops.attention_backward(do, q, k, v, out, lse, causal=True, scale=None,
                                       impl="handwritten")[0].numpy()
        return dw, dq

    first = both()
    for _ in range(12):
        for a, b in zip(first, both()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads", [2, 3, 4, 8, 9, 64])
def test_range_split_covers_once_and_ends_short(threads):
    # parallel_range's ranges: increasing, covering [0, blocks) once, at most 256 of them; up to
    # 8 threads the last ranges are short (a late thread leaves little to wait for), above that
    # they are equal.
    rng = np.random.default_rng()
    for blocks in [1, 2, threads, 4 * threads, 4 * threads + 1, int(rng.integers(5, 200)),
                   int(rng.integers(1000, 10**7))]:
        start = np.asarray(_C._range_split(blocks, threads))
        lens = np.diff(start)
        assert start[0] == 0 and start[-1] == blocks
        assert (lens > 0).all() and len(lens) <= 256
        if threads <= 8 and blocks > 4 * threads:
            assert lens[-1] <= max(1, blocks // (16 * threads)) + 1
            assert lens.max() <= -(-blocks // (2 * threads))
        else:
            assert len(lens) == min(blocks, 4 * threads, 256)
            assert lens.max() - lens.min() <= 1


BACK_TO_BACK = ("import hipgrad as hg; from hipgrad import _C; hg.set_num_threads(2); "
                "seen = set()\n"
                "for _ in range(300):\n"
                "    _C._parallel_test(64, 2); s = _C._thread_pool_stats(); seen.add(s['spin_now_us'])\n"
                "print(min(seen), max(seen), s['spin_us'])")


@pytest.mark.parametrize("env", [{}, {"OMP_WAIT_POLICY": "passive"}, {"GOMP_SPINCOUNT": "10000"}])
def test_idle_spin_adapts_only_without_a_users_wait_policy(env):
    # Back-to-back regions: with no wait policy set, idle workers spin for the policy's 50 us up
    # to 1 ms (0 while the pool has fallen back to one thread on a busy machine); a policy the
    # user set is kept exactly (or 0 during a fall-back).
    lo, hi, base = (float(v) for v in _run(BACK_TO_BACK, env))
    assert lo >= 0.0 and hi <= (1000.0 if not env else base)
    assert all(v in (0.0, base) for v in (lo, hi)) or not env
    if not env:
        assert hi == 0.0 or hi >= base
