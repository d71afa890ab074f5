"""ONNX import: small graphs built with onnx.helper (tests/engine/onnx_cases.py). The Graph an
import builds is checked twice: interpreted in NumPy float64 (graph_reference.py, independent
of the engine's executor) and run by the engine, both against onnxruntime where installed and
against NumPy written here otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import InferenceEngine

onnx = pytest.importorskip("onnx", reason="pip install onnx")
from onnx import TensorProto, helper  # noqa: E402

from . import onnx_cases  # noqa: E402
from .graph_reference import run_graph  # noqa: E402


def _import(path):
    from hipgrad.engine.onnx import graph_from_onnx

    return graph_from_onnx(path)


def _cnn(rng, path):
    w1 = rng.standard_normal((4, 1, 3, 3)) * 0.5
    b1 = rng.standard_normal(4)
    bn = [rng.uniform(0.5, 1.5, 4), rng.standard_normal(4), rng.standard_normal(4), rng.uniform(0.5, 2, 4)]
    w2 = rng.standard_normal((5, 4 * 3 * 3)) * 0.3
    b2 = rng.standard_normal(5)
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             n("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"], name="bn1", epsilon=1e-5),
             n("LeakyRelu", ["n1"], ["r1"], name="act1", alpha=0.1),
             n("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             n("Flatten", ["p1"], ["f"], name="flat", axis=1),
             n("Gemm", ["f", "w2", "b2"], ["g"], name="fc", transB=1),
             n("Softmax", ["g"], ["y"], name="softmax", axis=1)]
    inits = {"w1": w1, "b1": b1, "s": bn[0], "bb": bn[1], "m": bn[2], "v": bn[3], "w2": w2, "b2": b2}
    saved = onnx_cases.save_graph(path.parent, nodes, inits, [None, 1, 6, 6], 17, name=path.stem)
    return saved, (w1, b1, bn, w2, b2)


def _numpy_cnn(x, w1, b1, bn, w2, b2):
    n = x.shape[0]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    c = np.zeros((n, 4, 6, 6))
    for r in range(3):
        for s in range(3):
            c += np.einsum("nchw,kc->nkhw", xp[:, :, r:r + 6, s:s + 6], w1[:, :, r, s])
    c += b1[None, :, None, None]
    g, b, m, v = (a[None, :, None, None] for a in bn)
    c = (c - m) / np.sqrt(v + 1e-5) * g + b
    c = np.where(c > 0, c, 0.1 * c)
    p = c.reshape(n, 4, 3, 2, 3, 2).max(axis=(3, 5)).reshape(n, -1)
    z = p @ w2.T + b2
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_onnx_cnn_matches_numpy(tmp_path, rng):
    path, params = _cnn(rng, tmp_path / "cnn.onnx")
    x = rng.standard_normal((7, 1, 6, 6)).astype(np.float32)
    graph, meta = _import(path)
    assert meta["input_shape"] == [1, 6, 6] and meta["batch"] is None
    np.testing.assert_allclose(run_graph(graph, x)[0], _numpy_cnn(x, *params), rtol=1e-5, atol=1e-7)
    engine = InferenceEngine.load(path)
    np.testing.assert_allclose(engine.forward(x), _numpy_cnn(x, *params), rtol=1e-4, atol=1e-5)
    assert "BatchNorm folded" in engine.describe()


def _batches(rng, in_shape):
    """Two batch sizes for a symbolic batch axis, the fixed one otherwise."""
    if in_shape[0] is None:
        return [int(rng.integers(1, 4)), int(rng.integers(4, 7))]
    return [in_shape[0]]


def _rel_err(got, want):
    return float(np.abs(np.asarray(got, np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


def test_imported_graphs_match_onnxruntime(tmp_path, rng):
    """Every accepted op and attribute form, on odd sizes and two batch sizes: the imported
    Graph interpreted in float64 equals onnxruntime (shape first)."""
    ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime for the runtime comparison")
    for cid, nodes, inits, in_shape, opset in onnx_cases.accepted(rng):
        path = onnx_cases.save_graph(tmp_path, nodes, inits, in_shape, opset, name=cid)
        graph, meta = _import(path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for n in _batches(rng, in_shape):
            x = rng.standard_normal([n] + in_shape[1:]).astype(np.float32)
            want = sess.run(None, {"x": x})[0]
            got = run_graph(graph, x)[0]
            assert got.shape == want.shape, (cid, n, got.shape, want.shape)
            assert _rel_err(got, want) <= 1e-5, (cid, n, _rel_err(got, want))


def test_engine_runs_the_imported_graphs(tmp_path, rng):
    """The same graphs through InferenceEngine.load (planned and unplanned memory), one engine
    per file run at two batch sizes, against onnxruntime."""
    ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime for the runtime comparison")
    for cid, nodes, inits, in_shape, opset in onnx_cases.accepted(rng):
        path = onnx_cases.save_graph(tmp_path, nodes, inits, in_shape, opset, name=cid)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for planned in (True, False):
            engine = InferenceEngine.load(path, device="cpu", plan_memory=planned)
            for n in _batches(rng, in_shape):
                x = rng.standard_normal([n] + in_shape[1:]).astype(np.float32)
                want = sess.run(None, {"x": x})[0]
                got = engine.forward(x)
                assert got.shape == want.shape, (cid, planned, n, got.shape, want.shape)
                assert _rel_err(got, want) <= 1e-4, (cid, planned, n, _rel_err(got, want))


def test_batch_axis_stays_symbolic(tmp_path, rng):
    """A reshape target computed from Shape(x) (the dynamo exporter's flatten) holds no batch
    size: the batch-dependent dim becomes 0 or -1, the static dims stay."""
    cases = {c[0]: c for c in onnx_cases.accepted(rng)}
    _, nodes, inits, in_shape, opset = cases["reshape_shape_chain"]
    graph, _ = _import(onnx_cases.save_graph(tmp_path, nodes, inits, in_shape, opset, name="chain"))
    (step,) = [s for s in graph.steps if s.kind == "reshape"]
    assert step.attrs["shape"] in ((0, 5, 6), (-1, 5, 6)), step.attrs
    assert [s.kind for s in graph.steps] == ["reshape"]  # Shape/Gather/Unsqueeze/Concat folded away


def test_patterns_become_one_step(tmp_path, rng):
    """Erf-GELU, x * HardSigmoid(x), Clip(0, 6), LayerNorm written out and masked-softmax
    attention each import as a single step."""
    cases = {c[0]: c for c in onnx_cases.accepted(rng)}
    for cid, kind in (("gelu_erf_legacy", "gelu"), ("gelu_erf_dynamo", "gelu"), ("hardswish_pattern", "hardswish"),
                      ("clip_relu6", "relu6"), ("clip_relu6_attrs_opset9", "relu6")):
        _, nodes, inits, in_shape, opset = cases[cid]
        graph, _ = _import(onnx_cases.save_graph(tmp_path, nodes, inits, in_shape, opset, name=cid))
        assert [(s.kind, s.attrs.get("kind")) for s in graph.steps] == [("act", kind)], cid
    for cid, kind, attrs in (("layer_norm_written_out", "layer_norm", {"eps": pytest.approx(1e-5)}),
                             ("attention_causal_add", "attention", {"causal": True, "scale": 0.5}),
                             ("attention_where_mask", "attention", {"causal": True, "scale": 0.5})):
        _, nodes, inits, in_shape, opset = cases[cid]
        graph, _ = _import(onnx_cases.save_graph(tmp_path, nodes, inits, in_shape, opset, name=cid))
        assert [s.kind for s in graph.steps] == [kind], (cid, [s.kind for s in graph.steps])
        assert graph.steps[0].attrs == attrs, (cid, graph.steps[0].attrs)


def test_graphs_the_engine_would_compute_differently_are_refused(tmp_path, rng):
    for cid, nodes, inits, in_shape, opset, message in onnx_cases.refused(rng):
        path = onnx_cases.save_graph(tmp_path, nodes, inits, in_shape, opset, name=cid)
        with pytest.raises(ValueError, match=message):
            _import(path)
        with pytest.raises(ValueError, match=message):
            InferenceEngine.load(path, device="cpu")


def test_inputs_the_import_cannot_shape_are_refused(tmp_path):
    relu = [onnx_cases.node("Relu", ["x"])]
    path = onnx_cases.save_graph(tmp_path, relu, {}, [None, 3, "H", 4], 13, name="symbolic_h")
    with pytest.raises(ValueError, match="symbolic_h.onnx: graph input 'x' has symbolic dims"):
        _import(path)
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 3])
    add = [onnx_cases.node("Add", ["x", "z"])]
    path = onnx_cases.save_graph(tmp_path, add, {}, [None, 3], 13, name="two_inputs", extra_inputs=[z])
    with pytest.raises(ValueError, match=r"expected one graph input .*\['x', 'z'\]"):
        _import(path)


def test_unsupported_node_is_named(tmp_path):
    node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="rnn0")
    path = onnx_cases.save_graph(tmp_path, [node], {"w": np.zeros((1, 4, 3)), "r": np.zeros((1, 4, 1))},
                                 [1, 2, 3], 13, name="lstm")
    with pytest.raises(ValueError, match="'rnn0' \\(LSTM\\): unsupported op type 'LSTM'"):
        InferenceEngine.load(path)


def test_corrupt_and_truncated_files_name_the_file(tmp_path, rng):
    bad = tmp_path / "bad.onnx"
    for blob in (b"\x08\x01garbage", b"", b"\xff" * 64):
        bad.write_bytes(blob)
        with pytest.raises(ValueError, match="bad.onnx: not a (readable|valid) ONNX model"):
            InferenceEngine.load(str(bad))
    path, _ = _cnn(rng, tmp_path / "whole.onnx")
    data = Path(path).read_bytes()
    cut = tmp_path / "cut.onnx"
    for size in sorted({int(f * len(data)) for f in np.linspace(0.02, 0.98, 23)} | {len(data) - 1}):
        cut.write_bytes(data[:size])
        with pytest.raises(ValueError, match="cut.onnx: not a (readable|valid) ONNX model"):
            _import(str(cut))
    assert hg.devices()[0] == "cpu"


def test_predict_proba_of_a_model_ending_in_softmax_is_its_output(tmp_path, rng):
    ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime for the runtime comparison")
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc"),
             helper.make_node("Softmax", ["g"], ["y"], name="sm", axis=-1)]
    path = onnx_cases.save_graph(tmp_path, nodes, {"w": rng.standard_normal((6, 5)) * 3,
                                                   "b": rng.standard_normal(5)}, [None, 6])
    x = rng.standard_normal((4, 6)).astype(np.float32)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    engine = InferenceEngine.load(path, device="cpu")
    np.testing.assert_allclose(engine.predict_proba(x), want, rtol=1e-5, atol=1e-6)
    idx, p = engine.topk(x, k=2)
    np.testing.assert_array_equal(idx[:, 0], want.argmax(1))
    np.testing.assert_allclose(p[:, 0], want.max(1), rtol=1e-5)


def test_a_fixed_batch_runs_at_any_batch_where_samples_stay_apart(tmp_path, rng):
    """A model exported with a fixed batch of 1 (no dynamic axis) whose every value keeps the
    batch first runs at any batch size, each row as onnxruntime computes it alone; one whose
    Reshape folds the batch into the features keeps its fixed batch."""
    ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime for the runtime comparison")
    w, b = rng.standard_normal((4, 3, 3, 3)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    fc = rng.standard_normal((5, 4 * 5 * 5)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1)]
    path = onnx_cases.save_graph(tmp_path, nodes, {"w": w, "b": b, "fc": fc}, [1, 3, 5, 5], 13, name="fixed")
    graph, meta = _import(path)
    assert meta["batch"] is None
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    want = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(4)])
    assert _rel_err(run_graph(graph, x)[0], want) <= 1e-5
    assert _rel_err(InferenceEngine.load(path, device="cpu").forward(x), want) <= 1e-4
    merged = [helper.make_node("Reshape", ["x", "s"], ["y"], name="merge")]
    path = onnx_cases.save_graph(tmp_path, merged, {"s": np.array([1, -1], np.int64)}, [1, 3, 5, 5], 13, name="merge")
    graph, meta = _import(path)
    assert meta["batch"] == 1 and graph.steps[0].attrs["shape"] == (1, 75)
