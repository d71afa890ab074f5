"""Corrupt-file fuzzing: checkpoints (safetensors + JSON sidecar), saved engines and ONNX files
truncated at every offset class, bit-flipped, or with JSON values of the wrong type; plus the
inference engine fed hostile inputs and paths.

The rule: loading gives a clear error (ValueError / TypeError / FileNotFoundError naming the file,
the checkpoint or the engine) or a working model; a failed load changes nothing (the model or
optimizer restored into keeps its state, the files on disk keep their bytes).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

TARGETS = ["ckpt_truncate", "ckpt_bitflip", "ckpt_json", "engine_truncate", "engine_json",
           "onnx_truncate", "onnx_bitflip", "engine_forward", "engine_save"]

_FIXTURE: dict[str, Any] = {}


def _fixture() -> dict[str, Any]:
    """A small trained-looking model saved once per process: a checkpoint (with optimizer and
    scheduler state), a saved int8-free engine and an ONNX file of the same MLP."""
    if _FIXTURE:
        return _FIXTURE
    import hipgrad as hg
    from hipgrad import optim
    root = Path(tempfile.mkdtemp(prefix="hipgrad-fuzz-files-"))
    hg.manual_seed(0)
    model = hg.build_model("mlp", (1, 4, 4), 3, hidden=(5,))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.StepLR(opt, 2)
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    model.backward(model(x))
    opt.step()
    hg.save_checkpoint(root / "ckpt" / "model.safetensors", model, optimizer=opt, scheduler=sched,
                       epoch=1, history=[{"loss": 1.0}])
    engine = hg.InferenceEngine.from_model(model.eval(), device="cpu")
    engine.save(str(root / "engine" / "engine.safetensors"))
    onnx_path = root / "onnx" / "model.onnx"
    onnx_path.parent.mkdir()
    _write_onnx(onnx_path, model)
    _FIXTURE.update(root=root, x=x, ckpt=root / "ckpt", engine=root / "engine", onnx=onnx_path)
    return _FIXTURE


def _write_onnx(path: Path, model: Any) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    sd = {k: v for k, v in model.state_dict().items()}
    ws = [k for k in sd if k.endswith("weight")]
    bs = [k for k in sd if k.endswith("bias")]
    nodes = [helper.make_node("Flatten", ["x"], ["h0"], axis=1)]
    inits = []
    for i, (w, b) in enumerate(zip(ws, bs)):
        inits += [numpy_helper.from_array(sd[w], f"w{i}"), numpy_helper.from_array(sd[b], f"b{i}")]
        nodes.append(helper.make_node("Gemm", [f"h{2 * i}", f"w{i}", f"b{i}"], [f"h{2 * i + 1}"], transB=1))
        out = "y" if i == len(ws) - 1 else f"h{2 * i + 2}"
        if i < len(ws) - 1:
            nodes.append(helper.make_node("Relu", [f"h{2 * i + 1}"], [out]))
        else:
            nodes.append(helper.make_node("Identity", [f"h{2 * i + 1}"], [out]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def _copy(src: Path) -> Path:
    dst = Path(tempfile.mkdtemp(prefix="hipgrad-fuzz-case-")) / src.name
    (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    return dst


def _cut_points(n: int, rng: np.random.Generator) -> int:
    """An offset class: 0, 1, 7, 8 (the safetensors header length), inside the header, the header's
    end, inside the data, n - 1."""
    cls = int(rng.integers(7))
    return [0, 1, 7, 8, int(rng.integers(9, max(10, n // 4))), int(rng.integers(n // 4, max(n // 4 + 1, n - 1))),
            n - 1][cls]


def _mutate_json(obj: Any, rng: np.random.Generator) -> tuple[Any, str]:
    """obj with one value somewhere in its tree replaced by a JSON value of another type."""
    paths: list[tuple] = []

    def walk(o: Any, p: tuple) -> None:
        paths.append(p)
        if isinstance(o, dict):
            for k, v in o.items():
                walk(v, p + (k,))
        elif isinstance(o, list):
            for i, v in enumerate(o[:4]):
                walk(v, p + (i,))
    walk(obj, ())
    path = paths[1 + int(rng.integers(len(paths) - 1))] if len(paths) > 1 else ()
    new = [None, "x", 1.5, -1, 0, [], {}, 2**70, True, [1, "a"], {"a": None}, 1e308][int(rng.integers(12))]
    if not path:
        return new, "<root>"
    target = obj
    for k in path[:-1]:
        target = target[k]
    if rng.random() < 0.2 and isinstance(target, dict):
        del target[path[-1]]
        return obj, f"del {'/'.join(map(str, path))}"
    target[path[-1]] = new
    return obj, f"{'/'.join(map(str, path))} = {new!r}"


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _load_all(path: Path, fx: dict[str, Any]) -> Callable[[], Any]:
    """Load through every reader and restore into a fresh model/optimizer; on failure the
    restored objects and the files on disk must be unchanged."""
    import hipgrad as hg
    from hipgrad import optim

    def call():
        before_files = _snapshot(path.parent)
        target = hg.build_model("mlp", (1, 4, 4), 3, hidden=(5,))
        opt = optim.SGD(target.parameters(), lr=0.1, momentum=0.9)
        sched = optim.StepLR(opt, 2)
        before = {k: v.copy() for k, v in target.state_dict().items()}
        before_opt = repr(opt.state_dict())
        restored = False
        try:
            ck = hg.load_checkpoint(path)
            model = ck.build_model()
            model(fx["x"])
            ck.restore(target, opt, sched)
            restored = True
            hg.InferenceEngine.load(str(path), device="cpu").forward(fx["x"])
        except BaseException:
            if restored:  # the engine refused what restore took: nothing to compare
                raise
            after = target.state_dict()
            if any(not np.array_equal(after[k], before[k]) for k in before):
                raise AssertionError("a failed restore changed the model's weights") from None
            if repr(opt.state_dict()) != before_opt:
                raise AssertionError("a failed restore changed the optimizer") from None
            raise
        finally:
            if _snapshot(path.parent) != before_files:
                raise AssertionError("loading changed the files on disk")
    return call


def build(target: str, rng: np.random.Generator) -> tuple[Callable[[], Any], tuple[str, ...], str]:
    import hipgrad as hg
    fx = _fixture()
    names = ("checkpoint", "sidecar", "safetensors", ".json", "model", "engine", "ONNX", "onnx")
    if target in ("ckpt_truncate", "ckpt_bitflip", "engine_truncate"):
        d = _copy(fx["ckpt"] if target.startswith("ckpt") else fx["engine"])
        files = sorted(d.iterdir())
        f = files[int(rng.integers(len(files)))]
        data = bytearray(f.read_bytes())
        if target.endswith("truncate"):
            cut = _cut_points(len(data), rng)
            f.write_bytes(bytes(data[:cut]))
            desc = f"{f.name} truncated to {cut} of {len(data)} bytes"
        else:
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(len(data)))
                data[pos] ^= 1 << int(rng.integers(8))
            f.write_bytes(bytes(data))
            desc = f"{f.name} with bit flips"
        path = d / [p.name for p in files if p.suffix == ".safetensors"][0]
        return (_load_all(path, fx) if target.startswith("ckpt") else
                (lambda: hg.InferenceEngine.load(str(path), device="cpu").forward(fx["x"]))), names, desc
    if target in ("ckpt_json", "engine_json"):
        d = _copy(fx["ckpt"] if target == "ckpt_json" else fx["engine"])
        side = next(p for p in d.iterdir() if p.suffix == ".json")
        obj, what = _mutate_json(json.loads(side.read_text()), rng)
        side.write_text(json.dumps(obj))
        path = next(p for p in d.iterdir() if p.suffix == ".safetensors")
        desc = f"{side.name}: {what}"
        return (_load_all(path, fx) if target == "ckpt_json" else
                (lambda: hg.InferenceEngine.load(str(path), device="cpu").forward(fx["x"]))), names, desc
    if target in ("onnx_truncate", "onnx_bitflip"):
        f = _copy(fx["onnx"])
        data = bytearray(f.read_bytes())
        if target == "onnx_truncate":
            cut = int(rng.integers(len(data)))
            f.write_bytes(bytes(data[:cut]))
            desc = f"model.onnx truncated to {cut} of {len(data)} bytes"
        else:
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(len(data)))
                data[pos] ^= 1 << int(rng.integers(8))
            f.write_bytes(bytes(data))
            desc = "model.onnx with bit flips"
        return (lambda: hg.InferenceEngine.load(str(f), device="cpu").forward(fx["x"])), names, desc
    if target == "engine_forward":
        from . import cases
        engine = hg.InferenceEngine.from_model(hg.build_model("mlp", (1, 4, 4), 3, hidden=(5,)).eval(),
                                               device="cpu")
        bad = cases.hostile_array(rng, fx["x"])
        if rng.random() < 0.2:
            bad = np.broadcast_to(np.float32(0), (2**40, 1, 4, 4))
        return (lambda: engine.forward(bad)), ("InferenceEngine", "forward", "x", "input"), \
            f"engine.forward(<{type(bad).__name__} {getattr(bad, 'shape', '')}>)"
    if target == "engine_save":
        engine = hg.InferenceEngine.from_model(hg.build_model("mlp", (1, 4, 4), 3, hidden=(5,)).eval(),
                                               device="cpu")
        bad = ["", None, 5, "/", "/proc/version/x.safetensors", b"x", 1.5][int(rng.integers(7))]
        cwd = os.getcwd()

        def call():
            tmp = tempfile.mkdtemp(prefix="hipgrad-fuzz-cwd-")
            os.chdir(tmp)
            try:
                engine.save(bad)
            finally:
                os.chdir(cwd)
                left = os.listdir(tmp)
                shutil.rmtree(tmp, ignore_errors=True)
            if bad == "" or left:
                raise AssertionError(f"engine.save({bad!r}) wrote {left} into the current directory")
        return call, ("save", "path", "engine"), f"engine.save({bad!r})"
    raise KeyError(target)
