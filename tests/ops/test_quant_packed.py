"""qconv2d with weights packed once (qpack_weight): the packed layout decoded against wq, results
bit-identical to the unpacked op and exact against an int64 NumPy reference under every CPU
variant, buffers packed under another ISA or for another shape refused, and the INT8 engine's
CPU convs running on weights packed at load."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import InferenceEngine, nn
from tests.ops.test_quant import QCONV_SHAPES, QUANT_ISAS, _forced_isa, _lacks, quant_isa  # noqa: F401
from tests.reference import quant as ref

HEADER = 5  # {tag, rows, K, groups, k values per group}


def _poisoned(shape) -> hg.Tensor:
    return hg.tensor(np.full(shape, np.nan, np.float32))


def _decode(packed: np.ndarray, rows: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """(wq as (rows, K), corr) from a packed buffer: 4 int8 or 2 int16 per 32-bit word."""
    groups, group = int(packed[3]), int(packed[4])
    body = np.ascontiguousarray(packed[HEADER:HEADER + rows * groups])
    values = body.view(np.int8 if group == 4 else np.int16).reshape(rows, groups * group)
    return values[:, :K].astype(np.int64), packed[HEADER + rows * groups:].astype(np.int64)


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (7, 27), (33, 64 * 9), (65, 13)])
def test_qpack_weight_holds_wq_and_its_correction(quant_isa, rng, shape):
    rows, K = shape
    wq = rng.integers(-128, 128, (rows, K)).astype(np.int8)
    p = hg.ops.qpack_weight(wq).numpy()
    assert p.dtype == np.int32 and p.ndim == 1
    assert int(p[0]) == hg._C.ops.cpu_qpack_tag() and (int(p[1]), int(p[2])) == (rows, K)
    groups, group = int(p[3]), int(p[4])
    assert group in (2, 4) and groups == -(-K // group) and p.size == HEADER + rows * (groups + 1)
    got, corr = _decode(p, rows, K)
    np.testing.assert_array_equal(got, wq.astype(np.int64))
    # the shifted (u8 x + 128) variant needs 128 * sum_k w per row; the others none
    want = 128 * wq.astype(np.int64).sum(axis=1) if quant_isa == "avx512" else np.zeros(rows)
    np.testing.assert_array_equal(corr, want)


@pytest.mark.parametrize("shape", QCONV_SHAPES, ids=lambda s: "x" + "-".join(map(str, s[0])))
def test_packed_qconv2d_is_bit_identical_and_exact(quant_isa, rng, shape):
    xs, ws, kw = shape
    xq = rng.integers(-128, 128, xs).astype(np.int8)
    wq = rng.integers(-128, 128, ws).astype(np.int8)
    packed = hg.ops.qpack_weight(wq)
    ones = np.ones(ws[0], np.float32)
    plain = hg.ops.qconv2d(xq, wq, 1.0, ones, impl="handwritten", **kw).numpy()
    out = _poisoned(plain.shape)
    got = hg.ops.qconv2d(xq, wq, 1.0, ones, impl="handwritten", out=out, packed=packed, **kw).numpy()
    assert np.array_equal(got, plain), f"{quant_isa} {shape}"  # the int32 sums, exact below 2^24
    pairs = {k: (v, v) if isinstance(v, int) and k != "groups" else v for k, v in kw.items()}
    want = ref.qconv2d(xq, wq, 1.0, np.ones(ws[0]), **pairs).astype(np.float32)
    assert np.array_equal(got, want), f"{quant_isa} {shape}"
    # with scales, bias and an activation: the same epilogue on the same sums
    x_scale, w_scale = 0.013, rng.uniform(1e-3, 1e-2, ws[0]).astype(np.float32)
    bias = rng.standard_normal(ws[0]).astype(np.float32)
    args = (xq, wq, x_scale, w_scale, bias)
    a = hg.ops.qconv2d(*args, activation="relu", impl="handwritten", **kw).numpy()
    b = hg.ops.qconv2d(*args, activation="relu", impl="handwritten", packed=packed,
                       out=_poisoned(a.shape), **kw).numpy()
    assert np.array_equal(a, b), f"{quant_isa} {shape} with epilogue"


def test_packed_weights_refused_under_another_isa_or_shape(rng):
    wq = rng.integers(-127, 128, (6, 3, 3, 3)).astype(np.int8)
    xq = rng.integers(-127, 128, (1, 3, 7, 7)).astype(np.int8)
    ws = np.ones(6, np.float32)
    packed = hg.ops.qpack_weight(wq)
    available = [isa for isa in QUANT_ISAS if not _lacks(isa)]
    others = [isa for isa in available if isa != "generic"]
    if others:  # packed under the generic kernels, used under another variant
        with _forced_isa("generic"):
            generic = hg.ops.qpack_weight(wq)
        with _forced_isa(others[-1]):
            with pytest.raises(ValueError, match="qconv2d: packed was made under another CPU ISA"):
                hg.ops.qconv2d(xq, wq, 0.1, ws, packed=generic)
    with pytest.raises(ValueError, match=r"qconv2d: packed holds \(6, 27\) weights"):
        hg.ops.qconv2d(xq[:, :2], wq[:, :2], 0.1, ws, packed=packed)
    with pytest.raises(ValueError, match=r"qconv2d: packed holds \(6, 27\) weights"):
        hg.ops.qconv2d(xq, wq[:5], 0.1, ws[:5], packed=packed)
    with pytest.raises(ValueError, match="qconv2d: packed"):  # cut short
        hg.ops.qconv2d(xq, wq, 0.1, ws, packed=packed.numpy()[:-1])
    with pytest.raises(ValueError, match="qconv2d: packed must be the 1-D int32 tensor"):
        hg.ops.qconv2d(xq, wq, 0.1, ws, packed=packed.numpy().reshape(1, -1))
    with pytest.raises((TypeError, ValueError), match="packed"):
        hg.ops.qconv2d(xq, wq, 0.1, ws, packed=packed.numpy().astype(np.int64))
    with pytest.raises((TypeError, ValueError), match="qpack_weight: wq"):
        hg.ops.qpack_weight(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="qpack_weight: wq must be at least 2-D"):
        hg.ops.qpack_weight(np.zeros(4, np.int8))


def _small_convnet(rng) -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(24, 24, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(24 * 5 * 5, 10))
    sd = model.state_dict()
    model.load_state_dict({k: (rng.standard_normal(v.shape) * 0.2).astype(np.float32)
                           for k, v in ((k, np.asarray(v.numpy() if hasattr(v, "numpy") else v))
                                        for k, v in sd.items())})
    return model.eval()


def test_int8_engine_convs_run_on_weights_packed_at_load(rng, tmp_path):
    model = _small_convnet(rng)
    calib = rng.standard_normal((8, 3, 9, 9)).astype(np.float32)
    x = rng.standard_normal((3, 3, 9, 9)).astype(np.float32)
    engine = InferenceEngine.from_model(model, device="cpu", precision="int8").calibrate(calib)
    convs = [s for s in engine._plan if s.kind == "conv" and "wq" in s.tensors]
    assert convs and all("wq_packed" in s.tensors for s in convs)
    for s in convs:
        got, _ = _decode(s.tensors["wq_packed"].numpy(), s.tensors["wq"].shape[0],
                         int(np.prod(s.tensors["wq"].shape[1:])))
        np.testing.assert_array_equal(got, s.tensors["wq"].numpy().reshape(got.shape))
    packed_out = np.asarray(engine.forward(x))
    plain = InferenceEngine.from_model(model, device="cpu", precision="int8").calibrate(calib)
    for s in plain._plan:  # the same engine on the per-call packing
        s.tensors.pop("wq_packed", None)
        s.attrs.pop("qpack_tag", None)
    assert np.array_equal(np.asarray(plain.forward(x)), packed_out)
    engine.save(tmp_path / "e.hg")  # the file keeps wq only; a load packs again
    loaded = InferenceEngine.load(tmp_path / "e.hg", device="cpu")
    assert all("wq_packed" in s.tensors for s in loaded._plan if s.kind == "conv" and "wq" in s.tensors)
    assert np.array_equal(np.asarray(loaded.forward(x)), packed_out)


def test_packed_weights_and_inputs_must_share_the_cpu(device, rng):
    """A packed buffer feeds the CPU kernel only: with xq (or packed) elsewhere, a ValueError."""
    from tests.conftest import to_dev
    xq = rng.integers(-127, 128, (1, 3, 6, 5)).astype(np.int8)
    wq = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    ws = rng.uniform(1e-3, 1e-2, 4).astype(np.float32)
    packed = hg.ops.qpack_weight(wq)
    want = ref.qconv2d(xq, wq, 0.05, ws, None, padding=(1, 1))
    if device == "cpu":
        got = hg.ops.qconv2d(xq, wq, 0.05, ws, padding=1, packed=packed, out=_poisoned(want.shape))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
        return
    args = (to_dev(xq, device), to_dev(wq, device), 0.05, to_dev(ws, device))
    with pytest.raises(ValueError, match="qconv2d: packed weights are CPU only"):
        hg.ops.qconv2d(*args, padding=1, packed=packed)
    with pytest.raises(ValueError, match="qpack_weight: wq must be on the CPU"):
        hg.ops.qpack_weight(args[1])
    np.testing.assert_allclose(hg.ops.qconv2d(*args, padding=1).numpy(), want, rtol=1e-5, atol=1e-5)
