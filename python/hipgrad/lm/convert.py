"""Loading GPT weights written elsewhere: nanoGPT checkpoints (the same keys and layouts as
hipgrad's GPT, possibly under torch.compile's "_orig_mod." prefix) and Hugging Face GPT-2
state_dicts (their Conv1D layers store weights as (in, out): transposed here).

    sd = torch.load("ckpt.pt")["model"]                         # nanoGPT's train.py output
    model = gpt_from_state_dict(from_nanogpt(sd), n_head=6)
    model = gpt_from_state_dict(from_hf_gpt2(GPT2LMHeadModel(...).state_dict()), n_head=12)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn.module import to_array

# Hugging Face's Conv1D weights, (in, out) where a Linear holds (out, in).
HF_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_MASKS = (".attn.bias", ".attn.masked_bias")


def _arrays(sd: dict) -> dict[str, np.ndarray]:
    if not isinstance(sd, dict):
        raise TypeError(f"state_dict must be a dict, got {type(sd).__name__}")
    return {k: to_array(v, k) for k, v in sd.items()}


def _is_mask(key: str, value: np.ndarray) -> bool:
    """The causal-mask buffers (nanoGPT without flash attention, Hugging Face): not weights."""
    return key.endswith(_MASKS) and value.ndim != 1 or key.endswith(".attn.masked_bias")


def from_nanogpt(sd: dict) -> dict[str, np.ndarray]:
    """A nanoGPT state_dict in hipgrad's keys: the compile prefix and mask buffers dropped,
    lm_head.weight made present (it is tied to transformer.wte.weight)."""
    out = {}
    for k, v in _arrays(sd).items():
        k = k.removeprefix("_orig_mod.")
        if not _is_mask(k, v):
            out[k] = v
    if "lm_head.weight" not in out and "transformer.wte.weight" in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def from_hf_gpt2(sd: dict) -> dict[str, np.ndarray]:
    """A Hugging Face GPT2LMHeadModel / GPT2Model state_dict in hipgrad's keys and layouts."""
    out = {}
    for k, v in _arrays(sd).items():
        if _is_mask(k, v):
            continue
        if not k.startswith(("transformer.", "lm_head.")):
            k = "transformer." + k              # GPT2Model has no "transformer." prefix
        if k.endswith(HF_TRANSPOSED):
            if v.ndim != 2:
                raise ValueError(f"from_hf_gpt2: {k} should be a 2-D Conv1D weight, got shape {v.shape}")
            v = np.ascontiguousarray(v.T)
        out[k] = v
    if "lm_head.weight" not in out and "transformer.wte.weight" in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def config_from_state_dict(sd: dict[str, np.ndarray], n_head: int) -> dict[str, Any]:
    """The GPT sizes a state_dict implies (the head count is not in the weights: give it)."""
    try:
        vocab, n_embd = sd["transformer.wte.weight"].shape
        block = sd["transformer.wpe.weight"].shape[0]
    except KeyError as e:
        raise ValueError(f"state_dict has no {e.args[0]!r}: not a GPT state_dict") from None
    n_layer = 0
    while f"transformer.h.{n_layer}.attn.c_attn.weight" in sd:
        n_layer += 1
    return {"vocab_size": int(vocab), "block_size": int(block), "n_layer": n_layer,
            "n_head": int(n_head), "n_embd": int(n_embd),
            "bias": "transformer.ln_f.bias" in sd}


def gpt_from_state_dict(sd: dict[str, np.ndarray], n_head: int) -> Any:
    """A hipgrad GPT holding `sd` (hipgrad/nanoGPT keys, e.g. from from_nanogpt / from_hf_gpt2)."""
    from ..training.models import build_model
    model = build_model("gpt", **config_from_state_dict(sd, n_head))
    model.load_state_dict(sd, strict=True)
    return model
