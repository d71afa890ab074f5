"""impl="auto" chooses by measurement, persists the choice, and survives bad cache files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hipgrad as hg
from hipgrad.profiling import tuning


TUNE_ROUNDS = 3  # csrc/core/dispatch.h kTuneRounds (timed rounds for an op this short)


def cpu_key(shape_key: str) -> str:
    """A CPU choice's key as the dispatcher spells it: device, thread count, shape."""
    return f"cpu|threads={hg.get_num_threads()},{shape_key}"


def _choices_for(key_part: str) -> list[dict]:
    return [r for r in hg.tuning_report() if key_part in r["key"]]


def _gemm_candidates() -> list[str]:
    return [r["kernel"] for r in hg.build_info()["kernels"]
            if r["op"] == "gemm" and r["backend"] == "cpu" and "fallback" not in r["note"]]


CPU_VENDOR_MARGIN = 0.15  # csrc/core/dispatch.h kCpuVendorMargin


def expected_winner(times: dict[str, float], threads: int) -> str:
    """The fastest candidate; on 2+ CPU threads OpenBLAS (its own thread pool) only when it
    beats the fastest hipgrad kernel by more than the margin."""
    fastest = min(times, key=times.get)
    own = min((k for k in times if k != "cpu.openblas_sgemm"), key=times.get)
    if fastest == "cpu.openblas_sgemm" and threads > 1 and times[own] <= times[fastest] * (1 + CPU_VENDOR_MARGIN):
        return own
    return fastest


@pytest.mark.parametrize("threads", [1, 2])
def test_auto_prefers_hipgrads_pool_on_near_ties_at_two_threads(rng, threads):
    """Many small shapes tuned at 1 and 2 threads: every choice follows expected_winner from
    the candidates' recorded times (at 2 threads OpenBLAS needs a clear win)."""
    before = hg.get_num_threads()
    hg._C.clear_tuning()
    hg.set_num_threads(threads)
    try:
        for M, N, K in [(256, 10, 256), (64, 10, 84), (6, 120, 400), (31, 17, 9), (128, 64, 33)]:
            a = rng.standard_normal((M, K)).astype(np.float32)
            b = rng.standard_normal((K, N)).astype(np.float32)
            hg.ops.gemm(a, b, impl="auto")
            rows = _choices_for(f"|threads={threads},M={M},N={N},K={K},")
            assert len(rows) == 1, rows
            assert rows[0]["kernel"] == expected_winner(rows[0]["candidates"], threads), rows[0]
    finally:
        hg.set_num_threads(before)


def test_auto_times_every_candidate_once_then_reuses(rng):
    a = rng.standard_normal((37, 41)).astype(np.float32)
    b = rng.standard_normal((41, 43)).astype(np.float32)
    with hg.trace() as t:
        y1 = hg.ops.gemm(a, b, impl="auto")
        y2 = hg.ops.gemm(a, b, impl="auto")
    rows = _choices_for("M=37,N=43,K=41")
    names = _gemm_candidates()
    assert len(rows) == 1 and rows[0]["chosen"] in ("handwritten", "vendor")
    assert rows[0]["handwritten_ms"] > 0 and rows[0]["vendor_ms"] > 0
    times = rows[0]["candidates"]
    assert sorted(times) == sorted(names) and all(ms > 0 for ms in times.values()), times
    assert rows[0]["kernel"] == expected_winner(times, hg.get_num_threads())
    assert rows[0]["chosen"] == ("vendor" if rows[0]["kernel"] == "cpu.openblas_sgemm" else "handwritten")
    tuning_runs = [r for r in t.ops if r["tuning"]]
    # each candidate: one warm-up run, then TUNE_ROUNDS timed runs (short ops get every round)
    assert len(tuning_runs) == (1 + TUNE_ROUNDS) * len(names)
    assert sorted({r["impl"] for r in tuning_runs}) == sorted(names)
    for name in names:  # the recorded time is the candidate's fastest timed run
        timed = [r["ms"] for r in tuning_runs if r["impl"] == name][1:]
        assert len(timed) == TUNE_ROUNDS and times[name] == pytest.approx(min(timed), rel=1e-6), (name, timed, times)
    results = [r for r in t.ops if not r["tuning"]]
    assert len(results) == 2 and results[0]["impl"] == results[1]["impl"] == rows[0]["kernel"]
    np.testing.assert_allclose(y1.numpy(), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())


def _run(code: str, cache: str) -> str:
    env = dict(os.environ, HIPGRAD_CACHE_DIR=cache)
    env.pop("HIPGRAD_NO_TUNING_CACHE", None)
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


PROBE = """
import numpy as np, hipgrad as hg
a = np.ones((29, 31), np.float32)
with hg.trace() as t:
    hg.ops.gemm(a, a.T.copy(), impl="auto")
print("tuning-runs", sum(r["tuning"] for r in t.ops))
print("candidates", len({r["impl"] for r in t.ops if r["tuning"]}))
print("ran", t.ops[-1]["impl"])
"""


def test_choices_persist_across_processes(tmp_path):
    first = _run(PROBE, str(tmp_path))
    n = len(_gemm_candidates())
    assert f"tuning-runs {(1 + TUNE_ROUNDS) * n}" in first and f"candidates {n}" in first
    files = list(tmp_path.glob("tuning-cpu-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["format"] == tuning.FORMAT
    row = next(r for r in data["choices"] if "M=29,N=29,K=31" in r["key"])
    assert len(row["candidates"]) == n and f"ran {row['kernel']}" in first
    second = _run(PROBE, str(tmp_path))
    assert "tuning-runs 0" in second and f"ran {row['kernel']}" in second


def test_corrupt_cache_is_ignored_with_a_warning(tmp_path):
    path = tuning.cache_file("cpu")
    old = os.environ.get("HIPGRAD_CACHE_DIR")
    os.environ["HIPGRAD_CACHE_DIR"] = str(tmp_path)
    try:
        path = tuning.cache_file("cpu")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{not json")
        with pytest.warns(RuntimeWarning, match="ignoring tuning cache"):
            assert tuning.load("cpu") == 0
        path.write_text(json.dumps({"format": 1, "identity": "another machine", "choices": []}))
        with pytest.warns(RuntimeWarning, match="another device"):
            assert tuning.load("cpu") == 0
    finally:
        if old is None:
            del os.environ["HIPGRAD_CACHE_DIR"]
        else:
            os.environ["HIPGRAD_CACHE_DIR"] = old


def test_env_override_forces_an_impl(tmp_path):
    code = PROBE.replace('print("tuning-runs"', 'print(hg.ops.last_impl()["impl"]); print("tuning-runs"')
    env_code = "import os\n" + code
    out = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, HIPGRAD_CACHE_DIR=str(tmp_path), HIPGRAD_IMPL="vendor"))
    assert out.returncode == 0, out.stderr
    assert "cpu.openblas_sgemm" in out.stdout and "tuning-runs 0" in out.stdout


@pytest.mark.parametrize("value", ["vendr", "Vendor", "handwritten "])
def test_a_bad_env_override_fails_the_import(tmp_path, value):
    """A HIPGRAD_IMPL that names no impl is refused where it is read (import), never ignored."""
    out = subprocess.run([sys.executable, "-c", "import hipgrad"], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, HIPGRAD_CACHE_DIR=str(tmp_path),
                                                HIPGRAD_IMPL=value), check=False)
    assert out.returncode != 0
    assert (f"ValueError: HIPGRAD_IMPL must be 'auto', 'handwritten' or 'vendor' (or unset), "
            f"got '{value}'") in out.stderr, out.stderr


@pytest.fixture
def cache_dir(tmp_path):
    old = os.environ.get("HIPGRAD_CACHE_DIR")
    os.environ["HIPGRAD_CACHE_DIR"] = str(tmp_path)
    try:
        yield tmp_path
    finally:
        if old is None:
            del os.environ["HIPGRAD_CACHE_DIR"]
        else:
            os.environ["HIPGRAD_CACHE_DIR"] = old


def _entry(kernel: str, shape: str) -> dict:
    return {"op": "gemm", "key": cpu_key(shape), "chosen": "handwritten", "kernel": kernel,
            "handwritten_ms": 1.0, "vendor_ms": 2.0, "candidates": {"cpu.openblas_sgemm": 2.0, kernel: 0.5}}


def _write_cache(entries: list[dict], fmt: int = tuning.FORMAT) -> None:
    path = tuning.cache_file("cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": fmt, "identity": tuning.device_identity("cpu"),
                                "choices": entries}))


def test_loaded_choice_runs_its_kernel_without_timing(cache_dir, rng):
    """Every candidate, written as the cached winner, is the one that runs (no timing)."""
    a = rng.standard_normal((23, 17)).astype(np.float32)
    b = rng.standard_normal((17, 19)).astype(np.float32)
    hg.ops.gemm(a, b, impl="handwritten")  # the shape key, as the dispatcher spells it
    key = hg.ops.last_impl()["key"]
    for name in _gemm_candidates():
        hg._C.clear_tuning()
        _write_cache([_entry(name, key)])
        assert tuning.load("cpu") == 1
        row = _choices_for(key)[0]
        assert row["kernel"] == name and row["candidates"][name] == 0.5
        with hg.trace() as t:
            y = hg.ops.gemm(a, b, impl="auto")
        assert [r["impl"] for r in t.ops] == [name]
        np.testing.assert_allclose(y.numpy(), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_save_then_load_round_trips_the_chosen_kernel(cache_dir, rng):
    hg._C.clear_tuning()
    a = rng.standard_normal((21, 27)).astype(np.float32)
    hg.ops.gemm(a, a.T.copy(), impl="auto")
    before = {r["key"]: r for r in hg.tuning_report()}
    assert tuning.save("cpu") is not None
    hg._C.clear_tuning()
    assert tuning.load("cpu") == len(before)
    after = {r["key"]: r for r in hg.tuning_report()}
    assert after == before


def test_entry_with_unknown_kernel_is_ignored_with_a_warning(cache_dir):
    hg._C.clear_tuning()
    _write_cache([_entry("cpu.openblas_sgemm", "M=5,N=5,K=5,ta=0,tb=0"),
                  _entry("cpu.gemm_retired_kernel", "M=6,N=6,K=6,ta=0,tb=0")])
    with pytest.warns(RuntimeWarning, match="no kernel 'cpu.gemm_retired_kernel'"):
        assert tuning.load("cpu") == 1
    assert [r["kernel"] for r in hg.tuning_report()] == ["cpu.openblas_sgemm"]


def test_old_format_cache_is_ignored_with_a_warning(cache_dir):
    hg._C.clear_tuning()
    old = {"op": "gemm", "key": cpu_key("M=5,N=5,K=5,ta=0,tb=0"), "chosen": "vendor",
           "handwritten_ms": 1.0, "vendor_ms": 0.5}
    _write_cache([old], fmt=1)
    with pytest.warns(RuntimeWarning, match="ignoring tuning cache"):
        assert tuning.load("cpu") == 0
    assert hg.tuning_report() == []


def test_env_forces_a_kernel_by_name(tmp_path):
    name = next(n for n in _gemm_candidates() if "unpacked" in n)
    env = dict(os.environ, HIPGRAD_CACHE_DIR=str(tmp_path), HIPGRAD_KERNEL=name)
    code = PROBE.replace('print("tuning-runs"', 'print(hg.ops.last_impl()["impl"]); print("tuning-runs"')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert f"{name}\ntuning-runs 0" in out.stdout
    env["HIPGRAD_KERNEL"] = "cpu.gemm_nonesuch"
    out = subprocess.run([sys.executable, "-c", "import hipgrad"], capture_output=True, text=True,
                         timeout=120, env=env, check=False)
    assert "HIPGRAD_KERNEL names no kernel" in out.stderr
    # a name several ops share is forced for each of them
    shared = {}
    for row in hg.build_info()["kernels"]:
        if row["backend"] == "cpu" and not row["note"].startswith("vendor fallback"):
            shared.setdefault(row["kernel"], set()).add(row["op"])
    name, ops = next((k, v) for k, v in sorted(shared.items()) if len(v) > 1)
    env["HIPGRAD_KERNEL"] = name
    code = ("import hipgrad as hg; print(sorted(op for op in " + repr(sorted(ops))
            + " if hg._C.forced_kernel(op, 'cpu') == " + repr(name) + "))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                         check=True)
    assert out.stdout.strip() == repr(sorted(ops)), (name, out.stdout)


def test_malformed_entries_and_unreadable_files_are_skipped_with_a_warning(cache_dir):
    """Never fatal: a bad entry is skipped (the good ones load), an unreadable file ignored."""
    hg._C.clear_tuning()
    good = _entry("cpu.openblas_sgemm", "M=5,N=5,K=5,ta=0,tb=0")
    bad = [dict(good, op=5), dict(good, op=None), dict(good, key=7), "a string",
           dict(good, candidates={"cpu.openblas_sgemm": 10**400}), dict(good, candidates={"x": float("nan")}),
           dict(good, candidates=[1, 2])]
    _write_cache(bad + [good])
    with pytest.warns(RuntimeWarning, match="ignoring a tuning cache entry") as caught:
        assert tuning.load("cpu") == 1
    assert len([w for w in caught if "ignoring a tuning cache entry" in str(w.message)]) == len(bad)
    assert [r["kernel"] for r in hg.tuning_report()] == ["cpu.openblas_sgemm"]
    path = tuning.cache_file("cpu")
    path.unlink()
    path.mkdir()  # a directory where the file should be
    assert tuning.load("cpu") == 0  # not a file: nothing cached
    path.rmdir()


SAVE_ONE = """
import numpy as np, hipgrad as hg, hipgrad.profiling.tuning as tu
hg.ops.gemm(np.ones(({m}, 8), np.float32), np.ones((8, 8), np.float32), impl="auto")
"""


def test_two_processes_saving_one_cache_keep_both_choices(tmp_path):
    """Each process writes its choices at exit merged with the file's: neither loses the other's
    (the second used to overwrite the first)."""
    env = dict(os.environ, HIPGRAD_CACHE_DIR=str(tmp_path))
    env.pop("HIPGRAD_NO_TUNING_CACHE", None)
    a = subprocess.Popen([sys.executable, "-c", SAVE_ONE.format(m=3) + "import time; time.sleep(2)"], env=env)
    subprocess.run([sys.executable, "-c", SAVE_ONE.format(m=5)], env=env, check=True, timeout=120)
    assert a.wait(timeout=120) == 0  # both loaded an empty cache; A saves last
    rows = json.loads(next(tmp_path.glob("tuning-cpu-*.json")).read_text())["choices"]
    keys = {r["key"].split("|")[1] for r in rows}
    assert {k.split(",M=")[1].split(",")[0] for k in keys} == {"3", "5"}, keys
