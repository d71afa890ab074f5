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


def _graph(tmp_path, nodes, inits, in_shape, opset=17, name="g"):
    """A model of `nodes` reading x of `in_shape` (None: a symbolic batch) and writing y."""
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [_init(k, v) if not isinstance(v, np.ndarray) or v.dtype != np.int64
                               else numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=8 if opset <= 17 else 9)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return str(path)


def _node(op, inputs, **attrs):
    return helper.make_node(op, inputs, ["y"], name=f"{op.lower()}0", **attrs)


def _single_op_cases(rng):
    """(id, nodes, initializers, input shape (batch first, None = symbolic), opset) of graphs the
    importer accepts; each is run on odd sizes and compared with onnxruntime."""
    w = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    return [
        ("gemm_transB_alpha_beta", [_node("Gemm", ["x", "w", "b"], transB=1, alpha=0.7, beta=1.3)],
         {"w": w(5, 7), "b": w(5)}, [None, 7], 17),
        ("gemm_bias_1xN", [_node("Gemm", ["x", "w", "b"])], {"w": w(7, 5), "b": w(1, 5)}, [None, 7], 17),
        ("gemm_bias_scalar", [_node("Gemm", ["x", "w", "b"])], {"w": w(7, 5), "b": w(1)}, [None, 7], 17),
        ("matmul_add_1xN", [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
                            helper.make_node("Add", ["b", "m"], ["y"], name="add")],  # bias first
         {"w": w(7, 5), "b": w(1, 5)}, [None, 7], 17),
        ("matmul_3d_input", [_node("MatMul", ["x", "w"])], {"w": w(4, 5)}, [None, 3, 4], 17),
        ("matmul_3d_T1", [_node("MatMul", ["x", "w"])], {"w": w(4, 5)}, [None, 1, 4], 17),
        ("conv_pads_strides_dilations", [_node("Conv", ["x", "w", "b"], pads=[2, 1, 2, 1], strides=[2, 1],
                                               dilations=[1, 2])], {"w": w(4, 3, 3, 3), "b": w(4)},
         [None, 3, 9, 8], 17),
        ("conv_groups", [_node("Conv", ["x", "w"], group=2, pads=[1, 1, 1, 1])], {"w": w(6, 2, 3, 3)},
         [None, 4, 7, 5], 17),
        ("maxpool_pads", [_node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
         {}, [None, 2, 7, 9], 17),
        ("avgpool_count_include_pad", [_node("AveragePool", ["x"], kernel_shape=[3, 2], strides=[2, 1],
                                             pads=[1, 1, 1, 1], count_include_pad=1)], {}, [None, 2, 7, 5], 17),
        ("global_avgpool", [_node("GlobalAveragePool", ["x"])], {}, [None, 3, 5, 7], 17),
        ("flatten_axis_minus3", [_node("Flatten", ["x"], axis=-3)], {}, [None, 2, 3, 5], 17),
        ("reshape_0_-1", [_node("Reshape", ["x", "s"])], {"s": i64(0, -1)}, [None, 2, 3, 5], 17),
        ("reshape_-1_F", [_node("Reshape", ["x", "s"])], {"s": i64(-1, 30)}, [None, 2, 3, 5], 17),
        ("softmax_last_of_4d", [_node("Softmax", ["x"], axis=3)], {}, [None, 2, 3, 5], 17),
        ("softmax_opset11_2d", [_node("Softmax", ["x"])], {}, [None, 9], 11),
        ("leaky_relu", [_node("LeakyRelu", ["x"], alpha=0.2)], {}, [None, 3, 4], 17),
        ("elu", [_node("Elu", ["x"], alpha=0.6)], {}, [None, 3, 4], 17),
        ("gelu_tanh", [_node("Gelu", ["x"], approximate="tanh")], {}, [None, 11], 20),
        ("batchnorm_of_features", [_node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)],
         {"s": w(6), "b": w(6), "m": w(6), "v": rng.uniform(0.5, 2, 6).astype(np.float32)}, [None, 6], 17),
    ]


def test_single_op_graphs_match_onnxruntime(tmp_path, rng):
    """Every supported op with the attributes the importer accepts, on odd sizes: the engine
    (planned and unplanned) equals onnxruntime, shape included."""
    ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime for the runtime comparison")
    for cid, nodes, inits, in_shape, opset in _single_op_cases(rng):
        path = _graph(tmp_path, nodes, inits, in_shape, opset, name=cid)
        n = int(rng.integers(1, 6))
        x = rng.standard_normal([n] + in_shape[1:]).astype(np.float32)
        want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        for planned in (True, False):
            got = InferenceEngine.load(path, device="cpu", plan_memory=planned).forward(x)
            assert got.shape == want.shape, (cid, got.shape, want.shape)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=cid)


def test_predict_proba_of_a_model_ending_in_softmax_is_its_output(tmp_path, rng):
    ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime for the runtime comparison")
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc"),
             helper.make_node("Softmax", ["g"], ["y"], name="sm", axis=-1)]
    path = _graph(tmp_path, nodes, {"w": rng.standard_normal((6, 5)) * 3, "b": rng.standard_normal(5)}, [None, 6])
    x = rng.standard_normal((4, 6)).astype(np.float32)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    engine = InferenceEngine.load(path, device="cpu")
    np.testing.assert_allclose(engine.predict_proba(x), want, rtol=1e-5, atol=1e-6)
    idx, p = engine.topk(x, k=2)
    np.testing.assert_array_equal(idx[:, 0], want.argmax(1))
    np.testing.assert_allclose(p[:, 0], want.max(1), rtol=1e-5)


def _refused_cases(rng):
    """(id, nodes, initializers, input shape, opset, what the error must say) of graphs whose
    attributes or operand layout the engine would not compute as ONNX defines them."""
    w = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    return [
        ("maxpool_dilations", [_node("MaxPool", ["x"], kernel_shape=[2, 2], dilations=[2, 2])], {},
         [None, 2, 7, 7], 17, "'maxpool0' .*dilations"),
        ("avgpool_dilations", [_node("AveragePool", ["x"], kernel_shape=[2, 2], dilations=[2, 2])], {},
         [None, 2, 7, 7], 19, "'averagepool0' .*dilations"),
        ("reshape_-1_12", [_node("Reshape", ["x", "s"])], {"s": i64(-1, 12)}, [None, 2, 3, 4], 17,
         r"'reshape0' .*\(N, -1\).*\[-1, 12\]"),
        ("reshape_1_-1", [_node("Reshape", ["x", "s"])], {"s": i64(1, -1)}, [None, 2, 3, 4], 17, "'reshape0'"),
        ("reshape_0_12", [_node("Reshape", ["x", "s"])], {"s": i64(0, 12)}, [None, 2, 3, 4], 17, "'reshape0'"),
        ("softmax_axis1_of_4d", [_node("Softmax", ["x"], axis=1)], {}, [None, 2, 3, 4], 17,
         "'softmax0' .*last axis.*axis=1"),
        ("softmax_opset11_default_4d", [_node("Softmax", ["x"])], {}, [None, 2, 3, 4], 11, "'softmax0' .*opset 11"),
        ("matmul_weight_first", [_node("MatMul", ["w", "x"])], {"w": w(5, 4)}, [4, 4], 17,
         "'matmul0' .*data must be the first input"),
        ("conv_weight_first", [_node("Conv", ["w", "x"])], {"w": w(2, 1, 3, 3)}, [None, 1, 5, 5], 17,
         "'conv0' .*data must be the first input"),
        ("conv_1d", [_node("Conv", ["x", "w"])], {"w": w(4, 3, 3)}, [None, 3, 9], 17, "'conv0' .*2-D convolution"),
        ("gemm_per_row_bias", [_node("Gemm", ["x", "w", "b"])], {"w": w(7, 5), "b": w(3, 1)}, [3, 7], 17,
         r"'gemm0' .*bias of shape \(3, 1\)"),
        ("gemm_3d_input", [_node("Gemm", ["x", "w"])], {"w": w(4, 5)}, [None, 3, 4], 17, "'gemm0' .*2-D"),
        ("pool_pads_named", [_node("MaxPool", ["x"], kernel_shape=[2, 2], pads=[1, 0, 0, 0])], {},
         [None, 2, 7, 7], 17, "'maxpool0' .*asymmetric pads"),
    ]


def test_graphs_the_engine_would_compute_differently_are_refused(tmp_path, rng):
    for cid, nodes, inits, in_shape, opset, message in _refused_cases(rng):
        path = _graph(tmp_path, nodes, inits, in_shape, opset, name=cid)
        with pytest.raises(ValueError, match=message):
            InferenceEngine.load(path, device="cpu")
