from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check, to_dev
from tests.op_cases import OPS
from tests.reference import gemm as ref

SIZES = OPS["gemm"].params["sizes"]


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


# ---- Every CPU instruction-set variant of the handwritten kernel --------------------------
ISAS = ["generic", "avx2", "avx512"]
_ISA_RANK = {name: i for i, name in enumerate(ISAS)}


@pytest.fixture(params=ISAS)
def cpu_isa(request):
    """Force the handwritten CPU GEMM onto one ISA variant for the test, then restore."""
    isa = request.param
    if _ISA_RANK[isa] > _ISA_RANK[hg._C._cpu_isa_detected()]:
        pytest.skip(f"this CPU lacks {isa} (has {hg._C._cpu_isa_detected()})")
    before = hg._C._cpu_isa()
    hg._C._set_cpu_isa(isa)
    yield isa
    hg._C._set_cpu_isa(before)


def _isa_sizes(bl: dict) -> list[tuple[int, int, int]]:
    """Odd sizes, plus sizes one past each register tile and cache block of the active ISA."""
    mr, nr, mc, kc, nc_l2, nc = (bl[k] for k in ("mr", "nr", "mc", "kc", "nc_l2", "nc"))
    return [(1, 1, 1), (3, 7, 31), (7, 31, 3), (31, 129, 7), (129, 31, 129),
            (mr - 1, nr - 1, 5), (mr + 1, nr + 1, 9), (2 * mr + 3, 3 * nr + 5, 17),
            (mc + 1, 33, 7), (9, 35, kc + 1), (mc + 1, nr + 3, 2 * kc + 1),
            (2 * mr + 1, nc_l2 + nr + 1, 3), (3, nc + 1, 5), (5, 1000, 300)]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_isa_variants_match_float64(cpu_isa, rng, trans_a, trans_b):
    bl = hg._C._gemm_blocking()
    assert cpu_isa in bl["kernel"], bl
    for M, N, K in _isa_sizes(bl):
        a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
        b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
        c = rng.standard_normal((M, N)).astype(np.float32)
        alpha, beta = float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))
        y = hg.ops.gemm(a, b, c, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta,
                        impl="handwritten")
        assert hg.ops.last_impl()["impl"] == bl["kernel"]
        check(y, ref.gemm(a, b, c, trans_a, trans_b, alpha, beta), rtol=1e-4,
              atol=1e-4 * np.sqrt(K), what=f"gemm {cpu_isa} {(M, N, K)} ta={trans_a} tb={trans_b}")


@pytest.mark.parametrize("threads", [1, 3])
def test_gemm_isa_thread_grids(cpu_isa, rng, threads):
    """Other thread counts split C into other grids (rows, columns or both)."""
    before = hg.get_num_threads()
    hg.set_num_threads(threads)
    try:
        for M, N, K in [(200, 150, 70), (7, 1000, 60), (1000, 9, 60), (61, 67, 300)]:
            a = rng.standard_normal((M, K)).astype(np.float32)
            b = rng.standard_normal((N, K)).astype(np.float32)
            y = hg.ops.gemm(a, b, trans_b=True, impl="handwritten")
            check(y, ref.gemm(a, b, trans_b=True), atol=1e-4 * np.sqrt(K),
                  what=f"gemm {cpu_isa} threads={threads} {(M, N, K)}")
    finally:
        hg.set_num_threads(before)


def test_gemm_isa_beta_zero_never_reads_c(cpu_isa, rng):
    """BLAS semantics: beta == 0 ignores C entirely (NaN in C does not leak into the result)."""
    bl = hg._C._gemm_blocking()
    M, N, K = bl["mr"] + 2, bl["nr"] + 3, bl["kc"] + 5
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    c = np.full((M, N), np.nan, np.float32)
    y = hg.ops.gemm(a, b, c, alpha=0.5, beta=0.0, impl="handwritten")
    check(y, ref.gemm(a, b, None, alpha=0.5), atol=1e-4 * np.sqrt(K), what=f"beta=0 {cpu_isa}")


def test_gemm_isa_alpha_zero_scales_c(cpu_isa, rng):
    """alpha == 0 leaves beta * C and never reads A or B."""
    a = np.full((6, 4), np.nan, np.float32)
    b = np.full((4, 5), np.nan, np.float32)
    c = rng.standard_normal((6, 5)).astype(np.float32)
    y = hg.ops.gemm(a, b, c, alpha=0.0, beta=-1.5, impl="handwritten")
    check(y, -1.5 * c.astype(np.float64), what=f"alpha=0 {cpu_isa}")


def test_cpu_isa_is_reported_and_validated():
    assert hg.build_info()["facts"]["cpu.isa"] == hg._C._cpu_isa()
    gemm_rows = [r for r in hg.build_info()["kernels"]
                 if r["op"] == "gemm" and r["backend"] == "cpu" and r["variant"] == "handwritten"]
    assert gemm_rows[0]["kernel"].startswith(f"cpu.gemm_packed_{hg._C._cpu_isa()}"), gemm_rows
    with pytest.raises(ValueError, match="isa must be"):
        hg._C._set_cpu_isa("sse9")


# ---- Every candidate impl="auto" may choose (default, handwritten alternates, vendor) ------
def _gemm_candidates(device: str) -> list[str]:
    backend = device.split(":")[0]
    return [r["kernel"] for r in hg.build_info()["kernels"]
            if r["op"] == "gemm" and r["backend"] == backend and "fallback" not in r["note"]]


def _alternate_sizes() -> list[tuple[int, int, int]]:
    """Odd sizes, and sizes one off the register tiles of the packed and unpacked kernels."""
    return [(1, 1, 1), (3, 7, 31), (7, 31, 3), (6, 784, 25), (13, 33, 150), (31, 129, 7),
            (8, 32, 5), (9, 33, 17), (15, 65, 9), (64, 10, 84), (129, 31, 129), (257, 130, 300)]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_every_alternate_matches_float64(device, rng, trans_a, trans_b):
    names = _gemm_candidates(device)
    assert len(names) >= 3, names  # default + at least one alternate + vendor
    for name in names:
        with hg.ops.force_kernel("gemm", name):
            for M, N, K in _alternate_sizes():
                a = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
                b = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
                c = rng.standard_normal((M, N)).astype(np.float32)
                alpha, beta = float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))
                y = hg.ops.gemm(to_dev(a, device), to_dev(b, device), to_dev(c, device),
                                trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta)
                assert hg.ops.last_impl()["impl"] == name
                check(y, ref.gemm(a, b, c, trans_a, trans_b, alpha, beta), rtol=1e-4,
                      atol=1e-4 * np.sqrt(K), what=f"gemm {name} {(M, N, K)} ta={trans_a} tb={trans_b}")


@pytest.mark.parametrize("threads", [1, 3])
def test_gemm_alternates_thread_splits_and_special_cases(device, rng, threads):
    """Other thread counts split strips and rows differently; beta == 0 never reads C (NaN);
    on the CPU (BLAS semantics there) alpha == 0 never reads A or B."""
    before = hg.get_num_threads()
    hg.set_num_threads(threads)
    try:
        for name in _gemm_candidates(device):
            with hg.ops.force_kernel("gemm", name):
                for M, N, K in [(200, 150, 70), (7, 1000, 60), (1000, 9, 60), (61, 67, 300)]:
                    a = rng.standard_normal((M, K)).astype(np.float32)
                    b = rng.standard_normal((N, K)).astype(np.float32)
                    c = np.full((M, N), np.nan, np.float32)
                    y = hg.ops.gemm(to_dev(a, device), to_dev(b, device), to_dev(c, device),
                                    trans_b=True, beta=0.0)
                    check(y, ref.gemm(a, b, trans_b=True), atol=1e-4 * np.sqrt(K),
                          what=f"gemm {name} threads={threads} {(M, N, K)}")
                if device != "cpu":
                    continue
                nan_a, nan_b = np.full((6, 4), np.nan, np.float32), np.full((4, 5), np.nan, np.float32)
                c = rng.standard_normal((6, 5)).astype(np.float32)
                y = hg.ops.gemm(to_dev(nan_a, device), to_dev(nan_b, device), to_dev(c, device),
                                alpha=0.0, beta=-1.5)
                check(y, -1.5 * c.astype(np.float64), what=f"alpha=0 {name}")
    finally:
        hg.set_num_threads(before)


def test_gemm_alternates_follow_the_cpu_isa(cpu_isa, rng):
    names = [n for n in _gemm_candidates("cpu") if "unpacked" in n]
    assert len(names) == 1 and cpu_isa in names[0], names
    a = rng.standard_normal((19, 23)).astype(np.float32)
    b = rng.standard_normal((23, 41)).astype(np.float32)
    with hg.ops.force_kernel("gemm", names[0]):
        y = hg.ops.gemm(a, b)
    assert hg.ops.last_impl()["impl"] == names[0]
    check(y, ref.gemm(a, b), what=f"unpacked {cpu_isa}")


def test_handwritten_runs_the_default_kernel_not_an_alternate(rng):
    a = rng.standard_normal((9, 9)).astype(np.float32)
    default = hg._C._gemm_blocking()["kernel"]
    hg.ops.gemm(a, a, impl="handwritten")
    assert hg.ops.last_impl()["impl"] == default


def test_force_kernel_rejects_unknown_names_and_restores():
    with (pytest.raises(ValueError, match="has no kernel named 'cpu.gemm_nonesuch'"),
          hg.ops.force_kernel("gemm", "cpu.gemm_nonesuch")):
        pass
    with (pytest.raises(ValueError, match="op must name an op"),
          hg.ops.force_kernel("gemmm", "cpu.openblas_sgemm")):
        pass
    with hg.ops.force_kernel("gemm", "cpu.openblas_sgemm"):
        hg.ops.gemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), impl="handwritten")
        assert hg.ops.last_impl()["impl"] == "cpu.openblas_sgemm"
    assert hg._C.forced_kernel("gemm", "cpu") == ""
