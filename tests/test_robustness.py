"""Regression tests for the classes of bad input that once crashed, hung or answered wrongly:
unaligned packed weights, allocation inside a parallel region, overflowing geometry, O(n) passes
before a size check, truthy flags, strings as numbers, lossy conversions, exceptions of the wrong
kind, float32-overflowing hyper-parameters and non-finite semantics. Calls that used to kill the
interpreter run in a child process (tests/fuzz/worker.py), so a regression is a failure, not a
crash of the test run."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import nn, ops, optim

from .fuzz.worker import run_isolated


def _isolated(code: str, timeout: float = 60.0) -> str:
    """Runs `code` in a fresh interpreter; returns its stdout, failing on a crash or a hang."""
    res = run_isolated(code, timeout=timeout)
    assert res.status == "ok", f"{res.status}: {res.detail}\n--- reproducer ---\n{code}"
    return res.stdout


# ---- crashes -----------------------------------------------------------------------------------
def test_packed_weight_at_any_float_offset_matches_reference(rng):
    """pack_linear_weight's result moved through NumPy (often only 16/32-byte aligned) gives the
    reference answer at every float offset; it used to segfault."""
    n, k, m = int(rng.integers(17, 60)), int(rng.integers(3, 40)), int(rng.integers(1, 9))
    seed = int(rng.integers(2**31))
    out = _isolated(f"""
import numpy as np, hipgrad as hg
from hipgrad import ops
rng = np.random.default_rng({seed})
w = rng.standard_normal(({n}, {k})).astype(np.float32)
x = rng.standard_normal(({m}, {k})).astype(np.float32)
p = ops.pack_linear_weight(w).numpy()
ref = x.astype(np.float64) @ w.T.astype(np.float64)
for off in (4, 8, 16, 32, 48, 0):  # float offsets from a 64-byte boundary
    buf = np.zeros(p.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + off
    v = buf[start:start + p.nbytes].view(np.float32).reshape(p.shape)
    v[...] = p
    y = ops.linear_bias_act_packed(x, hg.from_dlpack(v), n={n}, activation=None).numpy()
    err = np.abs(y - ref).max() / (np.abs(ref).max() + 1)
    assert err < 1e-5, (off, err)
print("ok")
""")
    assert out.strip().endswith("ok")


def test_from_dlpack_of_misaligned_data_copies():
    buf = np.zeros(4 * 10 + 1, np.uint8)
    view = np.ndarray((10,), np.float32, buf.data, 1)  # one byte past an aligned start
    view[...] = np.arange(10, dtype=np.float32)
    assert not view.flags.aligned
    t = hg.from_dlpack(view)
    assert t.data_ptr() % 4 == 0  # a copy at an aligned address
    np.testing.assert_array_equal(t.numpy(), np.arange(10, dtype=np.float32))


def test_qconv2d_large_stride_is_bounded_and_correct(rng):
    """stride 2**20 on a 3x3x10x6 input used to abort (bad_alloc inside the parallel region);
    stride 2**16 took 12 GB. The stride beyond the input changes nothing, so neither does the
    scratch: the answer equals stride = the whole input, from the float reference."""
    out = _isolated("""
import resource, numpy as np, hipgrad as hg
from hipgrad import ops
rng = np.random.default_rng(1)
xq = rng.integers(-127, 128, (3, 3, 10, 6)).astype(np.int8)
wq = rng.integers(-127, 128, (2, 3, 3, 3)).astype(np.int8)
ws = np.array([0.5, 0.25], np.float32)
for s in (2**20, 2**16, (2**40, 3)):
    y = ops.qconv2d(xq, wq, 1.0, ws, stride=s).numpy()
    ref = ops.conv2d(xq.astype(np.float32), wq.astype(np.float32), stride=s).numpy() * ws[None, :, None, None]
    assert np.allclose(y, ref), s
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")
    assert int(out.split()[-1]) < 2_000_000  # KiB: far from the gigabytes it took


@pytest.mark.parametrize("call, names", [
    ("ops.max_pool2d(x, 3, stride=2**62, padding=1)", None),
    ("ops.max_pool2d(x, 3, stride=(1, 2**63 - 1), padding=1)", None),
    ("ops.avg_pool2d(np.ones((1, 1, 1, 1), np.float32), 2**32, padding=2**31)", "padded input plane"),
    ("ops.avg_pool2d_backward(np.ones((1, 1, 1, 1), np.float32), (1, 1, 1, 1), 2**32, padding=2**31)",
     "padded input plane"),
    ("ops.conv2d(x, w, dilation=2**62)", "dilation"),
    ("ops.conv2d(x, w, padding=2**62)", "padding"),
    ("ops.conv2d(x, w, padding=2**31)", "output"),
    ("ops.conv2d_backward_data(np.ones((1, 2, 1, 1), np.float32), w, (1, 2, 2**62, 2**62))", None),
    ("ops.conv2d(x, w, stride=2**63 - 1)", None),
    ("ops.qconv2d(xq, wq, 1.0, np.ones(2, np.float32), dilation=(2**62, 1))", "dilation"),
])
def test_geometry_overflow_is_refused_or_exact(call, names):
    """Sizes from user integers are overflow-checked in the front end: a ValueError naming the
    argument, or (a stride past the input) the exact one-window answer. Used to be SIGFPE,
    inf, or a "negative dimension" message."""
    code = f"""
import numpy as np, hipgrad as hg
from hipgrad import ops
x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
w = np.ones((2, 2, 3, 3), np.float32)
xq, wq = np.ones((1, 2, 8, 8), np.int8), np.ones((2, 2, 3, 3), np.int8)
try:
    r = {call}
    r = r[0] if isinstance(r, tuple) else r
    a = r.numpy()
    print("RESULT", a.shape, bool(np.isfinite(a).all()))
except ValueError as e:
    print("VALUEERROR", e)
"""
    out = _isolated(code).strip().splitlines()[-1]
    if names is None:
        assert out.startswith(("RESULT", "VALUEERROR")), out
        if out.startswith("RESULT"):
            assert out.endswith("True"), out
    else:
        assert out.startswith("VALUEERROR") and names in out, out


def test_large_stride_pool_equals_one_window(rng):
    x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    y, am = ops.max_pool2d(x, 3, stride=2**62, padding=1)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    np.testing.assert_array_equal(y.numpy()[..., 0, 0], xp[:, :, :3, :3].max(axis=(2, 3)))
    ya = ops.avg_pool2d(x, 3, stride=(2**40, 2), padding=1).numpy()
    ref = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))[:, :, :3, :]
    np.testing.assert_allclose(ya[:, :, 0, :], np.stack(
        [ref[..., q * 2:q * 2 + 3].sum(axis=(2, 3)) / 9 for q in range(ya.shape[3])], -1),
        rtol=1e-5, atol=1e-6)


# ---- hangs -------------------------------------------------------------------------------------
def test_broadcast_views_are_sized_before_any_pass():
    """hg.tensor over a 2**40-element zero-stride view used to scan it for a range check first;
    the size (a MemoryError) is decided before any O(n) pass, and smaller broadcasts convert
    after checking only their distinct values."""
    _isolated("""
import numpy as np, hipgrad as hg
for dt in (np.int64, np.float64, np.float32):
    try:
        hg.tensor(np.broadcast_to(dt(0), (2**40,)), dtype=np.int64 if dt is np.int64 else None)
        raise SystemExit("accepted")
    except MemoryError:
        pass
t = hg.tensor(np.broadcast_to(np.array([3, -1], np.int64), (1000, 2)), dtype=np.int8)
assert t.shape == (1000, 2) and (t.numpy() == [3, -1]).all()
""", timeout=20)


# ---- flags and numbers --------------------------------------------------------------------------
def _bn_args(rng):
    return (rng.standard_normal((4, 3)).astype(np.float32), np.ones(3, np.float32),
            np.zeros(3, np.float32), hg.zeros(3), hg.tensor(np.ones(3, np.float32)))


@pytest.mark.parametrize("bad", ["False", "no", 0, 1, None, np.array([True])])
def test_flags_accept_bool_only(rng, bad):
    x, g, b, rm, rv = _bn_args(rng)
    before = rm.numpy().copy()
    with pytest.raises(TypeError, match="batch_norm: training"):
        ops.batch_norm(x, g, b, rm, rv, training=bad)
    np.testing.assert_array_equal(rm.numpy(), before)  # no training-mode update
    a = rng.standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(TypeError, match="gemm: trans_a"):
        ops.gemm(a, a.T.copy(), trans_a=bad)
    with pytest.raises(TypeError, match="with_argmax"):
        ops.max_pool2d(np.zeros((1, 1, 2, 2), np.float32), 2, with_argmax=bad)
    p = hg.tensor(a)
    with pytest.raises(TypeError, match="nesterov"):
        ops.sgd_step(p, a, hg.zeros((3, 4)), lr=0.1, momentum=0.9, nesterov=bad)
    with pytest.raises(TypeError, match="decoupled"):
        ops.adam_step(p, a, hg.zeros((3, 4)), hg.zeros((3, 4)), step=1, lr=0.1, decoupled=bad)
    with pytest.raises(TypeError, match="SGD: nesterov"):
        optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.5, nesterov=bad)
    # NumPy bools are bools
    ops.batch_norm(x, g, b, rm, rv, training=np.bool_(False))
    np.testing.assert_array_equal(rm.numpy(), before)


@pytest.mark.parametrize("bad, exc", [("2", TypeError), (None, TypeError), ("abc", TypeError),
                                      (10**400, ValueError), (np.array([1.0, 2.0]), TypeError),
                                      (True, TypeError), (complex(1, 1), TypeError)])
def test_scalar_arguments_are_real_numbers_named(bad, exc):
    a = np.ones(3, np.float32)
    calls = {
        "add: alpha": lambda: ops.add(a, a, alpha=bad),
        "fill_: value": lambda: ops.fill_(hg.tensor(a), bad),
        "activation: alpha": lambda: ops.activation(a, "elu", alpha=bad),
        "quantize: scale": lambda: ops.quantize(a, bad),
        "dropout: p": lambda: ops.dropout(a, bad, 1),
        "SGD: lr": lambda: optim.SGD(nn.Linear(2, 2).parameters(), lr=bad),
        "SGD: momentum": lambda: optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=bad),
        "Adam: eps": lambda: optim.Adam(nn.Linear(2, 2).parameters(), eps=bad),
        "LeakyReLU: negative_slope": lambda: nn.LeakyReLU(bad),
        "Dropout: p": lambda: nn.Dropout(bad),
        "BatchNorm2d: eps": lambda: nn.BatchNorm2d(3, eps=bad),
        "StepLR: gamma": lambda: optim.StepLR(optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1),
                                              2, gamma=bad),
    }
    for name, call in calls.items():
        with pytest.raises(exc, match=name):
            call()


@pytest.mark.parametrize("make, name", [
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=1e40), "SGD: momentum"),
    (lambda ps: optim.SGD(ps, lr=1e39), "SGD: lr"),
    (lambda ps: optim.Adam(ps, eps=1e-300), "Adam: eps"),
    (lambda ps: optim.AdamW(ps, betas=(0.9, 1 - 1e-12)), r"AdamW: betas\[1\]"),
    (lambda ps: optim.SGD(ps, lr=0.1, weight_decay=float("nan")), "SGD: weight_decay"),
])
def test_hyper_parameters_checked_in_float32(make, name):
    """Finite in float64, not in float32 (the kernels' precision): refused up front; these used
    to turn every weight into NaN or fail at step()."""
    with pytest.raises(ValueError, match=name):
        make(nn.Linear(2, 2).parameters())


def test_optimizer_step_rejects_float32_overflow_at_the_op():
    p = hg.tensor(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="sgd_step: momentum"):
        ops.sgd_step(p, np.ones(3, np.float32), hg.zeros(3), lr=0.1, momentum=1e40)
    with pytest.raises(ValueError, match="adam_step: eps"):
        ops.adam_step(p, np.ones(3, np.float32), hg.zeros(3), hg.zeros(3), step=1, lr=0.1,
                      eps=1e-300)


# ---- lossy conversions ----------------------------------------------------------------------------
@pytest.mark.parametrize("data, dtype, match", [
    ([-1.5, 300.0], np.uint8, "whole number"),
    ([-1.0, 300.0], np.uint8, "do not fit"),
    ([np.nan], np.int64, "nan"),
    ([np.inf], np.int32, "inf"),
    ([1e40], np.float32, "overflows float32"),
    ([2.0**63], np.int64, "do not fit"),
])
def test_tensor_refuses_inexact_conversions(data, dtype, match):
    with pytest.raises(ValueError, match=match):
        hg.tensor(np.array(data), dtype=dtype)


def test_tensor_exact_conversions_still_work(rng):
    v = rng.integers(-128, 128, 50).astype(np.float64)
    np.testing.assert_array_equal(hg.tensor(v, dtype=np.int8).numpy(), v.astype(np.int8))
    np.testing.assert_array_equal(hg.tensor([[1, 0]], dtype=np.float32).numpy(), [[1.0, 0.0]])


def test_complex_data_and_dtypes_refused_naming_the_argument():
    with pytest.raises(TypeError, match="real numbers"):
        hg.tensor(np.array([1 + 2j]), dtype=np.float32)
    with pytest.raises(TypeError, match="dtype must be one of.*complex128"):
        hg.tensor(np.array([1 + 2j]))
    with pytest.raises(TypeError, match="Parameter: data"):
        nn.Parameter(np.array([1 + 2j, 3]))
    with pytest.raises(TypeError, match="dtype must be one of"):
        hg.tensor([1.0], dtype=np.complex64)
    with pytest.raises(TypeError, match="dtype must be one of"):
        hg.zeros(3, dtype="complex64")
    with pytest.raises(TypeError, match="Flatten: start_dim"):
        nn.Flatten(start_dim=1.7)


# ---- exceptions of the right kind ------------------------------------------------------------------
def test_optimizer_and_scheduler_state_errors_are_named():
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="SGD: params"):
        optim.SGD(None, lr=0.1)
    with pytest.raises(TypeError, match="SGD: params"):
        optim.SGD(lin.weight, lr=0.1)
    opt = optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="state_dict must be a dict"):
        opt.load_state_dict([])
    sd = opt.state_dict()
    del sd["state"]
    with pytest.raises(ValueError, match="'state'"):
        opt.load_state_dict(sd)
    sd = opt.state_dict()
    sd["hyper"]["momentum"] = "0.5"
    with pytest.raises(TypeError, match=r"hyper\['momentum'\]"):
        opt.load_state_dict(sd)
    assert opt.hyper["momentum"] == 0.9  # nothing changed
    sched = optim.StepLR(opt, 2)
    bad = sched.state_dict()
    bad["step_size"] = 0
    with pytest.raises(ValueError, match="step_size"):
        sched.load_state_dict(bad)
    assert sched.step_size == 2


@pytest.mark.parametrize("bad", [1.5, 3, None, "x", True])
def test_module_given_a_scalar_names_x(bad):
    with pytest.raises(TypeError, match="Linear: x must be"):
        nn.Linear(2, 2)(bad)


# ---- non-finite semantics (PyTorch's) ----------------------------------------------------------------
def test_int8_relu_epilogue_keeps_nan_like_fp32_relu():
    xq = np.ones((2, 4), np.int8)
    wq = np.ones((3, 4), np.int8)
    bias = np.array([np.nan, -1e3, 2.0], np.float32)
    y = ops.qgemm(xq, wq, 1.0, np.ones(3, np.float32), bias, activation="relu").numpy()
    ref = ops.activation(np.float32(4.0) + np.tile(bias, (2, 1)), "relu").numpy()
    assert np.isnan(y[:, 0]).all() and np.isnan(ref[:, 0]).all()
    np.testing.assert_array_equal(y[:, 1:], ref[:, 1:])
    yc = ops.qconv2d(np.ones((1, 4, 1, 1), np.int8), np.ones((3, 4, 1, 1), np.int8), 1.0,
                     np.ones(3, np.float32), bias, activation="relu").numpy()
    assert np.isnan(yc[0, 0]).all() and (yc[0, 1] == 0).all() and (yc[0, 2] == 6).all()


def test_batch_norm_non_finite_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    x[1, 0, 0, 1] = -np.inf
    x[2, 1, 1, 0] = np.nan
    g = rng.standard_normal(3).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    rm, rv = hg.zeros(3), hg.tensor(np.ones(3, np.float32))
    y, mean, invstd = ops.batch_norm(x, g, b, rm, rv, training=True)
    ref = torch.nn.functional.batch_norm(torch.tensor(x), torch.zeros(3), torch.ones(3),
                                         torch.tensor(g), torch.tensor(b), training=True)
    np.testing.assert_array_equal(np.isnan(y.numpy()), np.isnan(ref.numpy()))
    np.testing.assert_allclose(y.numpy()[:, 2], ref.numpy()[:, 2], rtol=1e-4, atol=1e-5)
    # eval backward: dx = dy * gamma * invstd, whatever x holds
    dy = rng.standard_normal(x.shape).astype(np.float32)
    inv = np.full(3, 0.5, np.float32)
    dx, _, _ = ops.batch_norm_backward(dy, x, g, np.zeros(3, np.float32), inv, training=False)
    np.testing.assert_allclose(dx.numpy(), dy * (g * inv)[None, :, None, None], rtol=1e-6)


# ---- the engine and the checkpoint readers ------------------------------------------------------------
def _mlp():
    return hg.build_model("mlp", (1, 4, 4), 3, hidden=(5,))


def test_engine_forward_sizes_a_broadcast_batch_before_scanning_it():
    """2**46 broadcast elements were scanned for NaN before anything else (a hang)."""
    _isolated("""
import numpy as np, hipgrad as hg
e = hg.InferenceEngine.from_model(hg.build_model("mlp", (1, 8, 8), 3).eval(), device="cpu")
try:
    e.forward(np.broadcast_to(np.float32(0), (2**40, 1, 8, 8)))
    raise SystemExit("accepted")
except MemoryError:
    pass
""", timeout=20)


@pytest.mark.parametrize("path, exc", [("", ValueError), (None, TypeError), (5, TypeError),
                                       (b"x", TypeError)])
def test_engine_save_path_must_name_a_file(tmp_path, monkeypatch, path, exc):
    monkeypatch.chdir(tmp_path)
    engine = hg.InferenceEngine.from_model(_mlp().eval(), device="cpu")
    with pytest.raises(exc, match="InferenceEngine.save: path"):
        engine.save(path)
    assert list(tmp_path.iterdir()) == []  # '' used to write model.* into the current directory
    with pytest.raises(ValueError, match="checkpoint: path"):
        hg.save_checkpoint("", _mlp())


@pytest.mark.parametrize("field, value", [("epoch", "x"), ("history", {}), ("spec", [1]),
                                          ("rng", {"state": 3}), ("optimizer", 7),
                                          ("optimizer.state", {"__ndarray__": {"dtype": {}}}),
                                          ("spec.in_shape", "abc")])
def test_corrupt_sidecar_is_a_checkpoint_error_and_changes_nothing(tmp_path, field, value):
    import json

    from hipgrad.training.checkpoint import CheckpointError
    model = _mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.backward(model(np.ones((2, 1, 4, 4), np.float32)))
    opt.step()
    path = hg.save_checkpoint(tmp_path / "ck", model, optimizer=opt)
    side = path.with_suffix(".json")
    doc = json.loads(side.read_text())
    node, *rest = field.split(".")
    if rest:
        doc[node][rest[0]] = value
    else:
        doc[node] = value
    side.write_text(json.dumps(doc))
    data = {p.name: p.read_bytes() for p in tmp_path.joinpath("ck").iterdir()}
    target = _mlp()
    t_opt = optim.SGD(target.parameters(), lr=0.5, momentum=0.1)
    before = target.state_dict()
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        ck = hg.load_checkpoint(path)
        ck.build_model()
        ck.restore(target, t_opt)
        hg.InferenceEngine.load(str(path), device="cpu")
    after = target.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert t_opt.hyper["lr"] == 0.5 and t_opt.hyper["momentum"] == 0.1
    assert data == {p.name: p.read_bytes() for p in tmp_path.joinpath("ck").iterdir()}
