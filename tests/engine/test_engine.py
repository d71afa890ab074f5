"""The inference engine: equal to the model's eval forward, frozen, thread-safe, INT8 within a
point of fp32 on digits, saved/loaded, bad input refused."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import InferenceEngine, nn
from hipgrad.runtime import resolve_device

pytest.importorskip("safetensors", reason="pip install safetensors")


def _eval_forward(model, x):
    model.eval()
    return model(hg.tensor(x)).numpy()


def _randomize_bn(model, rng):
    for name, m in model.named_modules() if hasattr(model, "named_modules") else []:
        if type(m).__name__ == "BatchNorm2d":
            c = m.num_features
            m.running_mean.copy_(hg.tensor(rng.standard_normal(c)))
            m.running_var.copy_(hg.tensor(rng.uniform(0.5, 2.0, c)))
            m.weight.data.copy_(hg.tensor(rng.uniform(0.5, 1.5, c)))
            m.bias.data.copy_(hg.tensor(rng.standard_normal(c)))


@pytest.mark.parametrize("name, shape", [("mlp", (1, 8, 8)), ("lenet", (1, 8, 8)),
                                         ("lenet", (1, 28, 28)), ("resnet", (3, 9, 9))])
def test_fp32_engine_equals_model_eval(device, rng, name, shape):
    hg.manual_seed(int(rng.integers(1 << 30)))
    model = hg.build_model(name, shape, 7)
    _randomize_bn(model, rng)
    x = rng.standard_normal((5,) + shape).astype(np.float32)
    expected = _eval_forward(model, x)
    engine = InferenceEngine.from_model(model.to(device), device=device)
    got = engine.forward(x)
    assert got.shape == (5, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(engine.predict(x), got.argmax(1))
    p = engine.predict_proba(x)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    idx, probs = engine.topk(x, k=3)
    assert idx.shape == (5, 3) and np.all(np.diff(probs, axis=1) <= 0)
    np.testing.assert_array_equal(idx[:, 0], got.argmax(1))


def test_plan_fuses_activations_and_folds_batchnorm(rng):
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 5 * 5, 3), nn.Tanh())
    _randomize_bn(model, rng)
    engine = InferenceEngine.from_model(model)
    text = engine.describe()
    assert "0: conv + relu (BatchNorm folded)" in text and "5: linear + tanh" in text
    assert "Dropout" not in text and "batch_norm" not in text
    x = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(engine.forward(x), _eval_forward(model, x), rtol=1e-4, atol=1e-5)


def test_weights_are_frozen(rng):
    hg.manual_seed(3)
    model = hg.build_model("mlp", (1, 8, 8), 10)
    engine = InferenceEngine.from_model(model)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    before, digest = engine.forward(x), engine.weights_digest()
    for _ in range(5):
        engine.predict(x)
    for p in model.parameters():  # training the source model afterwards does not leak in
        p.data.copy_(hg.tensor(np.zeros(p.data.shape, np.float32)))
    assert engine.weights_digest() == digest
    np.testing.assert_array_equal(engine.forward(x), before)
    with pytest.raises(RuntimeError, match="frozen"):
        engine.backward(hg.tensor(before))
    with pytest.raises(RuntimeError, match="frozen"):
        hg.optim.SGD(engine.parameters(), lr=0.1)


def test_eight_threads_agree_with_one(rng):
    hg.manual_seed(5)
    engine = InferenceEngine.from_model(hg.build_model("lenet", (1, 8, 8), 10), batch_size=16)
    inputs = [rng.standard_normal((37, 1, 8, 8)).astype(np.float32) for _ in range(8)]
    expected = [engine.forward(x) for x in inputs]
    results: list = [None] * 8
    errors: list = []

    def work(i: int) -> None:
        try:
            for _ in range(3):
                results[i] = engine.forward(inputs[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_batches_are_split(rng):
    hg.manual_seed(9)
    model = hg.build_model("lenet", (1, 8, 8), 10)
    x = rng.standard_normal((23, 1, 8, 8)).astype(np.float32)
    whole = InferenceEngine.from_model(model).forward(x)
    split = InferenceEngine.from_model(model, batch_size=4).forward(x)
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def trained_digits(tmp_path_factory):
    from hipgrad.data import DataLoader, load_digits

    pytest.importorskip("sklearn", reason="pip install scikit-learn")
    train, val = load_digits(seed=0)
    hg.manual_seed(0)
    model = hg.build_model("lenet", train.in_shape, 10)
    opt = hg.optim.Adam(model.parameters(), lr=3e-3)
    trainer = hg.Trainer(model, nn.CrossEntropyLoss(), opt, "cpu")
    out = tmp_path_factory.mktemp("digits")
    trainer.fit(DataLoader(train, 32, shuffle=True, seed=0), 6, val=val, out_dir=out, progress=False,
                log=lambda s: None)
    return model, train, val, out


def test_int8_within_one_point_of_fp32_and_roundtrips(trained_digits, tmp_path):
    model, train, val, _ = trained_digits
    fp32 = InferenceEngine.from_model(model)
    int8 = InferenceEngine.from_model(model, precision="int8")
    with pytest.raises(RuntimeError, match="not calibrated"):
        int8.predict(val.images)
    int8.calibrate([train.images[i:i + 64] for i in range(0, 256, 64)])
    acc32 = float(np.mean(fp32.predict(val.images) == val.labels))
    acc8 = float(np.mean(int8.predict(val.images) == val.labels))
    assert acc32 > 0.9, acc32
    assert abs(acc8 - acc32) <= 0.01, (acc32, acc8)
    assert int8.weight_bytes() < fp32.weight_bytes()
    path = tmp_path / "engine.safetensors"
    int8.save(str(path))
    again = InferenceEngine.load(str(path))
    assert again.precision == "int8" and again.calibrated
    np.testing.assert_array_equal(again.forward(val.images), int8.forward(val.images))


def test_load_checkpoint_and_cli(trained_digits, capsys):
    from hipgrad.cli import main

    model, _, val, out = trained_digits
    engine = InferenceEngine.load(str(out))
    np.testing.assert_allclose(engine.forward(val.images[:20]), _eval_forward(model, val.images[:20]),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 8, 8\)"):
        engine.predict(np.zeros((2, 1, 9, 9), np.float32))
    assert main(["infer", str(out), "--data", "digits", "--precision", "int8", "--top", "2"]) == 0
    text = capsys.readouterr().out
    assert f"int8 on {resolve_device('auto')}" in text and "accuracy:" in text


def test_bad_input_and_files(tmp_path, rng):
    from hipgrad.training.checkpoint import CheckpointError

    engine = InferenceEngine.from_model(hg.build_model("mlp", (1, 4, 4), 3), input_shape=(1, 4, 4))
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        engine.predict(x)
    for bad in (np.inf, -np.inf, np.nan):  # anywhere, in float32 and float64 input
        for dtype in (np.float32, np.float64):
            y = rng.standard_normal((3, 1, 4, 4)).astype(dtype)
            y[tuple(rng.integers(0, n) for n in y.shape)] = bad
            with pytest.raises(ValueError, match="NaN or infinite"):
                engine.forward(y)
    for bad in (np.inf, -np.inf, np.nan):  # an hg.Tensor input is checked too (CPU: a view)
        y = rng.standard_normal((3, 1, 4, 4)).astype(np.float32)
        y[tuple(rng.integers(0, n) for n in y.shape)] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            engine.forward(hg.tensor(y))
    with pytest.raises(TypeError, match="x must be"):
        engine.predict(np.array([["a"]]))
    with pytest.raises(ValueError, match="precision must be"):
        InferenceEngine.from_model(hg.build_model("mlp", (1, 4, 4), 3), precision="fp16")
    with pytest.raises(CheckpointError, match="not found"):
        InferenceEngine.load(str(tmp_path / "missing.safetensors"))
    path = tmp_path / "e.safetensors"
    engine.save(str(path))
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        InferenceEngine.load(str(path))
    path.write_bytes(blob)
    side = path.with_suffix(".json")
    doc = json.loads(side.read_text())
    doc["version"] = 99
    side.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="newer"):
        InferenceEngine.load(str(path))
    side.write_text("{broken")
    with pytest.raises(CheckpointError, match="corrupt"):
        InferenceEngine.load(str(path))


def test_compare_shows_inference_is_lighter(tmp_path):
    from hipgrad.profiling.compare import format_compare

    r = hg.compare("lenet", batch=64, device="cpu", input_shape=(1, 16, 16), repeats=2,
                   out_dir=str(tmp_path))
    train, inf = r["phases"]["training"], r["phases"]["inference_fp32"]
    assert train["gradients_bytes"] == train["weights_bytes"] > 0
    assert train["optimizer_state_bytes"] >= 2 * train["weights_bytes"]
    assert train["activations_kept_bytes"] > 0 and inf["activations_kept_bytes"] == 0
    assert 0 < inf["peak_bytes"] < train["peak_bytes"]
    assert r["phases"]["inference_int8"]["weights_bytes"] < inf["weights_bytes"]
    assert (tmp_path / "compare.json").exists() and (tmp_path / "compare.png").exists()
    assert "training" in format_compare(r)
    # the step holds at least the activations its forward keeps (the previous step's caches and
    # gradients are not in the baseline: they were, and understated ResNet's peak below this)
    for model, shape in (("lenet", (1, 16, 16)), ("resnet", (3, 9, 9))):
        t = hg.compare(model, batch=32, device="cpu", input_shape=shape, repeats=1)["phases"]["training"]
        assert t["peak_bytes"] > t["activations_kept_bytes"] > 0, (model, t)


def test_tensor_input_checked_for_nan_on_its_device(device, rng):
    """An hg.Tensor batch is checked where it lives (a NumPy view on the CPU; per-channel sums on
    a GPU, confirmed on the host only when a sum is not finite): NaN or +-inf anywhere is refused,
    large finite values whose sums overflow are not."""
    engine = InferenceEngine.from_model(hg.build_model("lenet", (1, 12, 12), 4), device=device)
    for bad in (np.inf, -np.inf, np.nan):
        y = rng.standard_normal((5, 1, 12, 12)).astype(np.float32)
        y[tuple(rng.integers(0, n) for n in y.shape)] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            engine.forward(hg.tensor(y, device=device))
    big = np.full((5, 1, 12, 12), 3e38, np.float32)  # every channel sum overflows to inf
    with np.errstate(over="ignore", invalid="ignore"):
        engine.forward(hg.tensor(big, device=device))  # no error: the input itself is finite
    from hipgrad.engine.checks import tensor_all_finite as _tensor_all_finite
    assert _tensor_all_finite(hg.tensor(big, device=device))
    assert not _tensor_all_finite(hg.tensor(np.where(rng.random(big.shape) < 0.01, np.nan, big)
                                            .astype(np.float32), device=device))


@pytest.mark.parametrize("name, shape", [("mlp", (1, 8, 8)), ("lenet", (1, 12, 12)), ("resnet", (3, 9, 9))])
def test_recorded_calls_replay_the_step_by_step_run(device, rng, name, shape):
    """A planned engine records its step calls on an arena's first run and replays them after;
    every replay, on fresh inputs of the same shape (and after another shape used another
    arena), equals the unplanned step-by-step engine bit for bit, fp32 and int8."""
    hg.manual_seed(int(rng.integers(1 << 30)))
    model = hg.build_model(name, shape, 6)
    _randomize_bn(model, rng)
    model = model.to(device)
    calib = rng.standard_normal((8,) + shape).astype(np.float32)
    for precision in ("fp32", "int8"):
        planned = InferenceEngine.from_model(model, device=device, precision=precision)
        plain = InferenceEngine.from_model(model, device=device, precision=precision, plan_memory=False)
        if precision == "int8":
            planned.calibrate(calib)
            plain.calibrate(calib)
        for batch in (7, 7, 3, 7, 7):
            x = rng.standard_normal((batch,) + shape).astype(np.float32)
            np.testing.assert_array_equal(planned.forward(x), plain.forward(x),
                                          err_msg=f"{name} {precision} batch {batch}")
        tapes = [t for arenas in planned._arenas._free.values() for a in arenas for t in a.tapes.values()]
        # one record per arena (batch 7 and batch 3), one call per step: residual graphs too
        assert len(tapes) == 2 and all(len(t) == len(planned._plan) for t in tapes)


def test_calibrate_once_and_only_int8(rng):
    """calibrate() on an fp32 engine, or a second time (the fp32 weights are gone by then),
    raises a clear error and leaves the engine working as before."""
    hg.manual_seed(int(rng.integers(1 << 30)))
    model = hg.build_model("mlp", (1, 8, 8), 5)
    x = rng.standard_normal((9, 1, 8, 8)).astype(np.float32)
    fp32 = InferenceEngine.from_model(model, device="cpu")
    before = fp32.forward(x)
    with pytest.raises(RuntimeError, match="only an int8 engine is calibrated; this one is fp32"):
        fp32.calibrate(x)
    np.testing.assert_array_equal(fp32.forward(x), before)
    int8 = InferenceEngine.from_model(model, precision="int8", device="cpu").calibrate(x)
    y = int8.forward(x)
    with pytest.raises(RuntimeError, match="already calibrated"):
        int8.calibrate(x * 20.0)
    np.testing.assert_array_equal(int8.forward(x), y)
    np.testing.assert_allclose(y, before, atol=0.1 * np.abs(before).max())


def test_dropped_engine_frees_its_buffers_without_the_garbage_collector(device, rng):
    """No reference cycle keeps an engine's weights and planned buffers alive once the last
    reference goes (the arena pool and its arenas, the recorded step calls)."""
    import gc

    model = hg.build_model("lenet", (1, 12, 12), 4).to(device)
    x = rng.standard_normal((6, 1, 12, 12)).astype(np.float32)
    gc.collect()
    gc.disable()
    try:
        before = hg.memory_stats(device)["current"]
        engine = InferenceEngine.from_model(model, device=device)
        for batch in (x, x[:3], x):
            engine.forward(batch)
        engine.forward(hg.tensor(x, device=device))
        assert hg.memory_stats(device)["current"] > before
        engine = None
        assert hg.memory_stats(device)["current"] == before
    finally:
        gc.enable()


def test_cpu_engine_packs_wide_linear_weights_and_saves_them_unpacked(rng, tmp_path):
    """On the CPU an fp32 engine holds a linear weight of 64+ outputs packed once for the GEMM
    (the same bytes, panel order) and runs linear_bias_act_packed; the narrow classifier keeps
    (N, K). Outputs equal the model's; saving writes (N, K) weights equal to the model's, and the
    reloaded engine predicts the same."""
    hg.manual_seed(int(rng.integers(1 << 30)))
    model = hg.build_model("mlp", (1, 9, 9), 7, hidden=[100, 64])
    x = rng.standard_normal((13, 1, 9, 9)).astype(np.float32)
    engine = InferenceEngine.from_model(model, device="cpu")
    linears = [s for s in engine._plan if s.kind == "linear"]
    assert ["weight_packed" in s.tensors for s in linears] == [True, True, False]
    assert all("weight" not in s.tensors for s in linears[:2])
    with hg.trace() as t:
        got = engine.forward(x)
    impls = [r["impl"] for r in t.ops if r["op"].startswith("linear_bias_act")]
    assert impls[:2] == ["cpu.gemm_packed_epilogue_prepacked"] * 2, impls
    np.testing.assert_allclose(got, _eval_forward(model, x), rtol=1e-4, atol=1e-4)
    weights = {k: np.asarray(v) for k, v in model.state_dict().items()}
    assert engine.weight_bytes() >= sum(v.nbytes for v in weights.values())
    engine.save(str(tmp_path / "mlp.safetensors"))
    from safetensors.numpy import load_file

    saved = load_file(str(tmp_path / "mlp.safetensors"))
    saved_w = sorted((v for k, v in saved.items() if k.endswith(".weight")), key=lambda a: -a.size)
    model_w = sorted((v for k, v in weights.items() if k.endswith("weight")), key=lambda a: -a.size)
    for a, b in zip(saved_w, model_w):
        np.testing.assert_array_equal(a, b)
    again = InferenceEngine.load(str(tmp_path / "mlp.safetensors"), device="cpu")
    np.testing.assert_array_equal(again.forward(x), got)


def _np_linear(x, lin):
    return x.astype(np.float64) @ lin.weight.data.numpy().astype(np.float64).T + lin.bias.data.numpy()


@pytest.mark.parametrize("planned", [True, False])
def test_flatten_dims_and_linear_on_the_last_axis(planned, rng):
    """nn.Flatten(start_dim, end_dim) merges only those dims and nn.Linear acts on the last axis
    of an N-D input, in the engine as in the model: NumPy float64 reference."""
    n = int(rng.integers(1, 6))
    lin = nn.Linear(9, 5)
    x = rng.standard_normal((n, 3, 3, 3)).astype(np.float32)  # Flatten(2): (n, 3, 9) -> (n, 3, 5)
    got = InferenceEngine.from_model(nn.Sequential(nn.Flatten(start_dim=2), lin), device="cpu",
                                     plan_memory=planned).forward(x)
    assert got.shape == (n, 3, 5)
    np.testing.assert_allclose(got, _np_linear(x.reshape(n, 3, 9), lin), rtol=1e-5, atol=1e-5)
    lin1, lin2 = nn.Linear(4, 6), nn.Linear(6, 3)  # Flatten(1, 2): (n, 2, 5, 4) -> (n, 10, 4)
    model = nn.Sequential(nn.Flatten(1, 2), lin1, nn.ReLU(), lin2)
    x = rng.standard_normal((n, 2, 5, 4)).astype(np.float32)
    got = InferenceEngine.from_model(model, device="cpu", plan_memory=planned).forward(x)
    want = _np_linear(np.maximum(_np_linear(x.reshape(n, 10, 4), lin1), 0), lin2)
    assert got.shape == (n, 10, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"step '0' \(flatten\) gets .* but expects .*batch dimension"):
        InferenceEngine.from_model(nn.Sequential(nn.Flatten(0), lin), device="cpu").forward(x)


def test_input_shape_checked_against_every_step_before_running(rng):
    conv = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    engine = InferenceEngine.from_model(conv, device="cpu")  # no spec: no fixed input shape
    assert engine.input_shape is None
    for bad, message in (((2, 6, 6), r"\(2, 6, 6\) .* step '0' \(conv\) gets \(batch, 6, 6\) but expects "
                                     r"\(batch, 2, height, width\)"),
                         ((2, 3, 6, 6), r"step '0' \(conv\) gets \(batch, 3, 6, 6\) but expects \(batch, 2,"),
                         ((2, 2, 7, 6), r"x of shape \(2, 2, 7, 6\) .* step '3' \(linear\) gets \(batch, 60\) "
                                        r"but expects \(batch, \.\.\., 48\)"),
                         ((2, 2, 2, 2), r"step '0' \(conv\) gets \(batch, 2, 2, 2\) but expects an input its window fits")):
        with pytest.raises(ValueError, match=message):
            engine.forward(np.zeros(bad, np.float32))
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(engine.forward(x), _eval_forward(conv, x), rtol=1e-4, atol=1e-5)
    built = hg.build_model("lenet", (1, 8, 8), 10)
    assert InferenceEngine.from_model(built).input_shape == (1, 8, 8)  # from model.spec


def test_wide_float_input_beyond_float32_is_refused_and_int_tensors_converted(rng):
    model = hg.build_model("mlp", (1, 4, 4), 3)
    engine = InferenceEngine.from_model(model, device="cpu")
    x = rng.standard_normal((3, 1, 4, 4))
    x[1, 0, 2, 3] = 1e39 * rng.choice([-1, 1])  # finite in float64, an infinity in float32
    with pytest.raises(ValueError, match="beyond float32's range"):
        engine.forward(x)
    x[1, 0, 2, 3] = 0.5
    xi = np.rint(x * 4)  # an integer tensor is converted as an integer array is
    np.testing.assert_array_equal(engine.forward(hg.tensor(xi, dtype=np.int32)),
                                  engine.forward(xi.astype(np.float32)))


def test_engine_file_and_argument_mistakes_are_refused(trained_digits, tmp_path, rng):
    from hipgrad.training.checkpoint import CheckpointError

    model, train, val, out = trained_digits
    int8 = InferenceEngine.from_model(model, device="cpu", precision="int8").calibrate(train.images[:64])
    path = tmp_path / "int8.safetensors"
    int8.save(str(path))
    with pytest.raises(ValueError, match="precision='fp32'.*holds an int8 engine"):
        InferenceEngine.load(str(path), precision="fp32")
    assert InferenceEngine.load(str(path)).precision == "int8"  # precision=None: the file's
    with pytest.raises(TypeError, match="k must be an int"):
        int8.topk(val.images[:2], k=2.9)
    with pytest.raises(ValueError, match="batches must be a positive int"):
        InferenceEngine.from_model(model, precision="int8").calibrate(train.images[:64], batches=0)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(FileExistsError, match="not a saved engine"):  # the training checkpoint
        int8.save(str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    int8.save(str(path))  # an engine file may be replaced
    side = path.with_suffix(".json")
    doc = json.loads(side.read_text())
    del doc["plan"]
    side.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="no plan steps"):
        InferenceEngine.load(str(path))


def test_cli_labels_and_a_saved_uncalibrated_int8_engine(trained_digits, tmp_path, capsys):
    from hipgrad.cli import main

    model, _, val, out = trained_digits
    np.save(tmp_path / "x.npy", val.images)
    np.save(tmp_path / "y_col.npy", val.labels.reshape(-1, 1))
    np.save(tmp_path / "y.npy", val.labels)
    args = ["infer", str(out), "--input", str(tmp_path / "x.npy"), "--show", "0", "--device", "cpu"]
    assert main(args + ["--labels", str(tmp_path / "y_col.npy")]) == 2
    assert "--labels must be a 1-D integer array" in capsys.readouterr().err
    assert main(args + ["--labels", str(tmp_path / "y.npy")]) == 0
    acc = float(capsys.readouterr().out.split("accuracy: ")[1].split("%")[0])
    want = 100 * np.mean(InferenceEngine.from_model(model, device="cpu").predict(val.images) == val.labels)
    assert abs(acc - want) < 0.01, (acc, want)
    InferenceEngine.load(str(out), device="cpu", precision="int8").save(str(tmp_path / "u8"))
    assert main(["infer", str(tmp_path / "u8"), "--input", str(tmp_path / "x.npy"), "--show", "1",
                 "--device", "cpu"]) == 0  # calibrated on the first inputs, then run
    assert "int8 on cpu" in capsys.readouterr().out


def test_int8_engine_of_a_token_model_calibrates_on_token_ids(rng):
    """Calibration feeds the model's own input dtype (int64 token ids), not float32."""
    hg.manual_seed(int(rng.integers(1 << 30)))
    model = nn.Sequential(nn.Embedding(20, 4), nn.Flatten(), nn.Linear(12, 3))
    ids = rng.integers(0, 20, (64, 3))
    fp32 = InferenceEngine.from_model(model, device="cpu").forward(ids)
    int8 = InferenceEngine.from_model(model, device="cpu", precision="int8").calibrate(ids.astype(np.int32))
    got = int8.forward(ids)
    assert got.shape == fp32.shape
    np.testing.assert_allclose(got, fp32, atol=0.05 * np.abs(fp32).max())
