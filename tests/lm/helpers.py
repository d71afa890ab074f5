"""Small GPTs and their data for the language-model tests."""

from __future__ import annotations

import numpy as np

import hipgrad as hg

SMALL = dict(vocab_size=37, block_size=16, n_layer=2, n_head=3, n_embd=24)
TINY = dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)


def make_gpt(cfg: dict, seed: int, scale: float = 1.0, **extra):
    """A GPT with nanoGPT's initialisation, every weight then multiplied by `scale` and the
    LayerNorm gains/biases set to random values (so no term of the forward is trivial)."""
    hg.manual_seed(seed)
    model = hg.build_model("gpt", **cfg, **extra)
    rng = np.random.default_rng(seed)
    sd = model.state_dict()
    for k, v in sd.items():
        if ".ln_" in k or "ln_f" in k:
            sd[k] = (1.0 if k.endswith("weight") else 0.0) + 0.3 * rng.standard_normal(v.shape)
        else:
            sd[k] = v * scale
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    model.load_state_dict({k: np.asarray(v, np.float32) for k, v in sd.items()})
    return model


def random_ids(rng, b, t, vocab):
    return rng.integers(0, vocab, size=(b, t)).astype(np.int64)
