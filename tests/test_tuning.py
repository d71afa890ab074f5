"""impl="auto" chooses by measurement, persists the choice, and survives bad cache files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import tuning


def _choices_for(key_part: str) -> list[dict]:
    return [r for r in hg.tuning_report() if key_part in r["key"]]


def test_auto_times_both_once_then_reuses(rng):
    a = rng.standard_normal((37, 41)).astype(np.float32)
    b = rng.standard_normal((41, 43)).astype(np.float32)
    with hg.trace() as t:
        y1 = hg.ops.gemm(a, b, impl="auto")
        y2 = hg.ops.gemm(a, b, impl="auto")
    rows = _choices_for("M=37,N=43,K=41")
    assert len(rows) == 1 and rows[0]["chosen"] in ("handwritten", "vendor")
    assert rows[0]["handwritten_ms"] > 0 and rows[0]["vendor_ms"] > 0
    tuning_runs = [r for r in t.ops if r["tuning"]]
    assert len(tuning_runs) == 4  # warm + timed, each variant, once
    results = [r for r in t.ops if not r["tuning"]]
    assert len(results) == 2 and results[0]["impl"] == results[1]["impl"]
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
"""


def test_choices_persist_across_processes(tmp_path):
    first = _run(PROBE, str(tmp_path))
    assert "tuning-runs 4" in first
    files = list(tmp_path.glob("tuning-cpu-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert any("M=29,N=29,K=31" in r["key"] for r in data["choices"])
    second = _run(PROBE, str(tmp_path))
    assert "tuning-runs 0" in second


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
