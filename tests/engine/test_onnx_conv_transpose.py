"""ONNX ConvTranspose in the engine: attribute forms (strides, pads, output_padding,
output_shape, auto_pad, dilations, group, bias) against a NumPy float64 scatter written here from
ONNX's definition, PyTorch's conv_transpose2d and onnxruntime; a small U-Net-like block exported
by both PyTorch exporters against onnxruntime; bad attributes refused naming the node."""

from __future__ import annotations

import numpy as np
import pytest

from hipgrad import InferenceEngine

onnx = pytest.importorskip("onnx", reason="pip install onnx")
from onnx import helper  # noqa: E402

from . import onnx_cases  # noqa: E402
from .graph_reference import run_graph  # noqa: E402


def onnx_conv_transpose(x, w, b, strides=(1, 1), pads=None, dilations=(1, 1), group=1,
                        output_padding=(0, 0), output_shape=None, auto_pad="NOTSET"):
    """ONNX ConvTranspose in float64: each input pixel times the kernel scattered into the full
    result, from which ONNX's output window (pads, or output_shape with auto_pad's rule) is
    read, zero outside the full result."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    full_len = [(size - 1) * s + op + (k - 1) * d + 1
                for size, s, op, k, d in zip((h, wd), strides, output_padding, (kh, kw), dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") or output_shape is not None:
        out = list(output_shape) if output_shape is not None else [h * strides[0], wd * strides[1]]
        total = [f - o for f, o in zip(full_len, out)]
        if auto_pad == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:
            begin = [t - t // 2 for t in total]
    else:
        p = pads or [0, 0, 0, 0]
        begin, out = p[:2], [f - p[i] - p[i + 2] for i, f in enumerate(full_len)]
    big = np.zeros((n, cog * group, full_len[0] + out[0] + 2 * abs(begin[0]), full_len[1] + out[1] + 2 * abs(begin[1])))
    off = [abs(v) for v in begin]  # F[i] sits at big[i + off]
    cig = cin // group
    for i in range(h):
        for j in range(wd):
            for g in range(group):
                contrib = np.einsum("nc,cdrs->ndrs", x[:, g * cig:(g + 1) * cig, i, j], w[g * cig:(g + 1) * cig])
                for r in range(kh):
                    for c in range(kw):
                        big[:, g * cog:(g + 1) * cog, off[0] + i * strides[0] + r * dilations[0],
                            off[1] + j * strides[1] + c * dilations[1]] += contrib[:, :, r, c]
    y = big[:, :, off[0] + begin[0]:off[0] + begin[0] + out[0], off[1] + begin[1]:off[1] + begin[1] + out[1]]
    return y if b is None else y + b.astype(np.float64)[None, :, None, None]


# (id, attrs, in channels, out channels per group, kernel, input hw, bias); torch: PyTorch-expressible
CASES = [
    ("plain", {}, 3, 4, (3, 3), (5, 6), True),
    ("stride2_pad1_outpad1", dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]), 4, 3, (3, 3), (5, 4), True),
    ("stride3_rect_kernel", dict(strides=[3, 2], pads=[2, 0, 2, 0], output_padding=[2, 1]), 2, 5, (4, 3), (3, 5), False),
    ("dilated_grouped", dict(dilations=[2, 3], group=2, pads=[1, 2, 1, 2]), 4, 3, (3, 2), (6, 5), True),
    ("depthwise_stride2", dict(strides=[2, 2], group=6), 6, 1, (2, 2), (4, 5), True),
    ("asym_pads_end_bigger", dict(strides=[2, 2], pads=[0, 1, 2, 3]), 3, 2, (3, 3), (4, 4), True),
    ("asym_pads_begin_bigger", dict(strides=[2, 1], pads=[3, 2, 0, 1], output_padding=[1, 0]), 3, 2, (4, 3), (4, 4), True),
    ("pads_beyond_kernel", dict(strides=[1, 2], pads=[4, 0, 3, 1]), 2, 3, (3, 3), (7, 5), True),
    ("same_upper", dict(strides=[2, 2], auto_pad="SAME_UPPER"), 3, 4, (3, 3), (5, 4), False),
    ("same_lower", dict(strides=[2, 3], auto_pad="SAME_LOWER"), 3, 4, (4, 3), (4, 5), False),
    ("output_shape_same_upper", dict(strides=[2, 2], auto_pad="SAME_UPPER", output_shape=[9, 8]), 2, 3, (3, 3), (5, 4), True),
    ("output_shape_notset_natural", dict(strides=[2, 2], output_shape=[11, 9]), 2, 3, (3, 3), (5, 4), True),
    ("valid", dict(strides=[2, 2], auto_pad="VALID"), 2, 2, (3, 3), (3, 3), True),
]


def _node_and_inits(rng, attrs, cin, cog, k, bias):
    group = attrs.get("group", 1)
    w = (rng.standard_normal((cin, cog) + tuple(k)) * 0.5).astype(np.float32)
    b = rng.standard_normal(cog * group).astype(np.float32) if bias else None
    inits = {"w": w} if b is None else {"w": w, "b": b}
    node = helper.make_node("ConvTranspose", ["x", "w"] + (["b"] if bias else []), ["y"], name="deconv", **attrs)
    return node, inits, w, b


@pytest.mark.parametrize("cid, attrs, cin, cog, k, hw, bias", CASES, ids=[c[0] for c in CASES])
def test_conv_transpose_matches_onnx_definition(tmp_path, rng, cid, attrs, cin, cog, k, hw, bias):
    """The import (interpreted in float64) and the engine (planned and not) against the NumPy
    scatter, at two batch sizes; onnxruntime too where installed."""
    node, inits, w, b = _node_and_inits(rng, attrs, cin, cog, k, bias)
    path = onnx_cases.save_graph(tmp_path, [node], inits, [None, cin, *hw], 17, name=cid)
    from hipgrad.engine.onnx import graph_from_onnx

    graph, _ = graph_from_onnx(path)
    engines = [InferenceEngine.load(path, device="cpu", plan_memory=p) for p in (True, False)]
    try:
        import onnxruntime as ort
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except ImportError:
        sess = None
    for n in (1, 3):
        x = rng.standard_normal((n, cin, *hw)).astype(np.float32)
        want = onnx_conv_transpose(x, w, b, **{key: v for key, v in attrs.items() if key != "group"},
                                   group=attrs.get("group", 1))
        got = run_graph(graph, x)[0]
        assert got.shape == want.shape, (got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        for engine in engines:
            y = engine.forward(x)
            assert y.shape == want.shape and np.isfinite(y).all()
            np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
        if sess is not None:
            np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-4, atol=1e-4)


TORCH_CASES = [  # (stride, padding, output_padding, dilation, groups, cin, cout, kernel, hw)
    (1, 0, 0, 1, 1, 3, 5, 3, (5, 7)),
    (2, 1, 1, 1, 1, 4, 3, 3, (6, 5)),
    ((3, 2), (1, 0), (2, 1), 1, 1, 2, 4, (4, 3), (3, 4)),
    (2, 2, 0, (2, 1), 3, 6, 9, 3, (5, 5)),
    (2, 0, 1, 3, 1, 3, 2, 2, (4, 3)),
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[f"c{i}" for i in range(len(TORCH_CASES))])
def test_conv_transpose_matches_torch(tmp_path, rng, case):
    torch = pytest.importorskip("torch")
    stride, padding, out_pad, dilation, groups, cin, cout, k, hw = case
    pair = lambda v: [v, v] if isinstance(v, int) else list(v)  # noqa: E731
    kk = pair(k)
    w = (rng.standard_normal((cin, cout // groups, *kk)) * 0.5).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    p = pair(padding)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="deconv", strides=pair(stride),
                            pads=p + p, output_padding=pair(out_pad), dilations=pair(dilation), group=groups)
    path = onnx_cases.save_graph(tmp_path, [node], {"w": w, "b": b}, [None, cin, *hw], 17, name="torch_case")
    engine = InferenceEngine.load(path, device="cpu")
    x = rng.standard_normal((2, cin, *hw)).astype(np.float32)
    want = torch.nn.functional.conv_transpose2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(),
                                                torch.from_numpy(b).double(), stride=stride, padding=padding,
                                                output_padding=out_pad, groups=groups, dilation=dilation).numpy()
    np.testing.assert_allclose(engine.forward(x), want, rtol=1e-4, atol=1e-4)


def _unet_block(torch):
    nn = torch.nn

    class Block(nn.Module):
        """Down (stride-2 conv), up (ConvTranspose2d), the skip concatenated, then a grouped,
        dilated ConvTranspose2d head."""

        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
            self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.up = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.head = nn.ConvTranspose2d(16, 4, 3, padding=2, dilation=2, groups=2, bias=False)

        def forward(self, x):
            e = self.enc(x)
            u = torch.relu(self.bn(self.up(torch.relu(self.down(e)))))
            return self.head(torch.cat([u, e], dim=1))

    torch.manual_seed(0)
    model = Block().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_exported_unet_block_matches_onnxruntime(tmp_path, rng, exporter):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime for the runtime comparison")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    from .zoo_models import export

    model = _unet_block(torch)
    path = export(model, str(tmp_path / f"unet-{exporter}.onnx"), exporter, 17 if exporter == "legacy" else 18, 10)
    engine = InferenceEngine.load(path, device="cpu")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = rng.standard_normal((n, 3, 10, 10)).astype(np.float32)
        want = sess.run(None, {"input": x})[0]
        got = engine.forward(x)
        assert got.shape == want.shape == (n, 4, 10, 10)
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))
        with torch.no_grad():
            np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)
    engine.save(str(tmp_path / "saved"))  # the step's attributes and weights survive a save
    again = InferenceEngine.load(str(tmp_path / "saved"), device="cpu")
    np.testing.assert_array_equal(again.forward(x), engine.forward(x))
    int8 = InferenceEngine.load(path, device="cpu", precision="int8")  # convs int8, ConvTranspose fp32
    int8.calibrate(rng.standard_normal((8, 3, 10, 10)).astype(np.float32))
    assert np.abs(int8.forward(x) - got).max() <= 0.1 * np.abs(got).max()


def _refused(rng):
    w = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    node = lambda ins=("x", "w"), **a: helper.make_node("ConvTranspose", list(ins), ["y"], name="up0", **a)  # noqa: E731
    shape = [None, 4, 5, 5]
    return [
        ("outpad_not_below_stride", [node(strides=[2, 2], output_padding=[2, 0])], {"w": w(4, 2, 3, 3)}, shape,
         "output_padding"),
        ("negative_pads", [node(pads=[-1, 0, 0, 0])], {"w": w(4, 2, 3, 3)}, shape, "non-negative pads"),
        ("zero_stride", [node(strides=[0, 1])], {"w": w(4, 2, 3, 3)}, shape, "must be positive"),
        ("group_mismatch", [node(group=3)], {"w": w(4, 2, 3, 3)}, shape, "group=3 does not fit"),
        ("channels_mismatch", [node()], {"w": w(3, 2, 3, 3)}, shape, "does not fit 4 input channels"),
        ("kernel_shape_differs", [node(kernel_shape=[2, 2])], {"w": w(4, 2, 3, 3)}, shape, "kernel_shape"),
        ("bias_size", [node(("x", "w", "b"))], {"w": w(4, 2, 3, 3), "b": w(3)}, shape, "bias"),
        ("one_d", [node()], {"w": w(4, 2, 3)}, [None, 4, 5], "only 2-D"),
        ("data_weight", [helper.make_node("Relu", ["x"], ["r"], name="r"), node(("x", "r"))], {},
         [None, 4, 5, 5], "must be a constant"),
        ("output_shape_and_pads", [node(output_shape=[9, 9], pads=[1, 1, 1, 1])], {"w": w(4, 2, 3, 3)}, shape,
         "ambiguous"),
        ("output_shape_too_large", [node(output_shape=[12, 12], auto_pad="SAME_UPPER")], {"w": w(4, 2, 3, 3)},
         shape, "larger than the full"),
        ("output_shape_notset_other", [node(output_shape=[6, 6])], {"w": w(4, 2, 3, 3)}, shape,
         "output_shape .* not supported"),
        ("bad_auto_pad", [node(auto_pad="SAME")], {"w": w(4, 2, 3, 3)}, shape, "auto_pad"),
        ("output_shape_4d", [node(output_shape=[1, 2, 9, 9], auto_pad="SAME_UPPER")], {"w": w(4, 2, 3, 3)},
         shape, "two positive spatial sizes"),
        ("pads_eat_output", [node(pads=[4, 0, 4, 0])], {"w": w(4, 2, 3, 3)}, shape, "empty output"),
    ]


def test_bad_attributes_are_refused_naming_the_node(tmp_path, rng):
    for cid, nodes, inits, shape, message in _refused(rng):
        path = onnx_cases.save_graph(tmp_path, nodes, inits, shape, 17, name=cid)
        with pytest.raises(ValueError, match=f"'up0' \\(ConvTranspose\\): .*{message}"):
            InferenceEngine.load(path, device="cpu")


def test_conv_transpose_on_each_device(tmp_path, rng, device):
    """ONNX ConvTranspose forms (the step alone, with a crop, with a crop, zero pad and separate
    bias) and nn.ConvTranspose2d lowered from a model, run by an engine on each device (the GPU's
    conv2d_backward_data, split, pad and add kernels), planned and unplanned."""
    from hipgrad import nn

    for cid, attrs, cin, cog, k, hw, bias in (CASES[1], CASES[3], CASES[6], CASES[8]):
        node, inits, w, b = _node_and_inits(rng, attrs, cin, cog, k, bias)
        path = onnx_cases.save_graph(tmp_path, [node], inits, [None, cin, *hw], 17, name=cid)
        x = rng.standard_normal((2, cin, *hw)).astype(np.float32)
        want = onnx_conv_transpose(x, w, b, **{key: v for key, v in attrs.items() if key != "group"},
                                   group=attrs.get("group", 1))
        for planned in (True, False):
            engine = InferenceEngine.load(path, device=device, plan_memory=planned)
            np.testing.assert_allclose(engine.forward(x), want, rtol=1e-4, atol=1e-4, err_msg=cid)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(),
                          nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1),
                          nn.ReLU(), nn.ConvTranspose2d(4, 2, (2, 3), groups=2, dilation=(1, 2), bias=False))
    model.eval()
    x = rng.standard_normal((3, 3, 7, 6)).astype(np.float32)
    import hipgrad as hg

    want = model(hg.tensor(x)).numpy()
    for planned in (True, False):
        engine = InferenceEngine.from_model(model, device=device, plan_memory=planned)
        assert [s.kind for s in engine._plan].count("conv_transpose") == 2
        got = engine.forward(x)
        assert got.shape == want.shape == (3, 2, 9, 10)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
