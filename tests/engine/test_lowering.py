"""Layers lower themselves to engine steps (Module.to_steps); the passes fold and fuse them."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import InferenceEngine, nn
from hipgrad.engine.lowering import plan_from_module
from hipgrad.engine.steps import Graph


def test_each_layer_says_its_steps():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)),
                                      nn.Identity()),
                          nn.LeakyReLU(0.2), nn.MaxPool2d(2), nn.AvgPool2d(1), nn.Dropout(0.3),
                          nn.Flatten(), nn.Linear(4, 5), nn.GELU("tanh"))
    raw = model.to_steps("")  # wired: each step reads the value before it, the add two
    assert [s.kind for s in raw] == ["conv", "batch_norm", "act", "conv", "batch_norm", "add", "act",
                                     "maxpool", "avgpool", "flatten", "linear", "act"]
    assert [s.name for s in raw[3:6]] == ["3.body.0", "3.body.1", "3"]
    assert raw[0].inputs == ["input"] and raw[3].inputs == ["2"]
    assert raw[5].inputs == ["3.body.1", "2"] and raw[6].inputs == ["3"]  # the block input, read twice
    assert raw[0].attrs == {"stride": (2, 2), "padding": (1, 1), "dilation": (1, 1), "groups": 1}
    assert raw[6].attrs == {"kind": "leaky_relu", "alpha": pytest.approx(0.2)}
    assert raw[11].attrs == {"kind": "gelu_tanh"}
    np.testing.assert_array_equal(raw[0].arrays["weight"], model[0].weight.data.numpy())
    plan = plan_from_module(model)  # BatchNorms folded, activations and the residual add fused
    assert isinstance(plan, Graph) and plan.inputs == ["input"] and plan.outputs == ["10"]
    assert [s.kind for s in plan] == ["conv", "conv", "maxpool", "avgpool", "flatten", "linear"]
    assert plan[0].attrs["act"] == "relu" and plan[0].attrs["folded_bn"] == "1"
    assert plan[1].inputs == ["2", "2"] and plan[1].attrs["residual"] == "3"
    assert plan[1].attrs["act"] == "leaky_relu" and plan[1].attrs["folded_bn"] == "3.body.1"
    assert plan[-1].attrs["act"] == "gelu_tanh"
    assert not any(s.kind in ("batch_norm", "add", "act") for s in plan)


def test_a_layer_the_engine_cannot_run_is_named():
    class Odd(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"layer 1 of type Odd is not supported"):
        InferenceEngine.from_model(nn.Sequential(nn.ReLU(), Odd()))
    with pytest.raises(ValueError, match=r"layer \(root\) of type list is not supported"):
        plan_from_module([nn.ReLU()])


def test_engine_files_naming_batch_norm_affine_still_load(rng, tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(12), nn.Linear(12, 3))
    bn = model[1]
    bn.running_mean.copy_(hg.tensor(rng.standard_normal(12)))
    bn.running_var.copy_(hg.tensor(rng.uniform(0.5, 2.0, 12)))
    model.eval()
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    engine = InferenceEngine.from_model(model, device="cpu")
    engine.save(str(tmp_path / "e.safetensors"))
    sidecar = tmp_path / "e.json"
    doc = json.loads(sidecar.read_text())
    kinds = [r["kind"] for r in doc["plan"]]
    assert "batch_norm" in kinds
    doc["plan"] = [dict(r, kind="affine" if r["kind"] == "batch_norm" else r["kind"]) for r in doc["plan"]]
    sidecar.write_text(json.dumps(doc))
    old = InferenceEngine.load(str(tmp_path / "e.safetensors"), device="cpu")
    assert "batch_norm" in old.describe()
    np.testing.assert_array_equal(old.forward(x), engine.forward(x))
    np.testing.assert_allclose(old.forward(x), model(hg.tensor(x)).numpy(), rtol=1e-5, atol=1e-6)
