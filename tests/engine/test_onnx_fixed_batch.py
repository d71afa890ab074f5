"""Models exported without a dynamic batch axis: one whose every value keeps the batch first
runs at any batch size (each sample as onnxruntime computes it alone); one whose shapes fold
its fixed batch in runs at that batch only and refuses any other with a ValueError naming the
input and the shape it needs, also after a save and load."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hipgrad import InferenceEngine

onnx = pytest.importorskip("onnx", reason="pip install onnx")
torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime for the runtime comparison")
from onnx import helper  # noqa: E402

from . import onnx_cases  # noqa: E402

nn = torch.nn


class PerSample(nn.Module):
    """conv, then x.view(x.size(0), -1): the batch stays the first axis of every value."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 5 * 5, 6)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).view(x.size(0), -1))


class Folded(nn.Module):
    """conv, then reshape(1, -1): the whole batch becomes one row, a Linear over all of it."""

    def __init__(self, batch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(batch * 4 * 5 * 5, 6)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).reshape(1, -1))


def _export(model, path, batch):
    """The legacy exporter without dynamic axes: the file's input is (batch, 3, 5, 5)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.randn(batch, 3, 5, 5),), str(path), dynamo=False,
                          opset_version=17, input_names=["images"], output_names=["out"])
    return str(path)


def test_a_batch_independent_fixed_export_runs_at_any_batch(tmp_path, rng):
    """Exported at batch 2: x.view(x.size(0), -1) becomes a Reshape to the constant (2, -1),
    which keeps the batch as the first axis, so the plan holds for any batch."""
    from hipgrad.engine.onnx import graph_from_onnx

    path = _export(PerSample(), tmp_path / "per_sample.onnx", 2)
    graph, meta = graph_from_onnx(path)
    assert meta["batch"] is None
    assert [s.attrs["shape"][0] for s in graph.steps if s.kind == "reshape"] in ([0], [-1])
    engine = InferenceEngine.load(path, device="cpu")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for n in (1, 2, 5):
        x = rng.standard_normal((n, 3, 5, 5)).astype(np.float32)
        pairs = [x[i:i + 2] for i in range(0, n - 1, 2)]  # the file takes batches of 2
        want = np.concatenate([sess.run(None, {"images": p})[0] for p in pairs]) if pairs else None
        got = engine.forward(x)
        assert got.shape == (n, 6)
        if want is not None:
            np.testing.assert_allclose(got[:len(want)], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model, batch", [("folded", 1), ("folded", 2), ("per_sample", 1)])
def test_a_batch_folding_fixed_export_refuses_other_batches(tmp_path, rng, model, batch):
    """reshape(1, -1) folds the batch into one row (at batch 1 a per-sample view(1, -1) is the
    same file, so it is held to batch 1 as well): the plan holds at the file's batch only."""
    from hipgrad.engine.onnx import graph_from_onnx

    made = Folded(batch) if model == "folded" else PerSample()
    path = _export(made, tmp_path / f"{model}{batch}.onnx", batch)
    assert graph_from_onnx(path)[1]["batch"] == batch
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    engine = InferenceEngine.load(path, device="cpu")
    x = rng.standard_normal((batch, 3, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(engine.forward(x), sess.run(None, {"images": x})[0], rtol=1e-4, atol=1e-5)
    assert engine.forward(x).shape == (1, 6) if model == "folded" else (batch, 6)
    expected = (rf"x must have shape \({batch}, 3, 5, 5\), got \({batch + 2}, 3, 5, 5\): "
                rf".*'images' has a fixed batch of {batch}")
    with pytest.raises(ValueError, match=expected):
        engine.forward(rng.standard_normal((batch + 2, 3, 5, 5)).astype(np.float32))
    engine.save(str(tmp_path / "saved"))
    again = InferenceEngine.load(str(tmp_path / "saved"), device="cpu")
    np.testing.assert_array_equal(again.forward(x), engine.forward(x))
    with pytest.raises(ValueError, match=expected):
        again.forward(rng.standard_normal((batch + 2, 3, 5, 5)).astype(np.float32))


def test_a_folding_that_the_steps_would_accept_is_refused(tmp_path, rng):
    """Flatten(axis=0) then Softmax: at another batch every step would fit (a softmax over all
    samples at once), a silently different model; the fixed batch refuses it first."""
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat", axis=0),
             helper.make_node("Softmax", ["f"], ["y"], name="soft", axis=1)]
    path = onnx_cases.save_graph(tmp_path, nodes, {}, [1, 3, 4, 4], 13, name="flat0")
    engine = InferenceEngine.load(path, device="cpu")
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(engine.forward(x), want, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match=r"x must have shape \(1, 3, 4, 4\), got \(3, 3, 4, 4\): .*'x'"):
        engine.forward(rng.standard_normal((3, 3, 4, 4)).astype(np.float32))
