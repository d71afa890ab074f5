"""The GPT against independent references: a float64 NumPy forward, central differences of it
for every gradient (the tied embedding included), and nanoGPT written in PyTorch float64 loaded
with the same state_dict (logits and every gradient), plus the Hugging Face layout converter."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import nn
from hipgrad.lm import convert
from tests.conftest import check
from tests.lm import reference as ref
from tests.lm.helpers import SMALL, TINY, make_gpt, random_ids


def _loss_and_grads(model, idx, targets):
    loss_fn = nn.CrossEntropyLoss()
    logits = model(idx)
    loss = loss_fn(logits, targets)
    model.zero_grad()
    model.backward(loss_fn.backward())
    return logits, loss, {k: p.grad.numpy() for k, p in model.named_parameters()}


@pytest.mark.parametrize("b,t", [(3, 7), (1, 1), (2, 16)])
def test_forward_matches_float64_reference(rng, b, t):
    model = make_gpt(SMALL, int(rng.integers(1 << 30)), scale=5.0)
    idx = random_ids(rng, b, t, SMALL["vocab_size"])
    logits = model(idx)
    assert tuple(logits.shape) == (b, t, SMALL["vocab_size"])
    check(logits, ref.gpt_forward(model.state_dict(), idx, SMALL["n_head"]), rtol=2e-4, atol=2e-4)


def test_gradients_match_central_differences_of_the_reference(rng):
    model = make_gpt(TINY, int(rng.integers(1 << 30)), scale=10.0)
    idx = random_ids(rng, 2, 5, TINY["vocab_size"])
    targets = random_ids(rng, 2, 5, TINY["vocab_size"])
    _, loss, grads = _loss_and_grads(model, idx, targets)
    sd = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    assert abs(loss - ref.cross_entropy(ref.gpt_forward(sd, idx, TINY["n_head"]), targets)) < 1e-5
    eps = 1e-5
    for key, g in grads.items():
        tied = ["transformer.wte.weight", "lm_head.weight"] if key == "transformer.wte.weight" else [key]
        num = np.zeros(g.shape)
        for i in np.ndindex(g.shape):
            vals = []
            for sign in (1, -1):
                p = dict(sd)
                for k in tied:
                    p[k] = sd[k].copy()
                    p[k][i] += sign * eps
                vals.append(ref.cross_entropy(ref.gpt_forward(p, idx, TINY["n_head"]), targets))
            num[i] = (vals[0] - vals[1]) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=2e-3, atol=2e-5, err_msg=key)


def test_tied_weight_is_one_parameter_with_both_keys():
    model = make_gpt(TINY, 3)
    names = [n for n, _ in model.named_parameters()]
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names
    sd = model.state_dict()
    np.testing.assert_array_equal(sd["lm_head.weight"], sd["transformer.wte.weight"])
    assert model.lm_head.weight is model.transformer.wte.weight


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed")


def test_matches_nanogpt_in_pytorch_logits_and_gradients(rng):
    torch = _torch()
    from tests.lm import torch_gpt
    model = make_gpt(SMALL, int(rng.integers(1 << 30)), scale=5.0)
    idx = random_ids(rng, 2, 9, SMALL["vocab_size"])
    targets = random_ids(rng, 2, 9, SMALL["vocab_size"])
    logits, loss, grads = _loss_and_grads(model, idx, targets)
    tm = torch_gpt.build(torch, **SMALL).double()
    tm.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in model.state_dict().items()},
                       strict=True)
    tl = tm(torch.from_numpy(idx))
    tloss = torch.nn.functional.cross_entropy(tl.reshape(-1, SMALL["vocab_size"]),
                                              torch.from_numpy(targets).reshape(-1))
    tloss.backward()
    check(logits, tl.detach().numpy(), rtol=2e-4, atol=2e-4)
    assert abs(loss - tloss.item()) < 1e-5
    for k, p in tm.named_parameters():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=1e-3, atol=2e-5, err_msg=k)


def test_nanogpt_state_dict_loads_both_ways(rng):
    torch = _torch()
    from tests.lm import torch_gpt
    torch.manual_seed(int(rng.integers(1 << 30)))
    tm = torch_gpt.build(torch, **SMALL)
    compiled_keys = {"_orig_mod." + k: v for k, v in tm.state_dict().items()}
    model = convert.gpt_from_state_dict(convert.from_nanogpt(compiled_keys), n_head=SMALL["n_head"])
    idx = random_ids(rng, 2, 6, SMALL["vocab_size"])
    check(model(idx), tm(torch.from_numpy(idx)).detach().numpy(), rtol=1e-4, atol=1e-5)
    back = torch_gpt.build(torch, **SMALL)
    back.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k].numpy(), v.numpy())


def test_hugging_face_layout_is_transposed_back(rng):
    model = make_gpt(SMALL, int(rng.integers(1 << 30)))
    sd = model.state_dict()
    hf = {}
    for k, v in sd.items():
        if k == "lm_head.weight":
            continue
        v = v.T.copy() if k.endswith(convert.HF_TRANSPOSED) else v
        hf[k.removeprefix("transformer.")] = v
    hf["h.0.attn.bias"] = np.tril(np.ones((1, 1, 16, 16), np.float32))
    hf["h.0.attn.masked_bias"] = np.float32(-1e4)
    back = convert.from_hf_gpt2(hf)
    assert sorted(back) == sorted(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)
    other = convert.gpt_from_state_dict(back, n_head=SMALL["n_head"])
    idx = random_ids(rng, 1, 5, SMALL["vocab_size"])
    np.testing.assert_array_equal(other(idx).numpy(), model(idx).numpy())


def test_cross_entropy_takes_nd_logits(rng):
    logits = rng.standard_normal((2, 3, 5)).astype(np.float32)
    labels = rng.integers(0, 5, (2, 3))
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(hg.tensor(logits), labels)
    assert abs(loss - ref.cross_entropy(logits.astype(np.float64), labels)) < 1e-6
    d = loss_fn.backward()
    assert tuple(d.shape) == (2, 3, 5)
    z = np.exp(logits - logits.max(-1, keepdims=True))
    p = z / z.sum(-1, keepdims=True)
    p[np.arange(2)[:, None], np.arange(3)[None], labels] -= 1
    check(d, p / 6, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="labels must have shape"):
        loss_fn(hg.tensor(logits), labels[:, :2])


@pytest.mark.parametrize("bad,kw,match", [
    (np.zeros((2, 17), np.int64), {}, "block_size"),
    (np.zeros((2, 3), np.float32), {}, "integer token ids"),
    (np.zeros((3,), np.int64), {}, r"\(B, T\)"),
])
def test_bad_ids_are_named(bad, kw, match):
    model = make_gpt(SMALL, 0)
    with pytest.raises((ValueError, TypeError), match=match):
        model(bad)


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="multiple of n_head"):
        hg.build_model("gpt", vocab_size=10, block_size=4, n_layer=1, n_head=3, n_embd=8)
    with pytest.raises(ValueError, match="vocab_size"):
        hg.build_model("gpt", vocab_size=0, block_size=4, n_layer=1, n_head=1, n_embd=8)


def test_without_biases_matches_the_reference(rng):
    model = make_gpt(SMALL, int(rng.integers(1 << 30)), scale=5.0, bias=False)
    sd = model.state_dict()
    assert not any(k.endswith(".bias") for k in sd)
    idx = random_ids(rng, 2, 6, SMALL["vocab_size"])
    check(model(idx), ref.gpt_forward(sd, idx, SMALL["n_head"]), rtol=2e-4, atol=2e-4)
