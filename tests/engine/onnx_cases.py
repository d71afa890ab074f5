"""Small ONNX graphs for tests/engine/test_onnx.py, built with onnx.helper: the ops and
attribute forms the import accepts (each compared with onnxruntime) and the ones it refuses
(with what the error must say)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

import onnx


def const(name, value):
    """An initializer: float32 unless `value` is an int64 / bool array."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "ib":
        arr = arr.astype(np.float32)
    return numpy_helper.from_array(arr, name)


def save_graph(tmp_path, nodes, inits, in_shape, opset=17, name="g", in_type=TensorProto.FLOAT, extra_inputs=()):
    """A model of `nodes` reading x of `in_shape` (None or a string: symbolic) and writing y."""
    inputs = [helper.make_tensor_value_info("x", in_type, in_shape)] + list(extra_inputs)
    graph = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [const(k, v) for k, v in inits.items()])
    ir = 8 if opset <= 17 else 9 if opset <= 20 else 10
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return str(path)


def node(op, inputs, out="y", **attrs):
    return helper.make_node(op, inputs, [out] if isinstance(out, str) else out, name=f"{op.lower()}0", **attrs)


def _n(op, inputs, out, **attrs):
    outs = [out] if isinstance(out, str) else out
    return helper.make_node(op, inputs, outs, name=f"{op.lower()}_{outs[0]}", **attrs)


def accepted(rng):
    """(id, nodes, initializers, input shape (batch first, None = symbolic), opset)."""
    w = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    sqrt2 = np.float32(np.sqrt(2.0))
    return [
        ("gemm_transB_alpha_beta", [node("Gemm", ["x", "w", "b"], transB=1, alpha=0.7, beta=1.3)],
         {"w": w(5, 7), "b": w(5)}, [None, 7], 17),
        ("gemm_bias_scalar", [node("Gemm", ["x", "w", "b"])], {"w": w(7, 5), "b": w(1)}, [None, 7], 17),
        ("gemm_per_row_bias_static_batch", [node("Gemm", ["x", "w", "b"])], {"w": w(7, 5), "b": w(3, 1)}, [3, 7], 17),
        ("matmul_add_bias_first", [_n("MatMul", ["x", "w"], "m"), _n("Add", ["b", "m"], "y")],
         {"w": w(7, 5), "b": w(1, 5)}, [None, 7], 17),
        ("matmul_4d_input", [node("MatMul", ["x", "w"])], {"w": w(4, 5)}, [None, 2, 3, 4], 17),
        ("matmul_two_data", [_n("Transpose", ["x"], "t", perm=[0, 2, 1]), _n("MatMul", ["x", "t"], "y")], {},
         [None, 3, 4], 17),
        ("conv_pads_strides_dilations", [node("Conv", ["x", "w", "b"], pads=[2, 1, 2, 1], strides=[2, 1],
                                              dilations=[1, 2])], {"w": w(4, 3, 3, 3), "b": w(4)}, [None, 3, 9, 8], 17),
        ("conv_asymmetric_pads", [node("Conv", ["x", "w"], pads=[0, 1, 2, 1], strides=[2, 2])], {"w": w(4, 3, 3, 3)},
         [None, 3, 9, 8], 13),
        ("conv_same_upper", [node("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[2, 2])], {"w": w(4, 3, 3, 2)},
         [None, 3, 8, 7], 13),
        ("conv_same_lower", [node("Conv", ["x", "w"], auto_pad="SAME_LOWER")], {"w": w(4, 3, 2, 2)}, [None, 3, 6, 5], 13),
        ("conv_groups", [node("Conv", ["x", "w"], group=2, pads=[1, 1, 1, 1])], {"w": w(6, 2, 3, 3)}, [None, 4, 7, 5], 17),
        ("conv_depthwise", [node("Conv", ["x", "w", "b"], group=5, pads=[1, 1, 1, 1], strides=[2, 2])],
         {"w": w(5, 1, 3, 3), "b": w(5)}, [None, 5, 9, 7], 17),
        ("maxpool_pads", [node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {},
         [None, 2, 7, 9], 17),
        ("maxpool_ceil", [node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)], {},
         [None, 2, 8, 10], 13),
        ("maxpool_ceil_pads", [node("MaxPool", ["x"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 1],
                                    ceil_mode=1)], {}, [None, 2, 8, 9], 17),
        ("maxpool_asymmetric_pads", [node("MaxPool", ["x"], kernel_shape=[2, 2], pads=[1, 0, 0, 1], strides=[2, 2])],
         {}, [None, 2, 7, 7], 17),
        ("avgpool_count_include_pad", [node("AveragePool", ["x"], kernel_shape=[3, 2], strides=[2, 1],
                                            pads=[1, 1, 1, 1], count_include_pad=1)], {}, [None, 2, 7, 5], 17),
        ("avgpool_exclude_pad_ceil", [node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2],
                                           pads=[1, 1, 1, 1], ceil_mode=1)], {}, [None, 2, 8, 7], 19),
        ("avgpool_asymmetric_included", [node("AveragePool", ["x"], kernel_shape=[2, 2], pads=[0, 1, 1, 0],
                                              count_include_pad=1)], {}, [None, 2, 5, 6], 13),
        ("global_avgpool", [node("GlobalAveragePool", ["x"])], {}, [None, 3, 5, 7], 17),
        ("global_maxpool", [node("GlobalMaxPool", ["x"])], {}, [None, 3, 5, 7], 17),
        ("reducemean_spatial_keepdims", [node("ReduceMean", ["x"], axes=[-2, -1])], {}, [None, 3, 5, 4], 13),
        ("reducemean_spatial_opset18", [node("ReduceMean", ["x", "a"], keepdims=0)], {"a": i64(2, 3)},
         [None, 3, 5, 4], 18),
        ("reducemean_channels", [node("ReduceMean", ["x"], axes=[1], keepdims=0)], {}, [None, 3, 5, 4], 13),
        ("flatten_axis_minus3", [node("Flatten", ["x"], axis=-3)], {}, [None, 2, 3, 5], 17),
        ("flatten_axis2", [node("Flatten", ["x"], axis=2)], {}, [None, 2, 3, 5], 17),
        ("reshape_0_-1", [node("Reshape", ["x", "s"])], {"s": i64(0, -1)}, [None, 2, 3, 5], 17),
        ("reshape_-1_F", [node("Reshape", ["x", "s"])], {"s": i64(-1, 30)}, [None, 2, 3, 5], 17),
        ("reshape_shape_chain", [_n("Shape", ["x"], "sh"), _n("Gather", ["sh", "zero"], "n", axis=0),
                                 _n("Unsqueeze", ["n", "ax0"], "n1"), _n("Concat", ["n1", "rest"], "t", axis=0),
                                 _n("Reshape", ["x", "t"], "y")],
         {"zero": np.array(0, np.int64), "ax0": i64(0), "rest": i64(5, -1)}, [None, 2, 3, 5], 13),
        ("reshape_chain_cast_slice_opset11", [
            _n("Shape", ["x"], "sh"), _n("Slice", ["sh", "s0", "s1"], "n1"), _n("Cast", ["n1"], "f", to=1),
            _n("Mul", ["f", "two"], "f2"), _n("Cast", ["f2"], "n2", to=7), _n("Concat", ["n2", "rest"], "t", axis=0),
            _n("Reshape", ["x", "t"], "y")],
         {"s0": i64(0), "s1": i64(1), "two": np.float32([2.0]), "rest": i64(-1)}, [None, 2, 3, 4], 11),
        ("constant_of_shape_static", [_n("Shape", ["x"], "sh"), _n("Slice", ["sh", "s1", "s4"], "chw"),
                                      _n("ConstantOfShape", ["chw"], "c", value=helper.make_tensor("v", 1, [1], [0.5])),
                                      _n("Mul", ["x", "c"], "y")],
         {"s1": i64(1), "s4": i64(4)}, [None, 2, 3, 4], 13),
        ("unsqueeze_squeeze", [_n("Unsqueeze", ["x", "a"], "u"), _n("Relu", ["u"], "r"), _n("Squeeze", ["r", "a"], "y")],
         {"a": i64(1)}, [None, 5], 13),
        ("unsqueeze_attr_opset11", [node("Unsqueeze", ["x"], axes=[-1])], {}, [None, 5], 11),
        ("transpose", [node("Transpose", ["x"], perm=[0, 2, 3, 1])], {}, [None, 2, 3, 5], 17),
        ("softmax_last_of_4d", [node("Softmax", ["x"], axis=3)], {}, [None, 2, 3, 5], 17),
        ("softmax_axis1_of_4d", [node("Softmax", ["x"], axis=1)], {}, [None, 2, 3, 5], 13),
        ("softmax_opset11_axis1_4d", [node("Softmax", ["x"], axis=1)], {}, [None, 2, 3, 5], 11),
        ("softmax_opset11_2d", [node("Softmax", ["x"])], {}, [None, 9], 11),
        ("leaky_relu", [node("LeakyRelu", ["x"], alpha=0.2)], {}, [None, 3, 4], 17),
        ("elu", [node("Elu", ["x"], alpha=0.6)], {}, [None, 3, 4], 17),
        ("relu_sigmoid_tanh", [_n("Relu", ["x"], "a"), _n("Sigmoid", ["a"], "b"), _n("Tanh", ["x"], "c"),
                               _n("Add", ["b", "c"], "y")], {}, [None, 3, 4], 13),
        ("clip_relu6", [node("Clip", ["x", "lo", "hi"])], {"lo": np.float32(0), "hi": np.float32(6)}, [None, 11], 13),
        ("clip_relu6_attrs_opset9", [node("Clip", ["x"], min=0.0, max=6.0)], {}, [None, 11], 9),
        ("clip_min_only", [node("Clip", ["x", "lo"])], {"lo": np.float32(0)}, [None, 11], 13),
        ("hardsigmoid", [node("HardSigmoid", ["x"], alpha=1 / 6)], {}, [None, 3, 11], 13),
        ("hardswish", [node("HardSwish", ["x"])], {}, [None, 3, 11], 14),
        ("hardswish_pattern", [_n("HardSigmoid", ["x"], "h", alpha=1 / 6, beta=0.5), _n("Mul", ["x", "h"], "y")], {},
         [None, 3, 11], 13),
        ("gelu_erf_legacy", [_n("Div", ["x", "r2"], "d"), _n("Erf", ["d"], "e"), _n("Add", ["e", "one"], "a"),
                             _n("Mul", ["x", "a"], "m"), _n("Mul", ["m", "half"], "y")],
         {"r2": sqrt2, "one": np.float32(1), "half": np.float32(0.5)}, [None, 13], 13),
        ("gelu_erf_dynamo", [_n("Mul", ["x", "ir2"], "d"), _n("Erf", ["d"], "e"), _n("Add", ["one", "e"], "a"),
                             _n("Mul", ["half", "a"], "m"), _n("Mul", ["x", "m"], "y")],
         {"ir2": np.float32(1 / np.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5)}, [None, 13], 18),
        ("gelu", [node("Gelu", ["x"])], {}, [None, 11], 20),
        ("gelu_tanh", [node("Gelu", ["x"], approximate="tanh")], {}, [None, 11], 20),
        ("binary_data_broadcast", [_n("ReduceMean", ["x"], "m", axes=[2, 3]), _n("Sub", ["x", "m"], "d"),
                                   _n("Mul", ["d", "x"], "p"), _n("Sigmoid", ["m"], "s"), _n("Add", ["s", "one"], "q"),
                                   _n("Div", ["p", "q"], "y")], {"one": np.float32(1)}, [None, 3, 4, 5], 13),
        ("binary_constants", [_n("Sub", ["c", "x"], "a"), _n("Mul", ["k", "a"], "b"), _n("Div", ["b", "k"], "d"),
                              _n("Add", ["d", "v"], "y")],
         {"c": w(3, 1, 1), "k": w(1, 3, 1, 1), "v": w(5)}, [None, 3, 4, 5], 13),
        ("concat_channels", [_n("Relu", ["x"], "a"), _n("Sigmoid", ["x"], "b"), _n("Concat", ["a", "b", "x"], "y", axis=1)],
         {}, [None, 3, 4, 5], 13),
        ("concat_negative_axis", [_n("Relu", ["x"], "a"), _n("Concat", ["x", "a"], "y", axis=-1)], {}, [None, 3, 4], 13),
        ("split_input_sizes", [_n("Split", ["x", "s"], ["a", "b"], axis=1), _n("Concat", ["b", "a"], "y", axis=1)],
         {"s": i64(2, 3)}, [None, 5, 4], 13),
        ("split_num_outputs_uneven", [_n("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
                                      _n("Concat", ["c", "a", "b"], "y", axis=1)], {}, [None, 7, 2], 18),
        ("split_attr_opset11", [_n("Split", ["x"], ["a", "b"], axis=-1, split=[1, 3]), _n("Sub", ["a", "b"], "y")],
         {}, [None, 2, 4], 11),
        ("pad_constant", [node("Pad", ["x", "p", "v"])], {"p": i64(0, 0, 1, 2, 0, 0, 3, 0), "v": np.float32(0.5)},
         [None, 2, 3, 4], 13),
        ("pad_axes_opset18", [node("Pad", ["x", "p", "", "a"])], {"p": i64(1, 0, 0, 2), "a": i64(2, 3)},
         [None, 2, 3, 4], 18),
        ("identity_dropout", [_n("Identity", ["x"], "i"), _n("Dropout", ["i"], "d"), _n("Relu", ["d"], "y")], {},
         [None, 4], 13),
        ("batchnorm_of_features", [node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)],
         {"s": w(6), "b": w(6), "m": w(6), "v": rng.uniform(0.5, 2, 6).astype(np.float32)}, [None, 6], 17),
        ("batchnorm_nchw", [node("BatchNormalization", ["x", "s", "b", "m", "v"])],
         {"s": w(3), "b": w(3), "m": w(3), "v": rng.uniform(0.5, 2, 3).astype(np.float32)}, [None, 3, 4, 5], 15),
        ("layer_norm", [node("LayerNormalization", ["x", "s", "b"], epsilon=1e-5)], {"s": w(6), "b": w(6)},
         [None, 3, 6], 17),
        ("layer_norm_written_out", [
            _n("ReduceMean", ["x"], "mu", axes=[-1]), _n("Sub", ["x", "mu"], "d"), _n("Pow", ["d", "two"], "d2"),
            _n("ReduceMean", ["d2"], "var", axes=[-1]), _n("Add", ["var", "eps"], "ve"), _n("Sqrt", ["ve"], "sd"),
            _n("Div", ["d", "sd"], "n"), _n("Mul", ["n", "s"], "ns"), _n("Add", ["ns", "b"], "y")],
         {"two": np.float32(2), "eps": np.float32(1e-5), "s": w(6), "b": w(6)}, [None, 3, 6], 13),
        ("attention_causal_add", [
            _n("Transpose", ["x"], "kt", perm=[0, 1, 3, 2]), _n("MatMul", ["x", "kt"], "s"),
            _n("Mul", ["s", "c"], "s2"), _n("Add", ["s2", "mask"], "s3"), _n("Softmax", ["s3"], "p", axis=-1),
            _n("MatMul", ["p", "x"], "y")],
         {"c": np.float32(0.5), "mask": np.triu(np.full((5, 5), -np.inf, np.float32), 1)}, [None, 2, 5, 4], 13),
        ("attention_where_mask", [
            _n("Transpose", ["x"], "kt", perm=[0, 1, 3, 2]), _n("MatMul", ["x", "kt"], "s"),
            _n("Div", ["s", "c"], "s2"), _n("Where", ["keep", "s2", "ninf"], "s3"),
            _n("Softmax", ["s3"], "p", axis=3), _n("MatMul", ["p", "x"], "y")],
         {"c": np.float32(2), "keep": np.tril(np.ones((1, 1, 5, 5), bool)), "ninf": np.float32(-np.inf)},
         [None, 2, 5, 4], 13),
    ]


def refused(rng):
    """(id, nodes, initializers, input shape, opset, what the error must say)."""
    w = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    return [
        ("maxpool_dilations", [node("MaxPool", ["x"], kernel_shape=[2, 2], dilations=[2, 2])], {},
         [None, 2, 7, 7], 17, "'maxpool0' .*dilations"),
        ("avgpool_dilations", [node("AveragePool", ["x"], kernel_shape=[2, 2], dilations=[2, 2])], {},
         [None, 2, 7, 7], 19, "'averagepool0' .*dilations"),
        ("avgpool_asymmetric_exclude_pad", [node("AveragePool", ["x"], kernel_shape=[2, 2], pads=[1, 0, 0, 0])], {},
         [None, 2, 7, 7], 17, "'averagepool0' .*asymmetric pads.*count_include_pad=0"),
        ("matmul_weight_first", [node("MatMul", ["w", "x"])], {"w": w(5, 4)}, [4, 4], 17, "'matmul0' .*input 0"),
        ("conv_weight_first", [node("Conv", ["w", "x"])], {"w": w(2, 1, 3, 3)}, [None, 1, 5, 5], 17,
         "'conv0' .*input 0"),
        ("conv_data_weight", [_n("Relu", ["x"], "r"), node("Conv", ["x", "r"])], {}, [None, 1, 3, 3], 17,
         "'conv0' .*weight 'r' must be a constant"),
        ("conv_1d", [node("Conv", ["x", "w"])], {"w": w(4, 3, 3)}, [None, 3, 9], 17, "'conv0' .*2-D convolution"),
        ("gemm_3d_input", [node("Gemm", ["x", "w"])], {"w": w(4, 5)}, [None, 3, 4], 17, "'gemm0' .*2-D"),
        ("clip_other_range", [node("Clip", ["x", "lo", "hi"])], {"lo": np.float32(-1), "hi": np.float32(1)},
         [None, 4], 13, r"'clip0' .*Clip\(min=-1.0, max=1.0\)"),
        ("hardsigmoid_onnx_default", [node("HardSigmoid", ["x"])], {}, [None, 4], 13, "'hardsigmoid0' .*alpha=0.2"),
        ("const_divided_by_data", [node("Div", ["c", "x"])], {"c": w(4)}, [None, 4], 13, "'div0' .*c / x"),
        ("reshape_target_from_data", [_n("Relu", ["x"], "r"), _n("Cast", ["r"], "t", to=7),
                                      node("Reshape", ["x", "t"])], {}, [2], 13, "'cast_t' .*cast of float32 data to int64"),
        ("log_softmax", [node("LogSoftmax", ["x"])], {}, [None, 4], 13, "'logsoftmax0' .*unsupported op type 'LogSoftmax'"),
        ("batchnorm_training", [node("BatchNormalization", ["x", "s", "b", "m", "v"], training_mode=1)],
         {"s": w(3), "b": w(3), "m": w(3), "v": w(3) ** 2}, [None, 3, 4, 4], 15, "'batchnormalization0' .*training_mode"),
        ("pad_reflect", [node("Pad", ["x", "p"], mode="reflect")], {"p": i64(0, 0, 1, 1, 0, 0, 1, 1)},
         [None, 2, 3, 4], 13, "'pad0' .*mode='reflect'"),
        ("concat_with_constant", [node("Concat", ["x", "c"], axis=1)], {"c": w(1, 2)}, [None, 2], 13,
         "'concat0' .*input 1, 'c'"),
        ("split_batch_axis", [_n("Split", ["x"], ["a", "b"], axis=0), _n("Add", ["a", "b"], "y")], {}, [None, 2], 13,
         "'split_a' .*depend on the batch size"),
        ("batch_dependent_operand", [_n("Shape", ["x"], "sh"), _n("ConstantOfShape", ["sh"], "c"),
                                     _n("Add", ["x", "c"], "y")], {}, [None, 3], 13,
         "'add_y' .*depends on the batch size"),
        ("custom_domain", [helper.make_node("Foo", ["x"], ["y"], name="foo0", domain="com.example")], {},
         [None, 3], 13, "'foo0' .*domain 'com.example'"),
    ]
