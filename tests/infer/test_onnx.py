"""ONNX import: small graphs built with onnx.helper, compared with onnxruntime where installed
and with hipgrad's own model of the same weights otherwise."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import InferenceEngine

onnx = pytest.importorskip("onnx", reason="pip install onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def _cnn(rng, path):
    w1 = rng.standard_normal((4, 1, 3, 3)) * 0.5
    b1 = rng.standard_normal(4)
    bn = [rng.uniform(0.5, 1.5, 4), rng.standard_normal(4), rng.standard_normal(4), rng.uniform(0.5, 2, 4)]
    w2 = rng.standard_normal((5, 4 * 3 * 3)) * 0.3
    b2 = rng.standard_normal(5)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"], name="bn1", epsilon=1e-5),
        helper.make_node("LeakyRelu", ["n1"], ["r1"], name="act1", alpha=0.1),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f"], name="flat", axis=1),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 5])],
        [_init("w1", w1), _init("b1", b1), _init("s", bn[0]), _init("bb", bn[1]), _init("m", bn[2]),
         _init("v", bn[3]), _init("w2", w2), _init("b2", b2)])
    # IR version 8 (ONNX 1.12, opset 17): the newest onnx writes a version that an older
    # onnxruntime refuses (seen: onnx 1.23 -> IR 14, onnxruntime 1.30 reads up to 13)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return w1, b1, bn, w2, b2


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


def test_onnx_cnn_matches_references(tmp_path, rng):
    path = tmp_path / "cnn.onnx"
    params = _cnn(rng, path)
    x = rng.standard_normal((7, 1, 6, 6)).astype(np.float32)
    engine = InferenceEngine.load(str(path))
    got = engine.forward(x)
    np.testing.assert_allclose(got, _numpy_cnn(x, *params), rtol=1e-4, atol=1e-5)
    assert "conv + leaky_relu (BatchNorm folded)" in engine.describe()
    ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime for the runtime comparison")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, sess.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_unsupported_node_is_named(tmp_path):
    node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="rnn0")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [_init("w", np.zeros((1, 4, 3))), _init("r", np.zeros((1, 4, 1)))])
    path = tmp_path / "lstm.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="'rnn0' has unsupported op type 'LSTM'"):
        InferenceEngine.load(str(path))


def test_corrupt_onnx_file_names_the_file(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ValueError, match="bad.onnx"):
        InferenceEngine.load(str(path))
    assert hg.devices()[0] == "cpu"
