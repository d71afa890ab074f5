"""Generation: the KV cache gives the tokens and logits of full recomputation, the weights never
change, sampling is reproducible, the cache is allocated once per (batch, length), INT8 stays
close to fp32, and bad arguments are named."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hipgrad as hg
from hipgrad.lm.engine import GPTEngine
from tests.lm.helpers import SMALL, make_gpt, random_ids


@pytest.fixture
def model(rng):
    return make_gpt(SMALL, int(rng.integers(1 << 30)), scale=20.0)


@pytest.mark.parametrize("b,t0,new", [(1, 5, 8), (3, 2, 20), (2, 16, 4)])
def test_cached_and_uncached_generation_agree_at_temperature_zero(model, rng, b, t0, new):
    engine = hg.InferenceEngine.from_model(model, device="cpu")
    assert isinstance(engine, GPTEngine)
    ids = random_ids(rng, b, t0, SMALL["vocab_size"])
    with_cache = engine.generate(ids, new, temperature=0)
    without = engine.generate(ids, new, temperature=0, use_cache=False)
    assert with_cache.dtype == np.int64 and with_cache.shape == (b, t0 + new)
    np.testing.assert_array_equal(with_cache[:, :t0], ids)
    np.testing.assert_array_equal(with_cache, without)


def test_cached_logits_equal_a_full_forward(model, rng):
    """Prefill then one position at a time: each step's logits are those of a full forward."""
    engine = GPTEngine.from_model(model)
    ids = random_ids(rng, 2, 12, SMALL["vocab_size"])
    full = model.eval()(ids).numpy()
    caches = engine.cache_for(2, 12)
    m = engine.model
    got = [m.forward_cached(hg.tensor(ids[:, :5]), caches, 0).numpy()]
    for p in range(5, 12):
        got.append(m.forward_cached(hg.tensor(ids[:, p:p + 1]), caches, p).numpy())
    for i, g in enumerate(got):
        np.testing.assert_allclose(g, full[:, 4 + i], rtol=1e-4, atol=1e-4)


def test_decode_plan_steps_equal_a_full_forward(model, rng, device):
    """The planned decoding step (the engine's per-token path) at batch 1 and 3, on every
    device: each step's logits are those of a full forward, and the steps allocate no new
    cache; greedy generation with the cache gives the tokens of full recomputation."""
    engine = GPTEngine.from_model(model, device=device)
    m = engine.model
    for b in (1, 3):
        ids = random_ids(rng, b, 12, SMALL["vocab_size"])
        full = model.eval()(ids).numpy()
        plan = engine.plan_for(b, 12)
        caches = [t for layer in plan.caches for t in layer]
        got = [m.forward_cached(hg.tensor(ids[:, :5], device=device), plan.caches, 0).numpy()]
        for p in range(5, 12):
            got.append(plan.step(ids[:, p], p).numpy().copy())
        for i, g in enumerate(got):
            np.testing.assert_allclose(g, full[:, 4 + i], rtol=1e-4, atol=1e-4)
        assert all(a is b for a, b in zip(caches, (t for layer in plan.caches for t in layer)))
        with pytest.raises(ValueError, match=r"pos must be in \[0, 12\)"):
            plan.step(ids[:, 0], 12)
        np.testing.assert_array_equal(engine.generate(ids[:, :4], 9, temperature=0),
                                      engine.generate(ids[:, :4], 9, temperature=0, use_cache=False))


def test_greedy_continuation_matches_argmax_of_the_reference(model, rng):
    from tests.lm import reference as ref
    ids = random_ids(rng, 1, 4, SMALL["vocab_size"])
    out = GPTEngine.from_model(model).generate(ids, 6, temperature=0)
    sd = model.state_dict()
    for i in range(4, 10):
        logits = ref.gpt_forward(sd, out[:, :i], SMALL["n_head"])[0, -1]
        top2 = np.sort(logits)[-2:]
        if top2[1] - top2[0] > 1e-3:          # a near tie may go either way in float32
            assert out[0, i] == logits.argmax()


def test_context_beyond_block_size_is_cropped_and_said_once(model, rng):
    engine = GPTEngine.from_model(model)
    long = random_ids(rng, 1, 20, SMALL["vocab_size"])
    with pytest.warns(UserWarning, match="more than block_size 16") as record:
        out = engine.generate(long, 3, temperature=0)
    assert len(record) == 1
    cropped = engine.generate(long[:, -16:], 3, temperature=0)
    np.testing.assert_array_equal(out[:, 20:], cropped[:, 16:])


def test_weights_never_change_and_the_cache_is_allocated_once(model, rng):
    engine = GPTEngine.from_model(model)
    digest = engine.weights_digest()
    ids = random_ids(rng, 2, 3, SMALL["vocab_size"])
    engine.generate(ids, 5, temperature=0.7, seed=1)
    first = [t for layer in engine.cache_for(2, 8) for t in layer]
    engine.generate(ids, 5, temperature=0.7, seed=2)
    again = [t for layer in engine.cache_for(2, 8) for t in layer]
    assert all(a is b for a, b in zip(first, again)) and len(engine._plans) == 1
    assert engine.weights_digest() == digest
    model.transformer.wte.weight.data.zero_()   # training the source later does not leak in
    assert engine.weights_digest() == digest


def test_sampling_is_reproducible_and_top_k_one_is_greedy(model, rng):
    engine = GPTEngine.from_model(model)
    ids = random_ids(rng, 2, 3, SMALL["vocab_size"])
    a = engine.generate(ids, 10, temperature=1.0, seed=7)
    np.testing.assert_array_equal(a, engine.generate(ids, 10, temperature=1.0, seed=7))
    np.testing.assert_array_equal(engine.generate(ids, 10, temperature=1.3, top_k=1, seed=3),
                                  engine.generate(ids, 10, temperature=0))
    assert np.all((a >= 0) & (a < SMALL["vocab_size"]))


def test_int8_generation_stays_close_to_fp32(model, rng):
    ids = random_ids(rng, 2, 10, SMALL["vocab_size"])
    fp32 = GPTEngine.from_model(model)
    int8 = GPTEngine.from_model(model, precision="int8")
    int8.calibrate(ids)
    a = fp32.model.logits_last(hg.tensor(ids)).numpy()
    b = int8.model.logits_last(hg.tensor(ids)).numpy()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98
    out = int8.generate(ids, 5, temperature=0)
    assert out.shape == (2, 15)
    assert int8.weights_digest() == int8.weights_digest() != fp32.weights_digest()


@pytest.mark.parametrize("kw,match", [
    ({"temperature": -0.5}, "temperature must be a finite number >= 0"),
    ({"temperature": math.nan}, "temperature"),
    ({"temperature": math.inf}, "temperature"),
    ({"top_k": 0}, r"top_k must be in \[1, 37\]"),
    ({"top_k": 38}, r"top_k must be in \[1, 37\]"),
    ({"top_k": 2.5}, "top_k must be an int"),
])
def test_bad_sampling_arguments_are_named(model, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        GPTEngine.from_model(model).generate(np.zeros((1, 2), np.int64), 3, **kw)


@pytest.mark.parametrize("ids,match", [
    (np.zeros((1, 0), np.int64), "empty"),
    (np.full((1, 3), 37), "outside the vocabulary"),
    (np.full((1, 3), -1), "outside the vocabulary"),
    (np.zeros((1, 3), np.float32), "int64 token ids"),
    (np.zeros(3, np.int64), r"\(B, T0\)"),
])
def test_bad_prompts_are_named(model, ids, match):
    with pytest.raises((ValueError, TypeError), match=match):
        GPTEngine.from_model(model).generate(ids, 3)


def test_inference_engine_loads_a_gpt_checkpoint_with_its_tokenizer(model, rng, tmp_path):
    from hipgrad.data.text import ByteTokenizer
    from hipgrad.lm.train import LMTrainer
    from hipgrad.data.windows import TokenWindows
    data = TokenWindows(random_ids(rng, 1, 200, SMALL["vocab_size"]), SMALL["block_size"])
    trainer = LMTrainer(model, ByteTokenizer(), data, data, batch_size=2)
    trainer.save(tmp_path / "model.safetensors")
    engine = hg.InferenceEngine.load(str(tmp_path), device="cpu")
    assert isinstance(engine, GPTEngine) and engine.tokenizer.kind == "byte"
    ids = random_ids(rng, 1, 4, SMALL["vocab_size"])
    np.testing.assert_array_equal(engine.generate(ids, 5, temperature=0),
                                  GPTEngine.from_model(model).generate(ids, 5, temperature=0))
