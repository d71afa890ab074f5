"""Models by name: output shapes for several input shapes, rebuilding from the spec."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hipgrad as hg
from hipgrad.training.models import build_model, model_from_spec


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet"])
@pytest.mark.parametrize("in_shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (2, 5, 7)],
                         ids=["digits", "mnist", "cifar", "odd"])
def test_forward_shape_and_spec(rng, name, in_shape):
    hg.manual_seed(0)
    model = build_model(name, in_shape, 7)
    x = rng.standard_normal((3, *in_shape)).astype(np.float32)
    y = model(hg.tensor(x))
    assert tuple(y.shape) == (3, 7)
    assert np.all(np.isfinite(y.numpy()))
    spec = json.loads(json.dumps(model.spec))
    again = model_from_spec(spec)
    sd, sd2 = model.state_dict(), again.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in sd2.items()}


def test_lenet_matches_classic_shapes():
    sd = build_model("lenet", (1, 28, 28), 10, dropout=0.0).state_dict()
    assert sd["0.weight"].shape == (6, 1, 5, 5) and sd["3.weight"].shape == (16, 6, 5, 5)
    assert sd["7.weight"].shape == (120, 400) and sd["11.weight"].shape == (10, 84)
    small = build_model("lenet", (1, 8, 8), 10).state_dict()   # 16/32 channels, dropout
    assert small["3.weight"].shape == (32, 16, 5, 5) and small["7.weight"].shape == (120, 128)
    assert small["12.weight"].shape == (10, 84)
    narrow = build_model("lenet", (1, 8, 8), 10, channels=(6, 16))
    assert narrow.state_dict()["7.weight"].shape == (120, 64)
    assert narrow.spec["options"] == {"channels": [6, 16]}


def test_options_and_bad_names():
    model = build_model("mlp", (1, 8, 8), 10, hidden=(32, 16))
    assert model.spec["options"] == {"hidden": [32, 16]}
    assert model.state_dict()["3.weight"].shape == (16, 32)
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"in_shape must be \(C, H, W\)"):
        build_model("mlp", (8, 8), 10)
    with pytest.raises(ValueError, match="model spec must hold name"):
        model_from_spec({"name": "mlp"})
