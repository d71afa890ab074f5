"""What the layer cases share: the Case type (a hipgrad factory, the same layer in torch.nn, an
input shape and the float64 reference forward in training mode) and the helpers of the larger
cases. The cases themselves are the LAYER_CASES of tests/op_cases.py."""

from __future__ import annotations

import math

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hipgrad as hg
import numpy as np
import pytest

from tests.nn import reference as ref

nn = hg.nn


def import_torch():
    """torch, or a skip saying how to install the pinned CPU wheel."""
    return pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)",
                               exc_type=ImportError)


@dataclass
class Case:
    id: str
    make: Callable[[], Any]                 # the hipgrad module
    torch: Callable[[Any], Any]             # torch.nn -> the same module in torch
    x_shape: tuple[int, ...]
    ref: Callable[[np.ndarray, dict], np.ndarray]
    int_input: int = 0                      # > 0: integer input in [0, int_input)
    distinct: bool = False                  # values at least 1e-2 apart (no near-ties for max)

    def input(self, rng: np.random.Generator) -> np.ndarray:
        if self.int_input:
            return rng.integers(0, self.int_input, size=self.x_shape).astype(np.int64)
        if self.distinct:  # finite differences must not cross a tie between two window values
            n = int(np.prod(self.x_shape))
            return ((rng.permutation(n) - n / 2) * 0.0125).reshape(self.x_shape).astype(np.float32)
        return rng.standard_normal(self.x_shape).astype(np.float32)


def sub(p: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}


def act_ref(kind: str, alpha: float = 0.0) -> Callable:
    return lambda x, p: ref.ACTIVATIONS[kind](x, alpha)


def block_ref(x, p):
    """Residual(body=[conv3x3 s2, BN, ReLU, conv3x3, BN], shortcut=[conv1x1 s2, BN])."""
    b = sub(p, "body.")
    h = ref.conv2d(x, sub(b, "0."), stride=(2, 2), padding=(1, 1))
    h = np.maximum(ref.batch_norm_train(h, sub(b, "1."), 1e-5), 0)
    h = ref.batch_norm_train(ref.conv2d(h, sub(b, "3."), padding=(1, 1)), sub(b, "4."), 1e-5)
    s = ref.batch_norm_train(ref.conv2d(x, sub(p, "shortcut.0."), stride=(2, 2)),
                             sub(p, "shortcut.1."), 1e-5)
    return h + s


def make_block():
    return nn.Residual(
        nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4),
                      nn.ReLU(),
                      nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)),
        nn.Sequential(nn.Conv2d(3, 4, 1, stride=2, bias=False), nn.BatchNorm2d(4)))


def torch_block(tnn):
    import torch

    class Residual(torch.nn.Module):
        def __init__(self, body, shortcut=None):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    return Residual(
        tnn.Sequential(tnn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), tnn.BatchNorm2d(4),
                       tnn.ReLU(),
                       tnn.Conv2d(4, 4, 3, padding=1, bias=False), tnn.BatchNorm2d(4)),
        tnn.Sequential(tnn.Conv2d(3, 4, 1, stride=2, bias=False), tnn.BatchNorm2d(4)))


def mlp_ref(x, p):
    h = ref.conv2d(x, sub(p, "0."), padding=(1, 1))
    h = ref.max_pool2d(np.where(h > 0, h, 0.1 * h), (2, 2), (2, 2), (0, 0))
    h = ref.batch_norm_train(h, sub(p, "3."), 1e-5).reshape(h.shape[0], -1)
    return ref.linear(np.tanh(ref.linear(h, sub(p, "5."))), sub(p, "7."))




def torch_residual(tnn, body):
    block = torch_block(tnn)
    block.body, block.shortcut = body, None
    return block


# ---- nn.Concat: a Fire-style block; x is read by three steps (two convs and the concat) ------
def make_fire():
    return nn.Concat(nn.Sequential(nn.Conv2d(3, 2, 1), nn.Sigmoid()),
                     nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh()),
                     nn.Identity(), dim=1)


def torch_fire(tnn):
    import torch

    class Concat(torch.nn.Module):
        def __init__(self, *branches, dim=1):
            super().__init__()
            self.dim = dim
            for i, b in enumerate(branches):
                self.add_module(str(i), b)

        def forward(self, x):
            return torch.cat([b(x) for b in self.children()], self.dim)

    return Concat(tnn.Sequential(tnn.Conv2d(3, 2, 1), tnn.Sigmoid()),
                  tnn.Sequential(tnn.Conv2d(3, 3, 3, padding=1), tnn.Tanh()), tnn.Identity())


def fire_ref(x, p):
    a = 1.0 / (1.0 + np.exp(-ref.conv2d(x, sub(p, "0.0."))))
    b = np.tanh(ref.conv2d(x, sub(p, "1.0."), padding=(1, 1)))
    return np.concatenate([a, b, x], axis=1)


# ---- the transformer layers (nn.LayerNorm, CausalSelfAttention, MLP, Block) -------------------
def _ln(x, p, prefix=""):
    mean = x.mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-5) * p[prefix + "weight"]
    return y + p[prefix + "bias"]


def _lin(x, p, prefix):
    return x @ p[prefix + "weight"].T + p[prefix + "bias"]


def _erf_gelu(x):
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def ln_ref(x, p):
    return _ln(x, p)


def mlp_block_ref(x, p, prefix=""):
    return _lin(_erf_gelu(_lin(x, p, prefix + "c_fc.")), p, prefix + "c_proj.")


def attn_ref(x, p, n_head=2, prefix=""):
    b, t, c = x.shape
    qkv = _lin(x, p, prefix + "c_attn.")
    q, k, v = (qkv[..., j * c:(j + 1) * c].reshape(b, t, n_head, c // n_head).transpose(0, 2, 1, 3)
               for j in range(3))
    s = np.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(c // n_head)
    s = np.where(np.arange(t)[None, :] > np.arange(t)[:, None], -np.inf, s)
    e = np.exp(s - s.max(-1, keepdims=True))
    y = np.einsum("bhij,bhjd->bhid", e / e.sum(-1, keepdims=True), v)
    return _lin(y.transpose(0, 2, 1, 3).reshape(b, t, c), p, prefix + "c_proj.")


def gpt_block_ref(x, p):
    x = x + attn_ref(_ln(x, p, "ln_1."), p, prefix="attn.")
    return x + mlp_block_ref(_ln(x, p, "ln_2."), p, prefix="mlp.")


def torch_transformer(t, kind: str, c: int = 8, n_head: int = 2):
    """nanoGPT's LayerNorm / CausalSelfAttention / MLP / Block in torch.nn, same parameter names."""
    import torch

    F = torch.nn.functional

    class MLP(t.Module):
        def __init__(self):
            super().__init__()
            self.c_fc, self.c_proj = t.Linear(c, 4 * c), t.Linear(4 * c, c)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x)))

    class Attention(t.Module):
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = t.Linear(c, 3 * c), t.Linear(c, c)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = (z.view(b, n, n_head, c // n_head).transpose(1, 2)
                       for z in self.c_attn(x).split(c, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(b, n, c))

    class Block(t.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2, self.mlp = t.LayerNorm(c), Attention(), t.LayerNorm(c), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    return {"layer_norm": lambda: t.LayerNorm(c), "mlp": MLP, "attention": Attention,
            "block": Block}[kind]()
