from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check, to_dev
from tests.reference import gemm as ref

SIZES = [(1, 1, 1), (3, 7, 31), (31, 129, 7), (129, 33, 65), (64, 64, 64), (257, 130, 300)]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("mnk", SIZES)
def test_gemm_matches_float64(device, impl, rng, trans_a, trans_b, mnk):
    M, N, K = mnk
    a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    alpha, beta = float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))
    y = hg.ops.gemm(to_dev(a, device), to_dev(b, device), to_dev(c, device), trans_a=trans_a,
                    trans_b=trans_b, alpha=alpha, beta=beta, impl=impl)
    assert y.device == device
    check(y, ref.gemm(a, b, c, trans_a, trans_b, alpha, beta), rtol=1e-4, atol=1e-4 * np.sqrt(K),
          what=f"gemm {mnk} ta={trans_a} tb={trans_b} impl={impl}")


def test_gemm_without_c_ignores_beta(device, impl, rng):
    a = rng.standard_normal((5, 9)).astype(np.float32)
    b = rng.standard_normal((9, 4)).astype(np.float32)
    y = hg.ops.gemm(to_dev(a, device), to_dev(b, device), beta=3.0, impl=impl)
    check(y, ref.gemm(a, b), what="gemm without c")


def test_gemm_reports_what_ran(impl, rng):
    a = rng.standard_normal((8, 8)).astype(np.float32)
    hg.ops.gemm(a, a, impl=impl)
    ran = hg.ops.last_impl()
    assert ran["op"] == "gemm"
    expected = {"handwritten": "cpu.gemm", "vendor": "cpu.openblas"}.get(impl, "cpu.")
    assert ran["impl"].startswith(expected), ran


@pytest.mark.parametrize("shapes, message", [
    (((3, 4), (5, 6)), "inner sizes must match"),
    (((3,), (3, 4)), "must have 2 dimensions"),
])
def test_gemm_rejects_bad_shapes(shapes, message):
    a, b = (np.ones(s, np.float32) for s in shapes)
    with pytest.raises(ValueError, match=message):
        hg.ops.gemm(a, b)


def test_gemm_rejects_bad_c_and_dtype():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"c must have shape \(3, 3\)"):
        hg.ops.gemm(a, a.T.copy(), np.ones((2, 2), np.float32), beta=1.0)
    with pytest.raises(TypeError, match="a must be float32"):
        hg.ops.gemm(np.ones((3, 4), np.int64), a.T.copy())
    with pytest.raises(ValueError, match="impl must be"):
        hg.ops.gemm(a, a.T.copy(), impl="fast")
