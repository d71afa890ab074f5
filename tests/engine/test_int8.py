"""INT8 engine accuracy: the bias correction against a float64 reference, the error bound of one
int8 convolution, top-1 agreement with fp32 on a small ResNet, which steps stay float32, and
calibration edge cases (an all-zero input, inputs of the other sign than calibration saw)."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import InferenceEngine, nn
from hipgrad.engine import quantize
from tests.reference import conv as ref_conv
from tests.reference import quant as ref_quant


def _conv_model(rng, cin, cout, k, groups=1, padding=0):
    model = nn.Sequential(nn.Conv2d(cin, cout, k, padding=padding, groups=groups))
    sd = model.state_dict()
    fan_in = cin // groups * k * k
    w = (rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    model.load_state_dict({next(k_ for k_ in sd if k_.endswith("weight")): w,
                           next(k_ for k_ in sd if k_.endswith("bias")): b})
    return model.eval(), w.astype(np.float64), b.astype(np.float64)


@pytest.mark.parametrize("groups", [1, 3])
def test_weight_shift_is_the_mean_output_change(rng, groups):
    """weight_shift = conv(x, wq * w_scale) - conv(x, w) for an input constant per channel
    (NumPy float64 convolution over one full window)."""
    cin, cout, k = 3 * groups, 5 * groups, 3
    w = rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32).astype(np.float64)
    mean = np.abs(rng.standard_normal(cin)) + 0.5
    wq, w_scale = quantize.quantize_weight(w)
    x = np.broadcast_to(mean.reshape(1, cin, 1, 1), (1, cin, k, k))
    wd = wq.astype(np.float64) * w_scale.astype(np.float64).reshape(-1, 1, 1, 1)
    want = (ref_conv.conv2d(x, wd, groups=groups) - ref_conv.conv2d(x, w, groups=groups)).reshape(cout)
    got = quantize.weight_shift(w.astype(np.float32), wq, w_scale, mean, groups)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9 * np.abs(want).max())
    lin = quantize.weight_shift(w.reshape(cout, -1)[:, :cin], wq.reshape(cout, -1)[:, :cin], w_scale, mean)
    np.testing.assert_allclose(lin, (wd.reshape(cout, -1)[:, :cin] - w.reshape(cout, -1)[:, :cin]) @ mean,
                               rtol=1e-5, atol=1e-12)


def test_int8_conv_error_bound_and_corrected_bias(rng):
    """One int8 conv on non-negative (post-ReLU) inputs: the engine computes exactly the
    reference qconv2d with the bias less the weight shift; against the float64 convolution its
    error is within the rounding bound, and its mean per channel is far below the uncorrected
    one's."""
    cin, cout, k = 24, 32, 3
    model, w, b = _conv_model(rng, cin, cout, k, padding=1)
    calib = np.maximum(rng.standard_normal((16, cin, 10, 10)), 0).astype(np.float32)
    x = np.maximum(rng.standard_normal((32, cin, 10, 10)), 0).astype(np.float32)
    engine = InferenceEngine.from_model(model, device="cpu", precision="int8").calibrate(calib)
    (s,) = [s for s in engine._plan if s.kind == "conv"]
    assert not s.attrs.get("fp32")  # the only conv is not kept in float32
    scale = float(np.abs(calib).max()) / 127
    assert s.x_scale == pytest.approx(scale, rel=1e-6)
    wq, w_scale = quantize.quantize_weight(w)
    shift = quantize.weight_shift(w, wq, w_scale, calib.astype(np.float64).mean(axis=(0, 2, 3)))
    got = engine.forward(x)
    want_q = ref_quant.qconv2d(ref_quant.quantize(x, scale), wq, scale, w_scale, b - shift, padding=(1, 1))
    np.testing.assert_allclose(got, want_q, rtol=1e-5, atol=1e-5 * np.abs(want_q).max())
    exact = ref_conv.conv2d(x.astype(np.float64), w, b, padding=1)
    plain = ref_quant.qconv2d(ref_quant.quantize(x, scale), wq, scale, w_scale, b, padding=(1, 1))
    # rounding bound: each product's relative error is at most half a step of x and of w
    err = got - exact
    rms_bound = np.sqrt(cin * k * k * ((scale ** 2 / 12) * (w ** 2).mean()
                                       + (w_scale.mean() ** 2 / 12) * (x.astype(np.float64) ** 2).mean()))
    assert np.sqrt((err ** 2).mean()) < rms_bound  # ~0.7 of it measured
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # full windows
    bias_now = np.abs(err[inner].mean(axis=(0, 2, 3))).mean()
    bias_before = np.abs((plain - exact)[inner].mean(axis=(0, 2, 3))).mean()
    assert bias_now < 0.25 * bias_before  # ~0.1 measured


def _resnet(rng, shape, classes):
    hg.manual_seed(int(rng.integers(1 << 30)))
    model = hg.build_model("resnet", shape, classes)
    for _, m in model.named_modules():
        if type(m).__name__ == "BatchNorm2d":
            c = m.num_features
            m.running_mean.copy_(hg.tensor(rng.standard_normal(c) * 0.2))
            m.running_var.copy_(hg.tensor(rng.uniform(0.5, 2.0, c)))
            m.weight.data.copy_(hg.tensor(rng.uniform(0.5, 1.5, c)))
            m.bias.data.copy_(hg.tensor(rng.standard_normal(c) * 0.2))
    return model.eval()


def test_small_resnet_int8_agrees_with_fp32_and_marks_its_fp32_steps(device, rng, tmp_path):
    shape = (3, 12, 12)
    model = _resnet(rng, shape, 10)
    fp32 = InferenceEngine.from_model(model, device=device)
    int8 = InferenceEngine.from_model(model, device=device, precision="int8")
    int8.calibrate([rng.standard_normal((16,) + shape).astype(np.float32) for _ in range(4)])
    x = rng.standard_normal((256,) + shape).astype(np.float32)
    a, b = int8.forward(x), fp32.forward(x)
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 0.005  # ~0.0013 measured
    assert float(np.mean(a.argmax(1) == b.argmax(1))) >= 0.98
    marks = {s.name: s.attrs.get("fp32") for s in int8._plan if s.kind in ("conv", "linear")}
    heads = [n for n, v in marks.items() if v == "head"]
    assert len(heads) == 1 and [s for s in int8._plan if s.name == heads[0]][0].kind == "linear"
    assert "shortcut" in marks.values() and list(marks.values()).count(None) >= len(marks) // 2
    text = int8.describe()
    assert "[fp32: head]" in text and "[fp32: shortcut]" in text and "[int8]" in text
    for s in int8._plan:  # int8 steps keep only their int8 weights, fp32 ones their float32 weights
        if s.kind in ("conv", "linear"):
            assert ("wq" in s.tensors) == (marks[s.name] is None)
    path = tmp_path / "int8.safetensors"
    int8.save(str(path))
    again = InferenceEngine.load(str(path), device=device)
    assert {s.name: s.attrs.get("fp32") for s in again._plan if s.kind in ("conv", "linear")} == marks
    np.testing.assert_array_equal(again.forward(x[:8]), int8.forward(x[:8]))


def test_a_model_of_one_layer_stays_int8(rng):
    model = nn.Sequential(nn.Linear(12, 5))
    engine = InferenceEngine.from_model(model, device="cpu", precision="int8")
    engine.calibrate(rng.standard_normal((8, 12)).astype(np.float32))
    (s,) = [s for s in engine._plan if s.kind == "linear"]
    assert "wq" in s.tensors and "weight" not in s.tensors and not s.attrs.get("fp32")


def test_all_zero_calibration(rng):
    """Calibration that sees only zeros: scale 1, the bias as it was; zeros in give the fp32
    answer (the bias), any input a finite one."""
    model, w, b = _conv_model(rng, 4, 6, 3)
    shape = (4, 7, 7)
    engine = InferenceEngine.from_model(model, device="cpu", precision="int8").calibrate(
        np.zeros((3,) + shape, np.float32))
    (s,) = [s for s in engine._plan if s.kind == "conv"]
    assert s.x_scale == 1.0
    np.testing.assert_array_equal(s.tensors["bias"].numpy(), b.astype(np.float32))
    zeros = np.zeros((2,) + shape, np.float32)
    np.testing.assert_allclose(engine.forward(zeros), ref_conv.conv2d(zeros.astype(np.float64), w, b),
                               rtol=1e-6, atol=1e-7)
    assert np.isfinite(engine.forward(rng.standard_normal((2,) + shape).astype(np.float32))).all()


def test_inputs_of_the_other_sign_than_calibration_saw(rng):
    """Calibrated on non-negative inputs only, a step still takes negative ones (activations are
    symmetric int8): -x gives the float64 answer within the rounding bound."""
    cin, cout, k = 8, 12, 3
    model, w, b = _conv_model(rng, cin, cout, k)
    calib = np.abs(rng.standard_normal((8, cin, 9, 9))).astype(np.float32)
    engine = InferenceEngine.from_model(model, device="cpu", precision="int8").calibrate(calib)
    x = -np.abs(rng.standard_normal((4, cin, 9, 9))).astype(np.float32)
    want = ref_conv.conv2d(x.astype(np.float64), w, b)
    got = engine.forward(x)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.03
    neg = np.minimum(want, 0) < -0.1 * np.abs(want).max()
    assert neg.any() and (got[neg] < 0).all()
