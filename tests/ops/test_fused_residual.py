"""conv2d_bias_act's residual epilogue, y = act(conv2d(x, w) + bias + residual): against NumPy
float64 on the odd shapes of the fused cases (each CPU path: per-image GEMM with several K
blocks, 1x1 without im2col, narrow planes batched per GEMM, depthwise direct; the GPU's implicit
GEMM and depthwise kernels), every activation, every impl and every registered kernel forced by
name, out= poisoned, out= aliasing the residual (also while impl="auto" tunes), bad input."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check, to_dev
from tests.op_cases import OPS
from tests.reference import activation as ref_act
from tests.reference import conv as ref_conv

ACTS = OPS["conv2d_bias_act"].params["acts"]
CASES = OPS["conv2d_bias_act"].params["cases"] + [
    (2, 40, 9, 11, 19, 3, 3, 1, 1, 1, 1, True),    # C*R*S = 360: more than one K block
    (3, 70, 6, 7, 5, 3, 3, 1, 1, 1, 1, False),     # batched narrow planes, two K blocks
    (2, 5, 23, 17, 5, 3, 3, 2, 1, 1, 5, True),     # depthwise, strided, odd widths
]


def _ids(case):
    N, C, H, W, K, R, S, st, pd, dl, g, b = case
    return f"N{N}C{C}H{H}W{W}K{K}R{R}S{S}-st{st}-pd{pd}-dl{dl}-g{g}{'-bias' if b else ''}"


def _inputs(rng, case):
    N, C, H, W, K, R, S, st, pd, dl, g, b = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((K, C // g, R, S)) / np.sqrt(C // g * R * S)).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32) if b else None
    hyper = {"stride": st, "padding": pd, "dilation": dl, "groups": g}
    shape = ref_conv.conv2d(x[:1, :, :, :], w, None, **hyper).shape[1:]
    res = rng.standard_normal((N, *shape)).astype(np.float32)
    return x, w, bias, res, hyper


def _expected(x, w, bias, res, hyper, act, alpha):
    z = ref_conv.conv2d(x, w, bias, **hyper) + res.astype(np.float64)
    return z if act is None else ref_act.activation(z, act, alpha)


def _call(device, x, w, bias, res, hyper, act, alpha, **kw):
    b = None if bias is None else to_dev(bias, device)
    return hg.ops.conv2d_bias_act(to_dev(x, device), to_dev(w, device), b, **hyper,
                                  activation=act, alpha=alpha, residual=res, **kw)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_residual_matches_float64(device, impl, rng, case):
    x, w, bias, res, hyper = _inputs(rng, case)
    act = ACTS[CASES.index(case) % len(ACTS)]
    alpha = float(rng.uniform(0.05, 1.5))
    want = _expected(x, w, bias, res, hyper, act, alpha)
    out = hg.tensor(np.full(want.shape, np.nan, np.float32), device=device)
    r = to_dev(res, device)
    y = _call(device, x, w, bias, r, hyper, act, alpha, impl=impl, out=out)
    assert y._shares_storage(out) and y.device == device
    check(y, want, rtol=1e-4, atol=1e-4, what=f"conv2d_bias_act residual {act}")
    np.testing.assert_array_equal(r.numpy(), res, err_msg="the residual was written")
    # out= the residual itself: the convolution accumulates onto it in place
    y = _call(device, x, w, bias, r, hyper, act, alpha, impl=impl, out=r)
    assert y._shares_storage(r)
    check(y, want, rtol=1e-4, atol=1e-4, what=f"conv2d_bias_act residual in place {act}")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("case", [CASES[2], CASES[8], CASES[12], CASES[-3]], ids=_ids)
def test_residual_every_activation(device, impl, rng, case, act):
    x, w, bias, res, hyper = _inputs(rng, case)
    y = _call(device, x, w, bias, to_dev(res, device), hyper, act, 0.3, impl=impl)
    check(y, _expected(x, w, bias, res, hyper, act, 0.3), rtol=1e-4, atol=1e-4,
          what=f"conv2d_bias_act residual {act}")


def _candidates(device: str) -> list[str]:
    backend = device.split(":")[0]
    return [r["kernel"] for r in hg.build_info()["kernels"]
            if r["op"] == "conv2d_bias_act" and r["backend"] == backend
            and "fallback" not in r["note"]]


@pytest.mark.parametrize("act", [None, "relu", "gelu"])
def test_residual_every_kernel_forced_by_name(device, rng, act):
    """Each registered kernel (default, alternates, references, vendor), forced by name, with a
    separate residual, with out= the residual, and without one."""
    names = _candidates(device)
    assert names
    for name in names:
        with hg.ops.force_kernel("conv2d_bias_act", name):
            for case in [CASES[1], CASES[4], CASES[6], CASES[8], CASES[12], CASES[-3], CASES[-1]]:
                x, w, bias, res, hyper = _inputs(rng, case)
                want = _expected(x, w, bias, res, hyper, act, 0.2)
                r = to_dev(res, device)
                y = _call(device, x, w, bias, r, hyper, act, 0.2)
                assert hg.ops.last_impl()["impl"] == name
                check(y, want, rtol=1e-4, atol=1e-4, what=f"{name} {_ids(case)} {act}")
                y = _call(device, x, w, bias, r, hyper, act, 0.2, out=r)
                check(y, want, rtol=1e-4, atol=1e-4, what=f"{name} {_ids(case)} {act} in place")
                y = _call(device, x, w, bias, None, hyper, act, 0.2)  # no residual
                z = ref_conv.conv2d(x, w, bias, **hyper)
                check(y, z if act is None else ref_act.activation(z, act, 0.2), rtol=1e-4,
                      atol=1e-4, what=f"{name} {_ids(case)} {act} without residual")


def test_in_place_while_auto_tunes(device, rng):
    """impl="auto" times every candidate on a shape it has not seen before the winner runs: a
    call whose out= is its residual must still add the residual exactly once."""
    hg._C.clear_tuning()
    for case in [CASES[1], CASES[8], CASES[12], CASES[-3]]:
        x, w, bias, res, hyper = _inputs(rng, case)
        r = to_dev(res, device)
        y = _call(device, x, w, bias, r, hyper, "relu", 0.01, impl="auto", out=r)
        check(y, _expected(x, w, bias, res, hyper, "relu", 0.01), rtol=1e-4, atol=1e-4,
              what=f"auto in place {_ids(case)}")


@pytest.mark.parametrize("threads", [1, 3])
def test_residual_at_thread_counts(rng, threads):
    """The CPU's per-image split (one image per thread) and the threaded GEMM of one image."""
    before = hg.get_num_threads()
    hg.set_num_threads(threads)
    try:
        for case in [(5, 16, 20, 20, 24, 3, 3, 1, 1, 1, 1, True), (1, 64, 24, 24, 40, 3, 3, 1, 1, 1, 1, True),
                     (4, 9, 13, 13, 9, 3, 3, 1, 1, 1, 9, False)]:
            x, w, bias, res, hyper = _inputs(rng, case)
            want = _expected(x, w, bias, res, hyper, "elu", 0.7)
            for impl in ("handwritten", "vendor"):
                r = hg.tensor(res)
                check(_call("cpu", x, w, bias, r, hyper, "elu", 0.7, impl=impl), want,
                      rtol=1e-4, atol=1e-4, what=f"{impl} t={threads} {_ids(case)}")
                check(_call("cpu", x, w, bias, r, hyper, "elu", 0.7, impl=impl, out=r), want,
                      rtol=1e-4, atol=1e-4, what=f"{impl} t={threads} {_ids(case)} in place")
    finally:
        hg.set_num_threads(before)


def test_bad_residual_is_named(device):
    x = to_dev(np.zeros((2, 3, 8, 8), np.float32), device)
    w = to_dev(np.zeros((4, 3, 3, 3), np.float32), device)
    op = hg.ops.conv2d_bias_act

    def zeros(shape, dtype=np.float32):
        return to_dev(np.zeros(shape, dtype), device)

    with pytest.raises(ValueError, match=r"conv2d_bias_act: residual must have the output's "
                                         r"shape \(2, 4, 6, 6\) \(N, K, P, Q\), got \(2, 4, 8, 8\)"):
        op(x, w, residual=zeros((2, 4, 8, 8)))
    with pytest.raises(ValueError, match="conv2d_bias_act: residual must have 4 dimensions"):
        op(x, w, residual=zeros((4, 6, 6)))
    with pytest.raises(TypeError, match="conv2d_bias_act: residual must be float32"):
        op(x, w, residual=zeros((2, 4, 6, 6), np.int32))
    big = zeros((3, 4, 6, 6))  # residual rows 0-1, out rows 1-2: they share row 1
    with pytest.raises(ValueError, match="conv2d_bias_act: out may be residual itself but must "
                                         "not overlap it otherwise"):
        op(x, w, residual=big.narrow(0, 2), out=big.narrow(1, 2))
    with pytest.raises(ValueError, match="conv2d_bias_act: out must not overlap x"):
        op(x, w, residual=zeros((2, 4, 6, 6)), out=x.prefix_view([2, 4, 6, 6]))
    if device != "cpu":
        with pytest.raises(ValueError, match="conv2d_bias_act: .*residual"):
            op(x, w, residual=np.zeros((2, 4, 6, 6), np.float32))
