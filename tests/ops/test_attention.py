"""attention / attention_backward against float64 NumPy, finite differences and PyTorch SDPA, on
every impl and device, with odd sizes (T = 1, 7, 129; D = 8..128; H = 1..12)."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check, to_dev
from tests.ops.test_loss import numeric_grad
from tests.reference import attention as ref

# (B, H, Tq, Tk, D): T = 1, 7, 129 and sizes that cross the CPU's 64-row / 64-key blocks.
SHAPES = [(1, 1, 1, 1, 8), (2, 3, 7, 7, 16), (1, 2, 7, 19, 24), (1, 1, 129, 129, 32),
          (2, 12, 7, 7, 8), (1, 4, 65, 130, 64), (1, 1, 3, 129, 128), (3, 2, 1, 7, 40),
          (16, 4, 33, 33, 32)]


def _qkv(rng, B, H, Tq, Tk, D, device):
    q = rng.standard_normal((B, H, Tq, D)).astype(np.float32)
    k = rng.standard_normal((B, H, Tk, D)).astype(np.float32)
    v = rng.standard_normal((B, H, Tk, D)).astype(np.float32)
    return q, k, v, to_dev(q, device), to_dev(k, device), to_dev(v, device)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_attention_forward_and_backward_match_float64(device, impl, rng, shape, causal):
    B, H, Tq, Tk, D = shape
    q, k, v, tq, tk, tv = _qkv(rng, B, H, Tq, Tk, D, device)
    scale = None if rng.random() < 0.5 else float(rng.uniform(0.05, 0.5))
    out, lse = hg.ops.attention(tq, tk, tv, causal=causal, scale=scale, impl=impl)
    want, want_lse, _ = ref.attention(q, k, v, causal, scale)
    check(out, want, rtol=2e-4, atol=2e-5, what="out")
    check(lse, want_lse, rtol=2e-5, atol=2e-5, what="lse")
    dout = rng.standard_normal(q.shape).astype(np.float32)
    dq, dk, dv = hg.ops.attention_backward(to_dev(dout, device), tq, tk, tv, out, lse,
                                           causal=causal, scale=scale, impl=impl)
    wq, wk, wv = ref.attention_backward(dout, q, k, v, causal, scale)
    for name, got, exp in (("dq", dq, wq), ("dk", dk, wk), ("dv", dv, wv)):
        check(got, exp, rtol=1e-3, atol=1e-4 * max(1.0, np.abs(exp).max()), what=name)


# (B, H, Tq, kv_len, L, D): a decoding step (Tq = 1), a prefill chunk, kv_len across the CPU's
# 64-key blocks and the GPU's 16-key tiles, kv_len = L.
CACHE_SHAPES = [(1, 1, 1, 1, 5, 8), (2, 3, 1, 7, 19, 16), (1, 2, 3, 70, 129, 40),
                (3, 4, 5, 9, 9, 32), (2, 4, 1, 33, 64, 24)]


@pytest.mark.parametrize("layout", ["bhtd", "tbhd"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", CACHE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_attention_reads_a_prefix_of_a_kv_cache_in_place(device, impl, rng, shape, causal, layout):
    """k, v are caches of L positions of which the first kv_len hold keys (the rest NaN poison):
    the result is attention over those keys alone, read in place, written into `out`."""
    B, H, Tq, n, L, D = shape
    q = rng.standard_normal((B, H, Tq, D)).astype(np.float32)
    k, v = (rng.standard_normal((B, H, n, D)).astype(np.float32) for _ in range(2))
    caches = []
    for x in (k, v):
        c = np.full((B, H, L, D), np.nan, np.float32)
        c[:, :, :n] = x
        caches.append(np.ascontiguousarray(c.transpose(2, 0, 1, 3)) if layout == "tbhd" else c)
    scale = None if rng.random() < 0.5 else float(rng.uniform(0.05, 0.5))
    out = to_dev(np.full(q.shape, np.nan, np.float32), device)
    got, lse = hg.ops.attention(to_dev(q, device), to_dev(caches[0], device), to_dev(caches[1], device),
                                causal=causal, scale=scale, kv_len=n, kv_layout=layout, impl=impl,
                                out=out)
    assert got._shares_storage(out)
    want, want_lse, _ = ref.attention(q, k, v, causal, scale)
    check(got, want, rtol=2e-4, atol=2e-5, what="out")
    check(lse, want_lse, rtol=2e-5, atol=2e-5, what="lse")


def test_attention_kv_len_and_layout_are_checked():
    q = np.zeros((2, 3, 1, 8), np.float32)
    cache = np.zeros((6, 2, 3, 8), np.float32)
    with pytest.raises(ValueError, match=r"kv_len must be in \[1, 6\].*got 7"):
        hg.ops.attention(q, cache, cache, kv_len=7, kv_layout="tbhd")
    with pytest.raises(ValueError, match=r"kv_len must be in \[1, 6\].*got 0"):
        hg.ops.attention(q, cache, cache, kv_len=0, kv_layout="tbhd")
    with pytest.raises(TypeError, match="kv_len must be an int"):
        hg.ops.attention(q, cache, cache, kv_len=2.0, kv_layout="tbhd")
    with pytest.raises(ValueError, match="kv_layout must be 'bhtd'.*or 'tbhd'.*got 'bthd'"):
        hg.ops.attention(q, cache, cache, kv_len=2, kv_layout="bthd")
    with pytest.raises(ValueError, match=r"k has batch and heads \(6, 2\) but q has \(2, 3\)"):
        hg.ops.attention(q, cache, cache, kv_len=2)          # a position-major cache read as bhtd
    with pytest.raises(ValueError, match="causal attention needs Tq <= Tk.*Tq=3 and Tk=2"):
        hg.ops.attention(np.zeros((2, 3, 3, 8), np.float32), cache, cache, causal=True, kv_len=2,
                         kv_layout="tbhd")
    with pytest.raises(ValueError, match=r"attention: out must have shape \(2, 3, 1, 8\)"):
        hg.ops.attention(q, cache, cache, kv_len=2, kv_layout="tbhd", out=hg.zeros([2, 3, 2, 8]))


def test_attention_reference_backward_matches_finite_differences(rng):
    """The float64 reference backward (what the ops are compared with) against central
    differences of the float64 forward, causal with Tq < Tk."""
    B, H, Tq, Tk, D = 1, 2, 3, 5, 4
    q, k, v = (rng.standard_normal(s) for s in ((B, H, Tq, D), (B, H, Tk, D), (B, H, Tk, D)))
    w = rng.standard_normal((B, H, Tq, D))
    dq, dk, dv = ref.attention_backward(w, q, k, v, True, 0.7)

    def f(q_, k_, v_):
        return float((ref.attention(q_, k_, v_, True, 0.7)[0] * w).sum())

    np.testing.assert_allclose(dq, numeric_grad(lambda x: f(x, k, v), q.copy(), 1e-6), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dk, numeric_grad(lambda x: f(q, x, v), k.copy(), 1e-6), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dv, numeric_grad(lambda x: f(q, k, x), v.copy(), 1e-6), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_attention_backward_matches_finite_differences(device, impl, rng, causal):
    B, H, Tq, Tk, D = 1, 2, 3, 5, 8
    q, k, v, tq, tk, tv = _qkv(rng, B, H, Tq, Tk, D, device)
    w = rng.standard_normal(q.shape)

    def f(q_, k_, v_):
        out, _ = hg.ops.attention(to_dev(q_, device), to_dev(k_, device), to_dev(v_, device),
                                  causal=causal, impl=impl)
        return float((out.numpy().astype(np.float64) * w).sum())

    out, lse = hg.ops.attention(tq, tk, tv, causal=causal, impl=impl)
    dq, dk, dv = hg.ops.attention_backward(to_dev(w.astype(np.float32), device), tq, tk, tv, out,
                                           lse, causal=causal, impl=impl)
    tol = {"rtol": 2e-2, "atol": 3e-3}
    check(dq, numeric_grad(lambda x: f(x, k, v), q.copy(), 1e-2), **tol, what="dq fd")
    check(dk, numeric_grad(lambda x: f(q, x, v), k.copy(), 1e-2), **tol, what="dk fd")
    check(dv, numeric_grad(lambda x: f(q, k, x), v.copy(), 1e-2), **tol, what="dv fd")


def test_attention_causal_decode_step_sees_every_key(rng):
    """Tq = 1 with causal: the last query sees all Tk keys (aligned to the end), so the result
    equals the non-causal one: a cached decoding step needs no mask."""
    q, k, v, tq, tk, tv = _qkv(rng, 2, 3, 1, 11, 16, "cpu")
    a, _ = hg.ops.attention(tq, tk, tv, causal=True)
    b, _ = hg.ops.attention(tq, tk, tv, causal=False)
    check(a, b.numpy().astype(np.float64), rtol=1e-6, atol=1e-7, what="decode step")


def test_attention_matches_torch_sdpa(rng):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")
    q, k, v, tq, tk, tv = _qkv(rng, 2, 4, 40, 40, 32, "cpu")
    tq_, tk_, tv_ = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    want = torch.nn.functional.scaled_dot_product_attention(tq_, tk_, tv_, is_causal=True)
    dout = rng.standard_normal(q.shape).astype(np.float32)
    want.backward(torch.tensor(dout))
    out, lse = hg.ops.attention(tq, tk, tv, causal=True)
    dq, dk, dv = hg.ops.attention_backward(dout, tq, tk, tv, out, lse, causal=True)
    check(out, want.detach().numpy().astype(np.float64), rtol=1e-4, atol=1e-5, what="out")
    for name, got, t in (("dq", dq, tq_), ("dk", dk, tk_), ("dv", dv, tv_)):
        check(got, t.grad.numpy().astype(np.float64), rtol=1e-3, atol=1e-4, what=name)


def test_attention_reports_its_kernels(device):
    x = to_dev(np.ones((1, 1, 4, 8), np.float32), device)
    hg.ops.attention(x, x, x, impl="handwritten")
    assert "attention_flash" in hg.ops.last_impl()["impl"]
    hg.ops.attention(x, x, x, impl="vendor")
    ran = hg.ops.last_impl()["impl"]
    # The composed vendor path, or (a GPU build without the vendor libraries, e.g. the simulated
    # device) the handwritten kernel named as the vendor fallback with its reason.
    assert "composed" in ran or ("attention_flash" in ran and "vendor fallback" in ran), ran


def test_attention_rejects_bad_inputs():
    q = np.zeros((2, 3, 5, 8), np.float32)
    with pytest.raises(ValueError, match=r"k has batch and heads \(2, 4\) but q has \(2, 3\)"):
        hg.ops.attention(q, np.zeros((2, 4, 5, 8), np.float32), np.zeros((2, 4, 5, 8), np.float32))
    with pytest.raises(ValueError, match="k has head size 16 but q has 8"):
        hg.ops.attention(q, np.zeros((2, 3, 5, 16), np.float32), np.zeros((2, 3, 5, 16), np.float32))
    with pytest.raises(ValueError, match=r"v must have shape \(2, 3, 5, 8\)"):
        hg.ops.attention(q, q, np.zeros((2, 3, 5, 4), np.float32))
    with pytest.raises(ValueError, match="causal attention needs Tq <= Tk"):
        hg.ops.attention(q, np.zeros((2, 3, 4, 8), np.float32), np.zeros((2, 3, 4, 8), np.float32),
                         causal=True)
    with pytest.raises(TypeError, match="q must be float32, got int64"):
        hg.ops.attention(q.astype(np.int64), q, q)
    with pytest.raises(ValueError, match=r"q must be \(B, H, T, D\) with 4 dimensions"):
        hg.ops.attention(q[0], q, q)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        hg.ops.attention(q, q, q, scale=float("nan"))
    with pytest.raises(TypeError, match="scale must be a number"):
        hg.ops.attention(q, q, q, scale="1")
    out, lse = hg.ops.attention(q, q, q)
    with pytest.raises(ValueError, match=r"lse must have shape \(2, 3, 5\)"):
        hg.ops.attention_backward(q, q, q, q, out, np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3, 5, 8\)"):
        hg.ops.attention_backward(q[:, :2], q, q, q, out, lse)
