"""The inference engine's memory plan: results identical to the unplanned path, activation
buffers allocated once per batch shape (counted by the device's allocator), a measured peak
within weights + two activation buffers (+ the staged input on a GPU) for a chain (the bound
computed here from the model's layer shapes), concurrent predicts on separate buffers, and on
the CPU a float32 C-contiguous input read in place, never written."""

from __future__ import annotations

import threading

import hipgrad as hg
import numpy as np
import pytest
from hipgrad import InferenceEngine, nn

MODELS = [("mlp", (1, 8, 8)), ("lenet", (1, 28, 28)), ("resnet", (3, 9, 9))]
SLACK = 4096  # bytes: nothing else should be allocated during a predict


def _engines(name, shape, precision, rng, device="cpu"):
    hg.manual_seed(int(rng.integers(1 << 30)))
    model = hg.build_model(name, shape, 7)
    calib = rng.standard_normal((16,) + shape).astype(np.float32)
    out = []
    for plan_memory in (True, False):
        e = InferenceEngine.from_model(model, device=device, precision=precision, plan_memory=plan_memory)
        if precision == "int8":
            e.calibrate(calib)
        out.append(e)
    return model, out[0], out[1]


def _allocations(device="cpu"):
    return hg.memory_stats(device)["allocations"]


def _largest_activation(model, x):
    """Elements of the largest layer output of a Sequential model, from its own eval forward."""
    model.eval()
    t, largest = hg.tensor(x), 0
    for layer in model.children() if hasattr(model, "children") else model.layers:
        t = layer(t)
        largest = max(largest, t.numel())
    return largest


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("name, shape", MODELS)
def test_planned_equals_unplanned(name, shape, precision, rng, device):
    _, planned, unplanned = _engines(name, shape, precision, rng, device)
    for batch in (5, 1, 5, 3):  # repeated shapes reuse buffers, poisoned when first allocated
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        np.testing.assert_array_equal(planned.forward(x), unplanned.forward(x))
    xt = hg.tensor(rng.standard_normal((4,) + shape).astype(np.float32), device=device)
    np.testing.assert_array_equal(planned.forward(xt), unplanned.forward(xt))  # a device input


@pytest.mark.parametrize("name, shape", MODELS)
def test_staging_only_for_a_host_input(name, shape, rng, device):
    """A batch already on the engine's device is read as it is (no staging buffer, none planned);
    a NumPy batch is staged on a GPU only, into one buffer made on first need. Counted by the
    engine's pool (kernels' own workspace, e.g. a convolution's on a GPU, is not a plan buffer)."""
    _, engine, _ = _engines(name, shape, "fp32", rng, device)
    x = rng.standard_normal((5,) + shape).astype(np.float32)
    xt = hg.tensor(x, device=device)
    plan = engine.memory_plan(x.shape)
    assert plan.input_bytes == (0 if device == "cpu" else x.nbytes)
    want = engine.forward(xt)
    report = engine.memory_report()
    assert report["buffers_allocated"] == plan.slots, "a device input made a staging buffer"
    assert report["buffer_bytes_allocated"] == plan.activation_bytes
    measured = engine.memory_report(xt)["measured"]
    assert measured["planned_peak_bytes"] == engine.weight_bytes() + plan.activation_bytes
    if device == "cpu":  # (a GPU kernel may add workspace of its own)
        assert measured["peak_bytes"] <= measured["planned_peak_bytes"] + SLACK, measured
    made = engine.memory_report()["buffers_allocated"]  # memory_report(xt) made a fresh set
    np.testing.assert_array_equal(engine.forward(x), want)
    staged = 0 if device == "cpu" else 1
    assert engine.memory_report()["buffers_allocated"] - made == staged
    for _ in range(2):
        np.testing.assert_array_equal(engine.forward(x), want)
        np.testing.assert_array_equal(engine.forward(xt), want)
    assert engine.memory_report()["buffers_allocated"] - made == staged, "a repeated batch made buffers"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("name, shape", MODELS)
def test_buffers_are_allocated_once_per_batch_shape(name, shape, precision, rng):
    _, engine, _ = _engines(name, shape, precision, rng)
    x = rng.standard_normal((6,) + shape).astype(np.float32)
    before = _allocations()
    first = engine.forward(x)
    plan = engine.memory_plan(x.shape)
    assert plan.input_bytes == 0  # CPU: the caller's float32 array is read in place
    expected_buffers = plan.slots + (plan.int8_numel > 0)  # activations, int8 scratch
    assert _allocations() - before == expected_buffers
    assert engine.memory_report()["buffers_allocated"] == expected_buffers
    before = _allocations()
    for _ in range(3):
        np.testing.assert_array_equal(engine.forward(x), first)
        engine.predict(x)
    assert _allocations() - before == 0, "a repeated batch shape allocated device memory"
    y = rng.standard_normal((2,) + shape).astype(np.float32)
    before = _allocations()
    engine.forward(y)
    engine.forward(y)
    assert _allocations() - before == expected_buffers  # a new shape: one more set, once
    assert engine.memory_report()["buffer_sets_allocated"] == 2


def test_chain_uses_two_buffers_and_residual_at_most_three_activations(rng):
    """A chain ping-pongs between two buffers; a residual graph's values are packed by liveness
    into at most three of its largest activation (the body's two and the block input)."""
    for name, shape in [("mlp", (1, 8, 8)), ("lenet", (1, 28, 28))]:
        _, engine, _ = _engines(name, shape, "fp32", rng)
        assert engine.memory_plan((4,) + shape).slots == 2, name
    model, engine, _ = _engines("resnet", (3, 9, 9), "fp32", rng)
    x = rng.standard_normal((4, 3, 9, 9)).astype(np.float32)
    plan = engine.memory_plan(x.shape)
    assert plan.activation_bytes <= 3 * 4 * _largest_activation(model, x)
    assert plan.activation_bytes < plan.intermediate_bytes


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("name, shape", MODELS[:2])
def test_peak_is_weights_two_buffers_and_input(name, shape, precision, rng):
    model, engine, _ = _engines(name, shape, precision, rng)
    x = rng.standard_normal((64,) + shape).astype(np.float32)
    largest = _largest_activation(model, x[:1]) * 64  # every layer output is batch-major
    bound = engine.weight_bytes() + 2 * 4 * largest  # the CPU reads x in place: no staging
    if precision == "int8":
        bound += largest  # int8 scratch: a quantized layer input, one byte per element
    report = engine.memory_report(x)
    m = report["measured"]
    assert m["peak_bytes"] <= bound + SLACK, (m, bound)
    assert m["peak_bytes"] <= m["planned_peak_bytes"] + SLACK
    assert m["peak_bytes"] >= engine.weight_bytes() + 4 * largest  # buffers counted
    plan = report["plans"][0]
    assert max(plan["slot_bytes"]) == 4 * largest and plan["input_bytes"] == 0
    # int8 layers quantize x into the scratch, so their output may reuse x's buffer
    assert plan["slots"] == 2 or (precision == "int8" and plan["slots"] == 1)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_cpu_input_is_read_in_place_and_never_written(precision, rng):
    """A float32 C-contiguous array is wrapped, not copied: no device allocation, and the
    caller's data is unchanged after the predict. A read-only one (a memory-mapped data set) is
    copied into the staging buffer: a tensor over it would be writable."""
    _, engine, unplanned = _engines("lenet", (1, 28, 28), precision, rng)
    x = rng.standard_normal((5, 1, 28, 28)).astype(np.float32)
    keep = x.copy()
    expected = unplanned.forward(x)
    engine.forward(x)  # buffers for this shape
    before = _allocations()
    np.testing.assert_array_equal(engine.forward(x), expected)
    assert _allocations() - before == 0
    np.testing.assert_array_equal(x, keep)
    x.setflags(write=False)
    np.testing.assert_array_equal(engine.forward(x), expected)
    np.testing.assert_array_equal(x, keep)


@pytest.mark.parametrize("make", [
    lambda x: x.astype(np.float64),                        # converted
    lambda x: np.asfortranarray(x),                        # not C-contiguous
    lambda x: np.concatenate([x, x], axis=1)[:, ::2],      # a strided view
], ids=["float64", "fortran", "strided"])
def test_cpu_input_that_cannot_be_wrapped_is_staged(make, rng):
    _, engine, unplanned = _engines("lenet", (1, 28, 28), "fp32", rng)
    x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    expected = unplanned.forward(x)
    before = _allocations()
    np.testing.assert_array_equal(engine.forward(make(x)), expected)
    plan = engine.memory_plan(x.shape)
    assert _allocations() - before == plan.slots + 1  # the activations and a staging buffer
    before = _allocations()
    np.testing.assert_array_equal(engine.forward(make(x)), expected)
    assert _allocations() - before == 0  # the staging buffer is kept with the set


def test_planned_peak_is_not_above_the_unplanned_peak(rng):
    model, planned, unplanned = _engines("lenet", (1, 28, 28), "fp32", rng)
    x = rng.standard_normal((128, 1, 28, 28)).astype(np.float32)
    assert planned.memory_report(x)["measured"]["peak_bytes"] <= unplanned.memory_report(x)["measured"]["peak_bytes"]


def test_residual_peak_matches_the_plan(rng):
    _, engine, _ = _engines("resnet", (3, 9, 9), "fp32", rng)
    x = rng.standard_normal((16, 3, 9, 9)).astype(np.float32)
    m = engine.memory_report(x)["measured"]
    assert m["peak_bytes"] <= m["planned_peak_bytes"] + SLACK


def _graph_engines(name, rng):
    """A branchy model of tests/engine/test_graph.py (residual adds, concatenations): its
    planned and unplanned fp32 engines and its input shape."""
    from tests.engine.test_graph import _model

    model, shape = _model(name, rng)
    return InferenceEngine.from_model(model), InferenceEngine.from_model(model, plan_memory=False), shape


THREADED = ([pytest.param("chain", n, s, p, id=f"{n}-{p}") for n, s in MODELS for p in ("fp32", "int8")]
            + [pytest.param("graph", n, None, "fp32", id=f"{n}-fp32") for n in ("resnet_ish", "fire")])


@pytest.mark.parametrize("source, name, shape, precision", THREADED)
def test_eight_threads_use_separate_buffers(source, name, shape, precision, rng):
    """Eight threads predicting at once on one engine (a chain, or a graph with branches), each
    on its own batch sizes: every result equals the unplanned engine's, at most one buffer set
    per thread, and nothing allocated once the pool is warm."""
    if source == "chain":
        _, engine, unplanned = _engines(name, shape, precision, rng)
    else:
        engine, unplanned, shape = _graph_engines(name, rng)
    inputs = [rng.standard_normal(((i % 3) + 2,) + shape).astype(np.float32) for i in range(8)]
    expected = [unplanned.forward(x) for x in inputs]
    results: dict[int, list] = {i: [] for i in range(8)}
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        for _ in range(5):
            results[i].append(engine.forward(inputs[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        assert len(results[i]) == 5
        for got in results[i]:
            np.testing.assert_array_equal(got, expected[i])
    assert engine.memory_report()["buffer_sets_allocated"] <= 8
    before = _allocations()
    for x in inputs:  # the pool is warm for every shape now
        engine.forward(x)
    assert _allocations() - before == 0


def test_planned_standalone_batchnorm_softmax_and_embedding(rng):
    conv = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 5 * 5, 6))
    for m in conv.children():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(hg.tensor(rng.standard_normal(3)))
            m.running_var.copy_(hg.tensor(rng.uniform(0.5, 2.0, 3)))
    x = rng.standard_normal((4, 3, 7, 7)).astype(np.float32)
    a = InferenceEngine.from_model(conv)
    b = InferenceEngine.from_model(conv, plan_memory=False)
    assert "batch_norm" in a.describe()
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    emb = nn.Sequential(nn.Embedding(11, 5), nn.Flatten(), nn.Linear(15, 4))
    ids = rng.integers(0, 11, (6, 3))
    a, b = InferenceEngine.from_model(emb), InferenceEngine.from_model(emb, plan_memory=False)
    np.testing.assert_array_equal(a.forward(ids), b.forward(ids))
    np.testing.assert_array_equal(a.forward(ids), b.forward(ids))


def test_memory_report_lists_plans(rng):
    _, engine, _ = _engines("lenet", (1, 28, 28), "fp32", rng)
    engine.batch_size = 32
    x = rng.standard_normal((40, 1, 28, 28)).astype(np.float32)
    r = engine.memory_report(x)
    assert r["weights_bytes"] == engine.weight_bytes() and r["plan_memory"]
    shapes = sorted(p["input_shape"][0] for p in r["plans"])
    assert shapes == [8, 32]  # the two chunk shapes
    for p in r["plans"]:
        assert p["planned_bytes"] == p["activation_bytes"] + p["int8_scratch_bytes"] + p["input_bytes"]
    assert r["measured"]["planned_peak_bytes"] == r["weights_bytes"] + sum(p["planned_bytes"] for p in r["plans"])
    assert r["measured"]["peak_bytes"] <= r["measured"]["planned_peak_bytes"] + SLACK


def test_a_planner_engine_mismatch_fails_loudly(monkeypatch, rng):
    import hipgrad.engine.memplan as memplan

    real = memplan.step_writes

    def short(s, ins, outs, int8):  # a planner that sizes a conv's output for one example
        writes = real(s, ins, outs, int8)
        if s.kind != "conv":
            return writes
        return [memplan.Write((1,) + tuple(w.shape[1:]), w.inplace) for w in writes]

    monkeypatch.setattr(memplan, "step_writes", short)
    _, engine, _ = _engines("lenet", (1, 28, 28), "fp32", rng)
    assert engine.memory_plan((8, 1, 28, 28)).slot_numels[0] < 8 * 6 * 28 * 28
    with pytest.raises(ValueError, match="out"):  # the op refuses the planned view: no overrun
        engine.forward(rng.standard_normal((8, 1, 28, 28)).astype(np.float32))


@pytest.mark.parametrize("layout", ["fortran", "float64", "strided"])
def test_planned_peak_counts_the_cpu_staging_buffer(layout, rng):
    """An input the CPU cannot read in place is converted into a staging buffer: the planned
    figure counts it, and the measured peak is that figure."""
    _, engine, _ = _engines("lenet", (1, 8, 8), "fp32", rng)
    x = rng.standard_normal((33, 1, 8, 8))
    x = {"fortran": np.asfortranarray(x, np.float32), "float64": x,
         "strided": np.repeat(x.astype(np.float32), 2, axis=3)[..., ::2]}[layout]
    m = engine.memory_report(x)["measured"]
    f32 = engine.memory_report(np.ascontiguousarray(x, np.float32))["measured"]
    assert m["planned_peak_bytes"] == f32["planned_peak_bytes"] + 4 * x.size, (m, f32)
    assert m["planned_peak_bytes"] - SLACK <= m["peak_bytes"] <= m["planned_peak_bytes"] + SLACK, m
