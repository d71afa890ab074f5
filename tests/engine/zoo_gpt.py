"""A PyTorch twin of hipgrad's GPT (hipgrad/lm/model.py, nanoGPT's layout and state_dict
keys) for the ONNX tests: the same weights in torch.nn, exported with torch.onnx.export, so
the engine's import of the file can be compared with hipgrad's own GPT, PyTorch and
onnxruntime. `flash` picks the attention as nanoGPT writes it: F.scaled_dot_product_attention
(is_causal) or the explicit masked softmax."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, flash: bool):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head, self.n_embd, self.flash = n_head, n_embd, flash
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size),
                             persistent=False)

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        q = q.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        v = v.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int, flash: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, flash)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(n_embd, 4 * n_embd), gelu=nn.GELU(),
                                      c_proj=nn.Linear(4 * n_embd, n_embd)))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        m = self.mlp
        return x + m.c_proj(m.gelu(m.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 flash: bool = False):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([Block(n_embd, n_head, block_size, flash) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd)))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx):
        t = idx.size(1)
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def twin(model, flash: bool = False) -> GPT:
    """A torch GPT holding the weights of hipgrad's GPT `model` (hg.build_model("gpt", ...))."""
    cfg = model.config
    tw = GPT(cfg["vocab_size"], cfg["block_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"], flash)
    state = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in model.state_dict().items()}
    missing, unexpected = tw.load_state_dict(state, strict=False)
    if [m for m in missing if not m.endswith("attn.bias")] or unexpected:
        raise ValueError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
    return tw.eval()


def export(tw: GPT, path: str, exporter: str, opset: int, t: int) -> str:
    """Exported with input "idx" (N, t) int64, N dynamic, output "logits" (N, t, vocab)."""
    idx = torch.zeros((2, t), dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(tw, (idx,), path, dynamo=False, opset_version=opset, input_names=["idx"],
                              output_names=["logits"], dynamic_axes={"idx": {0: "N"}, "logits": {0: "N"}})
        else:
            torch.onnx.export(tw, (idx,), path, dynamo=True, opset_version=opset, input_names=["idx"],
                              output_names=["logits"], dynamic_shapes={"idx": {0: torch.export.Dim("N", max=1024)}},
                              external_data=False)
    return path
