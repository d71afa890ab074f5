from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check, to_dev
from tests.op_cases import OPS
from tests.reference import quant as ref

ACTS = OPS["qgemm"].params["acts"]


def _int8(rng, shape):
    return rng.integers(-127, 128, size=shape).astype(np.int8)


@pytest.mark.parametrize("n", [1, 7, 129, 70001])
def test_quantize_rounds_half_even_and_clamps(device, impl, rng, n):
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    x[: min(n, 4)] = np.array([0.5, 1.5, -2.5, 1000.0], np.float32)[: min(n, 4)]
    q = hg.ops.quantize(to_dev(x, device), 0.5, impl=impl)
    assert q.dtype == np.int8 and q.shape == x.shape
    np.testing.assert_array_equal(q.numpy(), ref.quantize(x, 0.5))


def test_quantize_maps_nan_to_zero_and_inf_to_the_bounds(device, impl):
    x = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, 0.0, -0.0] * 5, np.float32)
    q = hg.ops.quantize(to_dev(x, device), 0.1, impl=impl).numpy()
    np.testing.assert_array_equal(q, np.array([0, 127, -127, 127, -127, 0, 0] * 5, np.int8))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("mnk", OPS["qgemm"].params["sizes"])
def test_qgemm_matches_integer_reference(device, impl, rng, act, mnk):
    M, N, K = mnk
    xq, wq = _int8(rng, (M, K)), _int8(rng, (N, K))
    if act is not None and M * N > 10000 and device == "cpu":
        pytest.skip("the large shape runs once per impl without an activation on the CPU")
    x_scale = 0.01
    w_scale = rng.uniform(0.001, 0.01, N).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    y = hg.ops.qgemm(to_dev(xq, device), to_dev(wq, device), x_scale, to_dev(w_scale, device),
                     to_dev(bias, device), activation=act, alpha=0.2, impl=impl)
    check(y, ref.qgemm(xq, wq, x_scale, w_scale, bias, act, 0.2), rtol=1e-5, atol=1e-5,
          what=f"qgemm {mnk} {act}")


@pytest.mark.parametrize("cfg", [
    dict(x=(1, 1, 5, 5), w=(1, 1, 3, 3)),
    dict(x=(3, 3, 9, 7), w=(5, 3, 3, 3), stride=(2, 1), padding=(1, 2)),
    dict(x=(2, 4, 11, 11), w=(6, 2, 3, 3), groups=2, dilation=2, padding=1),
    dict(x=(2, 7, 8, 9), w=(7, 1, 3, 3), groups=7, padding=1, stride=3),
    dict(x=(1, 6, 31, 31), w=(16, 6, 5, 5)),
    dict(x=(2, 4, 10, 10), w=(8, 1, 3, 3), groups=4, dilation=(2, 1), padding=(2, 1)),
    dict(x=(2, 8, 6, 7), w=(12, 4, 1, 1), groups=2, stride=2),
    dict(x=(2, 16, 17, 17), w=(130, 16, 3, 3), padding=1),
])
@pytest.mark.parametrize("act", [None, "relu"])
def test_qconv2d_matches_integer_reference(device, impl, rng, cfg, act):
    xq, wq = _int8(rng, cfg["x"]), _int8(rng, cfg["w"])
    K = cfg["w"][0]
    w_scale = rng.uniform(0.001, 0.01, K).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32)
    kw = {k: cfg.get(k, d) for k, d in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1))}
    y = hg.ops.qconv2d(to_dev(xq, device), to_dev(wq, device), 0.02, to_dev(w_scale, device),
                       to_dev(bias, device), activation=act, impl=impl, **kw)
    pairs = {k: (v, v) if isinstance(v, int) and k != "groups" else v for k, v in kw.items()}
    check(y, ref.qconv2d(xq, wq, 0.02, w_scale, bias, activation=act, **pairs), rtol=1e-5,
          atol=1e-5, what=f"qconv2d {cfg} {act}")


@pytest.mark.parametrize("act", ACTS[2:])
def test_qconv2d_fuses_every_activation(device, impl, rng, act):
    for x, w, groups in (((2, 6, 9, 8), (4, 3, 3, 3), 2), ((1, 5, 7, 7), (5, 1, 3, 3), 5)):
        xq, wq = _int8(rng, x), _int8(rng, w)
        w_scale = rng.uniform(0.001, 0.01, w[0]).astype(np.float32)
        bias = rng.standard_normal(w[0]).astype(np.float32)
        y = hg.ops.qconv2d(to_dev(xq, device), to_dev(wq, device), 0.02, to_dev(w_scale, device),
                           to_dev(bias, device), padding=1, groups=groups, activation=act,
                           alpha=0.3, impl=impl)
        want = ref.qconv2d(xq, wq, 0.02, w_scale, bias, padding=(1, 1), groups=groups,
                           activation=act, alpha=0.3)
        check(y, want, rtol=1e-5, atol=1e-5, what=f"qconv2d {x} {w} {act}")


def test_quantized_ops_accept_an_empty_batch(device, impl, rng):
    """N = 0 (M = 0) gives an empty output of the right shape, as conv2d and gemm do."""
    w_scale = to_dev(rng.uniform(0.001, 0.01, 4).astype(np.float32), device)
    for x, w, kw, shape in [((0, 2, 5, 5), (4, 2, 3, 3), {"padding": 1}, (0, 4, 5, 5)),
                            ((0, 4, 6, 7), (4, 1, 3, 3), {"groups": 4, "stride": 2}, (0, 4, 2, 3))]:
        y = hg.ops.qconv2d(to_dev(_int8(rng, x), device), to_dev(_int8(rng, w), device), 0.02,
                           w_scale, activation="relu", impl=impl, **kw)
        assert y.shape == shape and y.dtype == np.float32
    y = hg.ops.qgemm(to_dev(_int8(rng, (0, 9)), device), to_dev(_int8(rng, (4, 9)), device), 0.02,
                     w_scale, impl=impl)
    assert y.shape == (0, 4)
    assert hg.ops.quantize(to_dev(np.zeros((0, 3), np.float32), device), 0.1, impl=impl).shape == (0, 3)


def test_quantized_ops_reject_bad_input():
    xq = np.zeros((2, 3), np.int8)
    with pytest.raises(TypeError, match="xq must be int8"):
        hg.ops.qgemm(xq.astype(np.float32), xq, 0.1, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="w_scale must have shape"):
        hg.ops.qgemm(xq, xq, 0.1, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="x_scale must be a finite positive scale"):
        hg.ops.qgemm(xq, xq, 0.0, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="kind must be one of .*got .swish."):
        hg.ops.qgemm(xq, xq, 0.1, np.ones(2, np.float32), activation="swish")
    with pytest.raises(ValueError, match="scale must be a finite positive scale"):
        hg.ops.quantize(np.ones(3, np.float32), float("nan"))
    with pytest.raises(ValueError, match="wq has 2 input channels per group"):
        hg.ops.qconv2d(np.zeros((1, 3, 5, 5), np.int8), np.zeros((2, 2, 3, 3), np.int8), 0.1,
                       np.ones(2, np.float32))
    xq, wq, ws = np.zeros((1, 2, 3, 3), np.int8), np.zeros((2, 1, 1, 1), np.int8), np.ones(2, np.float32)
    for groups in (2.7, 2.0, "2", True):  # conv2d's checks: never truncated or coerced
        with pytest.raises(TypeError, match=f"qconv2d: groups must be an int, got {groups!r}"):
            hg.ops.qconv2d(xq, wq, 0.1, ws, groups=groups)
    with pytest.raises(TypeError, match=r"qconv2d: stride must be an int or an \(h, w\) pair"):
        hg.ops.qconv2d(xq, wq, 0.1, ws, stride=1.5)


# ---- Every CPU variant (generic, AVX2, AVX-512 with and without VNNI), exact int32 sums --------
# With x_scale = w_scale = 1 and no bias the output is float(acc), exact below 2^24, so these
# compare the int32 dot products themselves with an int64 NumPy reference (outputs poisoned).
QUANT_ISAS = ["generic", "avx2", "avx512_novnni", "avx512"]
_ISA_RANK = {"generic": 0, "avx2": 1, "avx512": 2}
_KERNEL_ISA = {"avx512": "avx512_vnni", "avx512_novnni": "avx512"}  # as kernel names spell them


def _facts() -> dict:
    return hg.build_info()["facts"]


def _lacks(isa: str) -> str | None:
    """Why this CPU cannot run the variant, or None."""
    base = "avx512" if isa == "avx512_novnni" else isa
    if _ISA_RANK[base] > _ISA_RANK[hg._C._cpu_isa_detected()]:
        return f"this CPU lacks {base} (has {hg._C._cpu_isa_detected()})"
    if isa == "avx512" and _facts()["cpu.avx512_vnni"] == "absent":
        return "this CPU lacks AVX512-VNNI (avx512_novnni covers AVX-512)"
    return None


@contextlib.contextmanager
def _forced_isa(isa: str):
    before = "avx512_novnni" if _facts()["cpu.avx512_vnni"] == "off" else hg._C._cpu_isa()
    hg._C._set_cpu_isa(isa)
    try:
        yield
    finally:
        hg._C._set_cpu_isa(before)


@pytest.fixture(params=QUANT_ISAS)
def quant_isa(request):
    """Force the INT8 CPU kernels onto one variant for the test, then restore the previous one."""
    isa = request.param
    if _lacks(isa):
        pytest.skip(_lacks(isa))
    with _forced_isa(isa):
        names = {r["op"]: r["kernel"] for r in hg.build_info()["kernels"]
                 if r["op"] in ("quantize", "qgemm", "qconv2d") and r["backend"] == "cpu"
                 and r["variant"] == "handwritten"}
        want = _KERNEL_ISA.get(isa, isa)
        assert len(names) == 3 and all(
            n == f"cpu.{op}_int8_{want}" or n.startswith(f"cpu.{op}_int8_{want}_")
            for op, n in names.items()), names
        yield isa


def _exact_qgemm(xq, wq):
    y = hg.ops.qgemm(xq, wq, 1.0, np.ones(wq.shape[0], np.float32), impl="handwritten")
    return y.numpy(), (xq.astype(np.int64) @ wq.astype(np.int64).T).astype(np.float32)


def _exact_qconv2d(xq, wq, **kw):
    y = hg.ops.qconv2d(xq, wq, 1.0, np.ones(wq.shape[0], np.float32), impl="handwritten", **kw)
    pairs = {k: (v, v) if isinstance(v, int) and k != "groups" else v for k, v in kw.items()}
    return y.numpy(), ref.qconv2d(xq, wq, 1.0, np.ones(wq.shape[0]), **pairs).astype(np.float32)


def _where(got, want) -> list:
    return np.argwhere(got != want)[:5].tolist() if got.shape == want.shape else [got.shape]


SIZES = [1, 3, 17, 31, 65, 129]


@pytest.mark.parametrize("K", [1, 3, 5, 63, 257])
def test_qgemm_isa_int32_sums_are_exact(quant_isa, rng, K):
    for M in SIZES:
        for N in SIZES:
            xq = rng.integers(-128, 128, (M, K)).astype(np.int8)  # -128 too: the shifted u8 is 0
            wq = rng.integers(-128, 128, (N, K)).astype(np.int8)
            got, want = _exact_qgemm(xq, wq)
            assert np.array_equal(got, want), f"{quant_isa} {(M, N, K)}: {_where(got, want)}"


@pytest.mark.parametrize("xv,wv", [(127, 127), (-127, -127), (127, -127), (-128, -128),
                                   (-128, 127)])
def test_qgemm_isa_extremes_do_not_saturate(quant_isa, xv, wv):
    # (x + 128) * w summed in pairs leaves int16 (vpmaddubsw would saturate there);
    # K = 1000 keeps 128 * 128 * K below 2^24.
    for M, N, K in ((17, 33, 1000), (3, 65, 257), (65, 5, 63)):
        got, want = _exact_qgemm(np.full((M, K), xv, np.int8), np.full((N, K), wv, np.int8))
        assert np.array_equal(got, want), f"{quant_isa} {xv}*{wv} {(M, N, K)}: {_where(got, want)}"


QCONV_SHAPES = [  # x, w, conv arguments: odd planes, strides, dilations, groups, tile edges
    ((1, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}),
    ((3, 6, 14, 13), (16, 6, 5, 5), {}),
    ((2, 3, 17, 15), (13, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 5, 11, 9), (7, 5, 3, 2), {"stride": (3, 2), "padding": (2, 1), "dilation": (1, 2)}),
    ((1, 4, 13, 13), (8, 2, 3, 3), {"padding": 2, "dilation": 2, "groups": 2}),
    ((2, 6, 9, 10), (6, 1, 3, 3), {"stride": (2, 1), "padding": 1, "groups": 6}),
    ((2, 16, 9, 9), (33, 16, 1, 1), {"stride": 2}),
    ((1, 64, 4, 5), (65, 64, 3, 3), {"padding": 1}),
    ((1, 2, 1, 1), (3, 2, 1, 1), {}),
    ((1, 3, 5, 5), (4, 3, 5, 5), {"stride": 3, "padding": (1, 0)}),
]


@pytest.mark.parametrize("shape", QCONV_SHAPES, ids=lambda s: "x" + "-".join(map(str, s[0])))
def test_qconv2d_isa_int32_sums_are_exact(quant_isa, rng, shape):
    xs, ws, kw = shape
    inputs = [(rng.integers(-128, 128, xs), rng.integers(-128, 128, ws)),  # random
              (np.full(xs, 127), np.full(ws, -127)), (np.full(xs, -128), np.full(ws, 127))]
    for x, w in inputs:
        got, want = _exact_qconv2d(x.astype(np.int8), w.astype(np.int8), **kw)
        assert np.array_equal(got, want), f"{quant_isa} {shape} x0={x.flat[0]}: {_where(got, want)}"


def _float_epilogue_cases(rng) -> list:
    """(name, run, float64 reference): qgemm and qconv2d with scales, bias and an activation."""
    x_scale = float(rng.uniform(0.001, 0.05))
    cases = []
    for act in (None, "relu", "leaky_relu", "gelu"):
        xq, wq = _int8(rng, (37, 129)), _int8(rng, (70, 129))
        ws = rng.uniform(1e-3, 1e-2, 70).astype(np.float32)
        b = rng.standard_normal(70).astype(np.float32)
        cases.append((f"qgemm {act}", functools.partial(
            hg.ops.qgemm, xq, wq, x_scale, ws, b, activation=act, alpha=0.2, impl="handwritten"),
            ref.qgemm(xq, wq, x_scale, ws, b, act, 0.2)))
        cx, cw = _int8(rng, (3, 6, 13, 11)), _int8(rng, (10, 3, 3, 3))
        cs = rng.uniform(1e-3, 1e-2, 10).astype(np.float32)
        cb = rng.standard_normal(10).astype(np.float32)
        cases.append((f"qconv2d {act}", functools.partial(
            hg.ops.qconv2d, cx, cw, x_scale, cs, cb, stride=(2, 1), padding=1, groups=2,
            activation=act, alpha=0.2, impl="handwritten"),
            ref.qconv2d(cx, cw, x_scale, cs, cb, stride=(2, 1), padding=(1, 1), groups=2,
                        activation=act, alpha=0.2)))
    return cases


def test_isa_variants_agree_bit_for_bit(rng):
    """The float epilogue (multiply rounded, then the bias added, then the activation) is the
    same in every variant: their outputs are identical, and within float32 of float64."""
    cases = _float_epilogue_cases(rng)
    outputs = {}
    for isa in QUANT_ISAS:
        if not _lacks(isa):
            with _forced_isa(isa):
                outputs[isa] = [run().numpy() for _, run, _ in cases]
    first = next(iter(outputs))
    for (name, _, want), got in zip(cases, outputs[first]):
        check(got, want, rtol=1e-5, atol=1e-5, what=f"{first} {name}")
    for isa, outs in outputs.items():
        for (name, _, _), a, b in zip(cases, outputs[first], outs):
            assert np.array_equal(a, b), f"{name}: {isa} differs from {first}"


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_quant_thread_splits(quant_isa, rng, threads):
    """Row blocks, panel ranges (few rows, one image) and (image, group) tasks over threads."""
    before = hg.get_num_threads()
    hg.set_num_threads(threads)
    try:
        for M, N, K in ((5, 300, 700), (67, 129, 300), (200, 10, 131)):
            got, want = _exact_qgemm(_int8(rng, (M, K)), _int8(rng, (N, K)))
            assert np.array_equal(got, want), f"{quant_isa} threads={threads} {(M, N, K)}"
        for xs, ws, groups in (((1, 8, 41, 39), (16, 8, 3, 3), 1),
                               ((3, 8, 20, 20), (12, 2, 3, 3), 4)):
            got, want = _exact_qconv2d(_int8(rng, xs), _int8(rng, ws), padding=1, groups=groups)
            assert np.array_equal(got, want), f"{quant_isa} threads={threads} {xs}"
        x = (rng.standard_normal(200001) * 40).astype(np.float32)
        x[::1000] = np.nan
        np.testing.assert_array_equal(hg.ops.quantize(x, 0.25, impl="handwritten").numpy(),
                                      ref.quantize(np.nan_to_num(x, nan=0.0), 0.25))
    finally:
        hg.set_num_threads(before)


_ENV_CHECK = """
import numpy as np, hipgrad as hg
name = [r["kernel"] for r in hg.build_info()["kernels"]
        if (r["op"], r["backend"], r["variant"]) == ("qgemm", "cpu", "handwritten")][0]
x = np.full((9, 300), 127, np.int8)
y = hg.ops.qgemm(x, x[:5], 1.0, np.ones(5, np.float32)).numpy()
print(name, hg.build_info()["facts"]["cpu.avx512_vnni"], int(y.min()), int(y.max()))
"""


@pytest.mark.parametrize("isa", QUANT_ISAS)
def test_hipgrad_cpu_isa_env_forces_the_quant_variant(isa):
    if _lacks(isa):
        pytest.skip(_lacks(isa))
    out = subprocess.run([sys.executable, "-W", "error", "-c", _ENV_CHECK],
                         env=dict(os.environ, HIPGRAD_CPU_ISA=isa), capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[0].startswith(f"cpu.qgemm_int8_{_KERNEL_ISA.get(isa, isa)}_"), out
    if isa.startswith("avx512"):
        assert out[1] == ("on" if isa == "avx512" else "off"), out
    assert out[2:] == [str(127 * 127 * 300)] * 2, out


def test_hipgrad_cpu_isa_env_refuses_what_it_cannot_honour():
    """An unknown name, or an ISA this CPU lacks, fails the import naming the variable."""
    cases = [("avx3", ("HIPGRAD_CPU_ISA must be 'generic', 'avx2', 'avx512' or 'avx512_novnni' "
                       "(or unset), got 'avx3'"))]
    detected = hg._C._cpu_isa_detected()
    if detected != "avx512":
        cases.append(("avx512", f"HIPGRAD_CPU_ISA is 'avx512' but this CPU supports up to '{detected}'"))
    for value, message in cases:
        out = subprocess.run([sys.executable, "-c", "import hipgrad"], capture_output=True,
                             text=True, timeout=120, env=dict(os.environ, HIPGRAD_CPU_ISA=value),
                             check=False)
        assert out.returncode != 0 and f"ValueError: {message}" in out.stderr, out.stderr


def test_set_cpu_isa_names_avx512_without_vnni():
    with pytest.raises(ValueError, match="avx512_novnni"):
        hg._C._set_cpu_isa("avx512vnni")
    assert _facts()["cpu.avx512_vnni"] in ("on", "off", "absent")
