"""The standard vision models (tests/engine/zoo_models.py: ResNet-18/50, MobileNetV2,
SqueezeNet 1.1, VGG-11-BN, written the torchvision way, random weights and BatchNorm
statistics) exported by PyTorch with both exporters, loaded by InferenceEngine and compared
with PyTorch and onnxruntime: relative error max|engine - reference| / max|reference| <= 1e-4
in fp32, at batch 1 and at another batch size on the same loaded engine. INT8 top-1 agreement
with fp32 is reported (and held to a floor). Inputs are 64x64 and each export is made once
per session, so the module stays within a few minutes of CI."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the zoo models are built in PyTorch")
pytest.importorskip("onnx", reason="pip install onnx")
ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime")

from hipgrad import InferenceEngine  # noqa: E402

from . import zoo_models  # noqa: E402

SIZE = 64
DEFAULT_OPSET = {"legacy": 17, "dynamo": 18}  # the dynamo exporter writes opset >= 18 only
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    """zoo(name, exporter, opset=None, optimize=True, size=SIZE) -> (torch model, .onnx path),
    each model built and each export written once per session."""
    root = tmp_path_factory.mktemp("onnx-zoo")
    models: dict = {}
    files: dict = {}

    def get(name, exporter, opset=None, optimize=True, size=SIZE):
        opset = opset or DEFAULT_OPSET[exporter]
        if exporter == "dynamo":
            pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
        if name not in models:
            models[name] = zoo_models.build(name, num_classes=100, seed=len(models), size=size, hidden=256)
        key = (name, exporter, opset, optimize, size)
        if key not in files:
            path = root / f"{name}-{exporter}-{opset}-{'opt' if optimize else 'raw'}-{size}.onnx"
            files[key] = zoo_models.export(models[name], str(path), exporter, opset, size, optimize)
        return models[name], files[key]
    return get


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / max(float(np.abs(want).max()), 1e-30))


def _compare(model, path, batches, rng, size=SIZE) -> None:
    """One engine for the file, run at each batch size, against PyTorch and onnxruntime."""
    engine = InferenceEngine.load(path, device="cpu")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for n in batches:
        x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
        with torch.no_grad():
            want_torch = model(torch.from_numpy(x)).numpy()
        want_ort = sess.run(None, {"input": x})[0]
        got = engine.forward(x)
        assert got.shape == want_torch.shape == want_ort.shape, (path, n, got.shape)
        assert np.isfinite(got).all(), (path, n)
        assert _rel_err(got, want_torch) <= 1e-4, (path, n, "vs torch", _rel_err(got, want_torch))
        assert _rel_err(got, want_ort) <= 1e-4, (path, n, "vs onnxruntime", _rel_err(got, want_ort))


CASES = [(m, e, True) for m in ("resnet18", "resnet50", "mobilenet_v2", "squeezenet1_1", "vgg11_bn")
         for e in ("legacy", "dynamo")]
CASES += [(m, e, False) for m in ("resnet18", "mobilenet_v2") for e in ("legacy", "dynamo")]


@pytest.mark.parametrize("name,exporter,optimize", CASES,
                         ids=[f"{m}-{e}{'' if o else '-unfolded'}" for m, e, o in CASES])
def test_zoo_model_matches_pytorch_and_onnxruntime(zoo, rng, name, exporter, optimize):
    """optimize=False keeps the exporter's BatchNormalization nodes and shape chains, which
    the import then folds itself."""
    model, path = zoo(name, exporter, optimize=optimize)
    _compare(model, path, [1, int(rng.integers(2, 6))], rng)


def test_opset_sweep(zoo, rng):
    """A small network with every op kind the import maps (hardswish, relu6, GELU, LayerNorm,
    asymmetric pad, grouped and depthwise conv, ceil-mode pools, chunk, softmax over a middle
    axis, ...) exported at opsets 13-20 by the legacy exporter and 18, 20 by the dynamo one."""
    exports = [("legacy", o) for o in range(13, 21)] + [("dynamo", 18), ("dynamo", 20)]
    for exporter, opset in exports:
        model, path = zoo("mixed", exporter, opset, size=32)
        _compare(model, path, [2, int(rng.integers(3, 7))], rng, size=32)


INT8_MODELS = ("resnet18", "mobilenet_v2", "squeezenet1_1", "vgg11_bn")


@pytest.mark.parametrize("name", INT8_MODELS)
def test_int8_top1_agreement(zoo, rng, name, record_property):
    """An int8 engine calibrated on random batches agrees with the fp32 engine on the top-1
    class of fresh random inputs; the agreement is recorded (pytest -rA shows it)."""
    _, path = zoo(name, "legacy")
    fp32 = InferenceEngine.load(path, device="cpu")
    int8 = InferenceEngine.load(path, device="cpu", precision="int8")
    int8.calibrate([rng.standard_normal((8, 3, SIZE, SIZE)).astype(np.float32) for _ in range(2)])
    x = rng.standard_normal((64, 3, SIZE, SIZE)).astype(np.float32)
    agree = float((int8.predict(x) == fp32.predict(x)).mean())
    record_property("int8_top1_agreement", agree)
    print(f"{name}: int8 top-1 agreement with fp32 {agree:.3f} on 64 random inputs")
    assert agree >= 0.8, f"{name}: int8 agrees with fp32 on only {agree:.1%} of the inputs"


GPT_EXPORTS = [("legacy", 14, False), ("legacy", 17, True), ("dynamo", 18, False), ("dynamo", 18, True)]


@pytest.mark.parametrize("exporter,opset,flash", GPT_EXPORTS,
                         ids=[f"{e}{o}-{'sdpa' if f else 'masked'}" for e, o, f in GPT_EXPORTS])
def test_gpt_exported_from_its_pytorch_twin(tmp_path, rng, exporter, opset, flash):
    """hipgrad's GPT (hg.build_model("gpt")) with its weights in an equivalent PyTorch module
    (zoo_gpt.py), exported: LayerNorm (or its opset-14 decomposition), the causal mask (Where or
    an added -inf mask), the heads' reshapes and transposes, Erf-GELU and the token embedding
    import; each layer's attention is one fused step; the engine's logits equal hipgrad's own
    GPT, PyTorch and onnxruntime."""
    import hipgrad as hg

    from . import zoo_gpt

    if exporter == "dynamo":
        pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    model = hg.build_model("gpt", vocab_size=67, block_size=16, n_layer=2, n_head=2, n_embd=32).eval()
    tw = zoo_gpt.twin(model, flash)
    path = zoo_gpt.export(tw, str(tmp_path / "gpt.onnx"), exporter, opset, 12)
    from hipgrad.engine.onnx import graph_from_onnx

    kinds = [s.kind for s in graph_from_onnx(path)[0].steps]
    assert kinds.count("attention") == 2 and "softmax" not in kinds and "matmul" not in kinds, kinds
    assert kinds.count("layer_norm") == 5, kinds
    engine = InferenceEngine.load(path, device="cpu")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for n in (1, 3):
        idx = rng.integers(0, 67, (n, 12)).astype(np.int64)
        got = engine.forward(idx)
        with torch.no_grad():
            want_torch = tw(torch.from_numpy(idx)).numpy()
        wants = {"hipgrad GPT": model(hg.tensor(idx, dtype=np.int64)).numpy(), "torch": want_torch,
                 "onnxruntime": sess.run(None, {"idx": idx})[0]}
        for who, want in wants.items():
            assert got.shape == want.shape, (who, n, got.shape, want.shape)
            assert _rel_err(got, want) <= 1e-4, (who, n, _rel_err(got, want))
