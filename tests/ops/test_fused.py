"""conv2d_bias_act and linear_bias_act: float64 references (conv2d, activation), fused ==
unfused (conv2d / gemm, then activation), every activation kind, every impl and device, the
GEMM's block edges on every CPU ISA variant, out= and bad input."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import DEVICES, check, to_dev
from tests.op_cases import OPS
from tests.reference import activation as ref_act
from tests.reference import conv as ref_conv

ACTS = OPS["conv2d_bias_act"].params["acts"]

# (N, C, H, W, K, R, S, stride, padding, dilation, groups, bias)
CONV_CASES = OPS["conv2d_bias_act"].params["cases"]


def _ids(case):
    N, C, H, W, K, R, S, st, pd, dl, g, b = case
    return f"N{N}C{C}H{H}W{W}K{K}R{R}S{S}-st{st}-pd{pd}-dl{dl}-g{g}{'-bias' if b else ''}"


def _conv_inputs(rng, case, device):
    N, C, H, W, K, R, S, st, pd, dl, g, b = case
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = (rng.standard_normal((K, C // g, R, S)) / np.sqrt(C // g * R * S)).astype(np.float32)
    bias = rng.standard_normal(K).astype(np.float32) if b else None
    hyper = {"stride": st, "padding": pd, "dilation": dl, "groups": g}
    dev = {k: None if v is None else to_dev(v, device)
           for k, v in (("x", x), ("w", w), ("b", bias))}
    return x, w, bias, hyper, dev


def _expected(z: np.ndarray, act: str | None, alpha: float) -> np.ndarray:
    return z if act is None else ref_act.activation(z, act, alpha)


def _unfused(y: hg.Tensor, act: str | None, alpha: float, impl: str) -> np.ndarray:
    return (y if act is None else hg.ops.activation(y, act, alpha=alpha, impl=impl)).numpy()


@pytest.mark.parametrize("case", CONV_CASES, ids=_ids)
def test_conv2d_bias_act_matches_float64_and_unfused(device, impl, rng, case):
    x, w, bias, hyper, d = _conv_inputs(rng, case, device)
    act = ACTS[CONV_CASES.index(case) % len(ACTS)]
    alpha = float(rng.uniform(0.05, 1.5))
    y = hg.ops.conv2d_bias_act(d["x"], d["w"], d["b"], **hyper, activation=act, alpha=alpha,
                               impl=impl)
    assert y.device == device
    check(y, _expected(ref_conv.conv2d(x, w, bias, **hyper), act, alpha), rtol=1e-4, atol=1e-4,
          what=f"conv2d_bias_act {act}")
    unfused = _unfused(hg.ops.conv2d(d["x"], d["w"], d["b"], **hyper, impl=impl), act, alpha, impl)
    np.testing.assert_allclose(y.numpy(), unfused, rtol=1e-5, atol=1e-5, err_msg="fused != unfused")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("case", [CONV_CASES[2], CONV_CASES[8], CONV_CASES[-1]], ids=_ids)
def test_conv2d_bias_act_every_activation(device, impl, rng, case, act):
    x, w, bias, hyper, d = _conv_inputs(rng, case, device)
    y = hg.ops.conv2d_bias_act(d["x"], d["w"], d["b"], **hyper, activation=act, alpha=0.3,
                               impl=impl)
    check(y, _expected(ref_conv.conv2d(x, w, bias, **hyper), act, 0.3), rtol=1e-4, atol=1e-4,
          what=f"conv2d_bias_act {act}")
    unfused = _unfused(hg.ops.conv2d(d["x"], d["w"], d["b"], **hyper, impl=impl), act, 0.3, impl)
    np.testing.assert_allclose(y.numpy(), unfused, rtol=1e-5, atol=1e-5, err_msg="fused != unfused")


LINEAR_SIZES = OPS["linear_bias_act"].params["sizes"]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_bias_act_matches_float64_and_unfused(device, impl, rng, act, bias):
    for M, N, K in LINEAR_SIZES:
        x = rng.standard_normal((M, K)).astype(np.float32)
        w = (rng.standard_normal((N, K)) / np.sqrt(max(K, 1))).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32) if bias else None
        dx, dw = to_dev(x, device), to_dev(w, device)
        db = None if b is None else to_dev(b, device)
        y = hg.ops.linear_bias_act(dx, dw, db, activation=act, alpha=0.2, impl=impl)
        z = x.astype(np.float64) @ w.T.astype(np.float64) + (0 if b is None else b)
        check(y, _expected(z, act, 0.2), rtol=1e-4, atol=1e-4, what=f"linear {act} {(M, N, K)}")
        if K == 0:
            continue
        lin = hg.ops.gemm(dx, dw, trans_b=True, impl=impl)
        if db is not None:
            lin = hg.ops.bias_add(lin, db, impl=impl)
        np.testing.assert_allclose(y.numpy(), _unfused(lin, act, 0.2, impl), rtol=1e-5, atol=1e-5,
                                   err_msg=f"fused != unfused {(M, N, K)}")


def _linear_candidates(device: str) -> list[str]:
    backend = device.split(":")[0]
    return [r["kernel"] for r in hg.build_info()["kernels"]
            if r["op"] == "linear_bias_act" and r["backend"] == backend and "fallback" not in r["note"]]


@pytest.mark.parametrize("act", [None, "relu", "gelu", "elu"])
def test_linear_bias_act_every_candidate_matches_float64(device, rng, act):
    """Each kernel impl="auto" may pick (default, alternates, vendor), forced by name, on odd
    and narrow outputs (a classifier's N = 10, one off the 16- and 32-wide tiles)."""
    names = _linear_candidates(device)
    # A GPU build without vendor libraries (the AMD CI flavour, the simulated device) has only
    # the handwritten kernel; the CPU always has a second candidate.
    assert len(names) >= (2 if device == "cpu" else 1), names
    for name in names:
        with hg.ops.force_kernel("linear_bias_act", name):
            for M, N, K in LINEAR_SIZES + [(256, 10, 256), (9, 16, 33), (17, 17, 5), (33, 33, 70)]:
                x = rng.standard_normal((M, K)).astype(np.float32)
                w = (rng.standard_normal((N, K)) / np.sqrt(max(K, 1))).astype(np.float32)
                b = rng.standard_normal(N).astype(np.float32)
                y = hg.ops.linear_bias_act(to_dev(x, device), to_dev(w, device), to_dev(b, device),
                                           activation=act, alpha=0.3)
                assert hg.ops.last_impl()["impl"] == name
                z = x.astype(np.float64) @ w.T.astype(np.float64) + b
                check(y, _expected(z, act, 0.3), rtol=1e-4, atol=1e-4,
                      what=f"linear_bias_act {name} {act} {(M, N, K)}")


# ---- The handwritten GEMM's epilogue at every register tile and cache block edge ------------
ISAS = ["generic", "avx2", "avx512"]


@pytest.fixture(params=ISAS)
def cpu_isa(request):
    rank = {name: i for i, name in enumerate(ISAS)}
    if rank[request.param] > rank[hg._C._cpu_isa_detected()]:
        pytest.skip(f"this CPU lacks {request.param} (has {hg._C._cpu_isa_detected()})")
    before = hg._C._cpu_isa()
    hg._C._set_cpu_isa(request.param)
    yield request.param
    hg._C._set_cpu_isa(before)


def test_linear_bias_act_block_edges(cpu_isa, rng):
    bl = hg._C._gemm_blocking()
    mr, nr, mc, kc, nc_l2 = (bl[k] for k in ("mr", "nr", "mc", "kc", "nc_l2"))
    for M, N, K in [(mr + 1, nr + 1, 9), (mc + 1, nr + 3, 2 * kc + 1),
                    (2 * mr + 1, nc_l2 + nr + 1, 3), (9, 35, kc + 1)]:
        x = rng.standard_normal((M, K)).astype(np.float32)
        w = (rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32)
        y = hg.ops.linear_bias_act(x, w, b, activation="gelu", impl="handwritten")
        assert hg.ops.last_impl()["impl"] == "cpu.gemm_packed_epilogue"
        z = x.astype(np.float64) @ w.T.astype(np.float64) + b
        check(y, ref_act.activation(z, "gelu"), rtol=1e-4, atol=1e-4, what=f"{cpu_isa} {(M, N, K)}")


def test_kernel_names_say_what_ran(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    hg.ops.conv2d_bias_act(x, w, activation="relu", impl="vendor")
    assert hg.ops.last_impl()["impl"] == "cpu.conv2d_im2col_openblas+epilogue"
    hg.ops.linear_bias_act(x.reshape(2, -1), w.reshape(4, -1)[:, :2].repeat(96, 1), impl="vendor")
    assert hg.ops.last_impl()["impl"] == "cpu.openblas_sgemm+epilogue"


# ---- out= ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dev", DEVICES)
def test_out_into_a_prefix_view_of_a_nan_buffer(dev, impl, rng):
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    buf = hg.tensor(np.full(2 * 5 * 9 * 9 + 50, np.nan, np.float32), device=dev)
    y = hg.ops.conv2d_bias_act(to_dev(x, dev), to_dev(w, dev), to_dev(b, dev), padding=1,
                               activation="tanh", impl=impl, out=buf.prefix_view([2, 5, 9, 9]))
    assert y._shares_storage(buf)
    check(y, np.tanh(ref_conv.conv2d(x, w, b, padding=1)), rtol=1e-4, atol=1e-4, what="conv out=")
    assert np.isnan(buf.numpy()[y.numel():]).all(), "the op wrote past the end of its output"

    xl, wl = x.reshape(2, -1), w.reshape(5, -1)[:, :9].repeat(27, 1)
    buf = hg.tensor(np.full(50, np.nan, np.float32), device=dev)
    y = hg.ops.linear_bias_act(to_dev(xl, dev), to_dev(wl, dev), to_dev(b, dev),
                               activation="relu", impl=impl, out=buf.prefix_view([2, 5]))
    assert y._shares_storage(buf)
    z = xl.astype(np.float64) @ wl.T.astype(np.float64) + b
    check(y, np.maximum(z, 0), rtol=1e-4, atol=1e-4, what="linear out=")
    assert np.isnan(buf.numpy()[10:]).all()


# ---- bad input ------------------------------------------------------------------------------------
def test_bad_conv_input_is_named():
    x = np.zeros((2, 3, 8, 8), np.float32)
    w = np.zeros((4, 3, 3, 3), np.float32)
    op = hg.ops.conv2d_bias_act
    with pytest.raises(ValueError, match="conv2d_bias_act: w has 2 input channels per group"):
        op(x, np.zeros((4, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="conv2d_bias_act: x must have 4 dimensions"):
        op(x[0], w)
    with pytest.raises(ValueError, match="conv2d_bias_act: bias must have shape \\(4,\\)"):
        op(x, w, np.zeros(3, np.float32))
    with pytest.raises(ValueError,
                       match="conv2d_bias_act: activation must be one of 'none', 'relu'"):
        op(x, w, activation="swish")
    with pytest.raises(TypeError, match="conv2d_bias_act: activation must be a string"):
        op(x, w, activation=3)
    with pytest.raises(ValueError, match="conv2d_bias_act: out must have shape \\(2, 4, 6, 6\\)"):
        op(x, w, out=hg.zeros([2, 4, 8, 8]))
    xt = hg.tensor(x)
    with pytest.raises(ValueError, match="conv2d_bias_act: out must not overlap x"):
        op(xt, w, out=xt.prefix_view([2, 4, 6, 6]))
    with pytest.raises(TypeError, match="conv2d_bias_act: out must be an hg.Tensor"):
        op(x, w, out=np.zeros((2, 4, 6, 6), np.float32))
    with pytest.raises(ValueError, match="conv2d_bias_act: impl must be"):
        op(x, w, impl="fast")


def test_bad_linear_input_is_named():
    x = np.zeros((5, 7), np.float32)
    w = np.zeros((3, 7), np.float32)
    op = hg.ops.linear_bias_act
    with pytest.raises(ValueError, match="linear_bias_act: x is \\(5, 8\\) but w is \\(3, 7\\)"):
        op(np.zeros((5, 8), np.float32), w)
    with pytest.raises(ValueError, match="linear_bias_act: x must be 2-D"):
        op(x[None], w)
    with pytest.raises(ValueError, match="linear_bias_act: w must be 2-D"):
        op(x, w[None])
    with pytest.raises(ValueError, match="linear_bias_act: bias must have shape \\(3,\\)"):
        op(x, w, np.zeros(7, np.float32))
    with pytest.raises(ValueError, match="linear_bias_act: activation must be one of"):
        op(x, w, activation="softplus")
    with pytest.raises(TypeError, match="linear_bias_act: x must be float32"):
        op(hg.zeros([5, 7], dtype=np.int32), w)
    with pytest.raises(ValueError, match="linear_bias_act: out must have shape \\(5, 3\\)"):
        op(x, w, out=hg.zeros([3, 5]))


# ---- Prepacked linear weights (the inference engine's frozen CPU weights) -------------------
@pytest.mark.parametrize("threads", [1, 3])
def test_linear_bias_act_packed_matches_float64_on_every_isa(cpu_isa, rng, threads):
    """pack_linear_weight + linear_bias_act_packed against float64 on odd sizes around the
    register tiles and K blocks, under each CPU ISA (each has its own panel width), at 1 and 3
    threads; the panels hold w transposed, zero past N; the output is poisoned before the call."""
    before = hg.get_num_threads()
    hg.set_num_threads(threads)
    try:
        nr = hg._C.ops.cpu_gemm_panel_width()
        for M, N, K in [(1, 1, 1), (3, 7, 31), (13, 33, 257), (29, 64, 1), (64, 100, 300),
                        (257, 65, 513), (6, 256, 784)]:
            x = rng.standard_normal((M, K)).astype(np.float32)
            w = (rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float32)
            b = rng.standard_normal(N).astype(np.float32)
            p = hg.ops.pack_linear_weight(w)
            panels = -(-N // nr)
            assert tuple(p.shape) == (panels, K, nr)
            pw = np.zeros((panels * nr, K), np.float32)
            pw[:N] = w
            np.testing.assert_array_equal(p.numpy(), pw.reshape(panels, nr, K).transpose(0, 2, 1))
            out = hg.tensor(np.full((M, N), np.nan, np.float32))
            y = hg.ops.linear_bias_act_packed(x, p, b, n=N, activation="gelu", out=out)
            assert hg.ops.last_impl()["impl"] == "cpu.gemm_packed_epilogue_prepacked"
            z = x.astype(np.float64) @ w.T.astype(np.float64) + b
            check(y, ref_act.activation(z, "gelu", 0.01), rtol=1e-4, atol=1e-4,
                  what=f"linear_bias_act_packed {cpu_isa} t={threads} {(M, N, K)}")
            # the same arithmetic as the unpacked handwritten kernel; up to 16 rows the strip
            # kernel sums K in one pass instead of K blocks (fused.cpp, kStripRows)
            tol = 1e-6 if M > 16 else 1e-5
            np.testing.assert_allclose(
                hg.ops.linear_bias_act_packed(x, p, None, n=N, activation=None).numpy(),
                hg.ops.linear_bias_act(x, w, None, activation=None, impl="handwritten").numpy(),
                rtol=tol, atol=tol)
    finally:
        hg.set_num_threads(before)


def test_linear_bias_act_packed_bad_input(cpu_isa, rng):
    w = rng.standard_normal((40, 9)).astype(np.float32)
    p = hg.ops.pack_linear_weight(w)
    x = rng.standard_normal((5, 9)).astype(np.float32)
    op = hg.ops.linear_bias_act_packed
    with pytest.raises(ValueError, match="n must be the weight's N"):
        op(x, p, n=7)
    with pytest.raises(ValueError, match="packed must have as many rows \\(K\\) as x has columns"):
        op(x[:, :8], p, n=40)
    with pytest.raises(ValueError, match="packed must be 3-D"):
        op(x, w, n=40)
    with pytest.raises(ValueError, match="bias"):
        op(x, p, np.zeros(39, np.float32), n=40)
    with pytest.raises(TypeError, match="n must be an int"):
        op(x, p, n=40.0)
    with pytest.raises(ValueError, match="w must be 2-D"):
        hg.ops.pack_linear_weight(w[None])
    other = {"generic": "avx2", "avx2": "generic", "avx512": "generic"}[cpu_isa]
    hg._C._set_cpu_isa(other)  # the fixture restores the ISA
    with pytest.raises(ValueError, match="packed under another CPU ISA\\); pack the weight again"):
        op(x, p, n=40)


def test_packed_weights_are_cpu_only(device, rng):
    """Packed weights feed the CPU's GEMM: a GPU weight is refused with the device named."""
    w = hg.tensor(rng.standard_normal((40, 9)).astype(np.float32), device=device)
    if device == "cpu":
        nr = hg._C.ops.cpu_gemm_panel_width()
        assert tuple(hg.ops.pack_linear_weight(w).shape) == (-(-40 // nr), 9, nr)
        return
    with pytest.raises(ValueError, match=f"w must be on the CPU .*got device {device}"):
        hg.ops.pack_linear_weight(w)
    with pytest.raises(ValueError, match="CPU only"):
        hg.ops.linear_bias_act_packed(hg.tensor(np.ones((2, 9), np.float32), device=device),
                                      hg.ops.pack_linear_weight(w.numpy()).to(device), n=40)
