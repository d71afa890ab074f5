"""The CPU fp32 engine holds a 3x3 (or larger) groups-1 conv weight of 64+ output channels
packed once (engine._packs_conv) and runs conv2d_bias_act_packed where the batch's output plane
is small, conv2d_bias_act on the unpacked weight where it is not; saving writes the
(K, C, R, S) weights back."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
from hipgrad import nn
from hipgrad.engine import InferenceEngine
from hipgrad.engine.kernels import PACKED_CONV_ROWS


def _model():
    body = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
    return nn.Sequential(nn.Conv2d(3, 64, 3, stride=2, padding=1), nn.ReLU(), nn.Residual(body), nn.ReLU(),
                         nn.Conv2d(64, 65, 1), nn.Flatten(), nn.Linear(65 * 16, 5))


def test_cpu_engine_packs_conv_weights_runs_packed_where_small_and_saves_unpacked(rng, tmp_path):
    hg.manual_seed(int(rng.integers(1 << 30)))
    model = _model()
    model.eval()
    engine = InferenceEngine.from_model(model, device="cpu")
    convs = [s for s in engine._plan if s.kind == "conv"]
    assert ["weight_packed" in s.tensors for s in convs] == [True, True, True, False]  # not the 1x1
    for batch in (1, PACKED_CONV_ROWS // 16 + 1):  # 4x4 planes: 16 rows per image
        x = rng.standard_normal((batch, 3, 8, 8)).astype(np.float32)
        with hg.trace() as t:
            got = engine.forward(x)
        packed_runs = sum(r["op"] == "conv2d_bias_act_packed" for r in t.ops)
        assert packed_runs == (3 if batch * 16 <= PACKED_CONV_ROWS else 0), (batch, packed_runs)
        want = model(hg.tensor(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    engine.save(str(tmp_path / "convs.safetensors"))
    from safetensors.numpy import load_file

    saved = load_file(str(tmp_path / "convs.safetensors"))
    conv_w = [np.asarray(v) for k, v in model.state_dict().items() if k.endswith("weight") and np.ndim(v) == 4]
    saved_w = [v for v in saved.values() if v.ndim == 4]
    assert sorted(a.tobytes() for a in saved_w) == sorted(a.tobytes() for a in conv_w)
    again = InferenceEngine.load(str(tmp_path / "convs.safetensors"), device="cpu")
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(again.forward(x), engine.forward(x))
