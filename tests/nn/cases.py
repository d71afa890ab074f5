"""The layer cases every generic test runs: a hipgrad factory, the same layer in torch.nn, an
input shape and the float64 reference forward (training mode)."""

from __future__ import annotations

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

    def input(self, rng: np.random.Generator) -> np.ndarray:
        if self.int_input:
            return rng.integers(0, self.int_input, size=self.x_shape).astype(np.int64)
        return rng.standard_normal(self.x_shape).astype(np.float32)


def sub(p: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}


def _act(kind: str, alpha: float = 0.0) -> Callable:
    return lambda x, p: ref.ACTIVATIONS[kind](x, alpha)


def _block_ref(x, p):
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


def _mlp_ref(x, p):
    h = ref.conv2d(x, sub(p, "0."), padding=(1, 1))
    h = ref.max_pool2d(np.where(h > 0, h, 0.1 * h), (2, 2), (2, 2), (0, 0))
    h = ref.batch_norm_train(h, sub(p, "3."), 1e-5).reshape(h.shape[0], -1)
    return ref.linear(np.tanh(ref.linear(h, sub(p, "5."))), sub(p, "7."))


CASES = [
    Case("linear", lambda: nn.Linear(7, 3), lambda t: t.Linear(7, 3), (5, 7), ref.linear),
    Case("linear_1x1_nobias", lambda: nn.Linear(1, 1, bias=False),
         lambda t: t.Linear(1, 1, bias=False),
         (1, 1), ref.linear),
    Case("linear_3d_input", lambda: nn.Linear(4, 5), lambda t: t.Linear(4, 5), (2, 3, 4),
         ref.linear),
    Case("conv_3x3_pad", lambda: nn.Conv2d(3, 5, 3, padding=1),
         lambda t: t.Conv2d(3, 5, 3, padding=1),
         (2, 3, 7, 6), lambda x, p: ref.conv2d(x, p, padding=(1, 1))),
    Case("conv_grouped_strided_dilated",
         lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
         lambda t: t.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
         (1, 4, 9, 7), lambda x, p: ref.conv2d(x, p, (2, 1), (1, 0), (1, 2), 2)),
    Case("conv_depthwise_1x1_nobias", lambda: nn.Conv2d(3, 3, 1, groups=3, bias=False),
         lambda t: t.Conv2d(3, 3, 1, groups=3, bias=False), (3, 3, 5, 5),
         lambda x, p: ref.conv2d(x, p, groups=3)),
    Case("relu", nn.ReLU, lambda t: t.ReLU(), (3, 5, 7), _act("relu")),
    Case("leaky_relu", lambda: nn.LeakyReLU(0.2), lambda t: t.LeakyReLU(0.2), (3, 31),
         _act("leaky_relu", 0.2)),
    Case("sigmoid", nn.Sigmoid, lambda t: t.Sigmoid(), (4, 7), _act("sigmoid")),
    Case("tanh", nn.Tanh, lambda t: t.Tanh(), (4, 7), _act("tanh")),
    Case("gelu", nn.GELU, lambda t: t.GELU(), (4, 7), _act("gelu")),
    Case("gelu_tanh", lambda: nn.GELU("tanh"), lambda t: t.GELU(approximate="tanh"), (4, 7),
         _act("gelu_tanh")),
    Case("elu", lambda: nn.ELU(0.7), lambda t: t.ELU(0.7), (2, 3, 5), _act("elu", 0.7)),
    Case("maxpool_2", lambda: nn.MaxPool2d(2), lambda t: t.MaxPool2d(2), (2, 3, 7, 7),
         lambda x, p: ref.max_pool2d(x, (2, 2), (2, 2), (0, 0))),
    Case("maxpool_3_s2_p1", lambda: nn.MaxPool2d(3, stride=2, padding=1),
         lambda t: t.MaxPool2d(3, stride=2, padding=1), (1, 2, 9, 8),
         lambda x, p: ref.max_pool2d(x, (3, 3), (2, 2), (1, 1))),
    Case("avgpool_2", lambda: nn.AvgPool2d(2), lambda t: t.AvgPool2d(2), (2, 3, 7, 7),
         lambda x, p: ref.avg_pool2d(x, (2, 2), (2, 2), (0, 0))),
    Case("avgpool_3x2_s2_p1", lambda: nn.AvgPool2d((3, 2), stride=2, padding=1),
         lambda t: t.AvgPool2d((3, 2), stride=2, padding=1), (2, 1, 7, 5),
         lambda x, p: ref.avg_pool2d(x, (3, 2), (2, 2), (1, 1))),
    Case("flatten", nn.Flatten, lambda t: t.Flatten(), (2, 3, 4, 5), lambda x, p: x.reshape(2, -1)),
    Case("flatten_1_2", lambda: nn.Flatten(1, 2), lambda t: t.Flatten(1, 2), (2, 3, 4, 5),
         lambda x, p: x.reshape(2, 12, 5)),
    Case("batchnorm2d", lambda: nn.BatchNorm2d(3), lambda t: t.BatchNorm2d(3), (4, 3, 5, 5),
         lambda x, p: ref.batch_norm_train(x, p, 1e-5)),
    Case("batchnorm2d_2d_input", lambda: nn.BatchNorm2d(5, eps=1e-3, momentum=0.3),
         lambda t: t.BatchNorm1d(5, eps=1e-3, momentum=0.3), (7, 5),
         lambda x, p: ref.batch_norm_train(x, p, 1e-3)),
    Case("batchnorm1d_3d_input", lambda: nn.BatchNorm1d(3), lambda t: t.BatchNorm1d(3), (4, 3, 6),
         lambda x, p: ref.batch_norm_train(x, p, 1e-5)),
    Case("embedding", lambda: nn.Embedding(11, 4), lambda t: t.Embedding(11, 4), (3, 5),
         lambda idx, p: p["weight"][idx], int_input=11),
    Case("identity", nn.Identity, lambda t: t.Identity(), (3, 4), lambda x, p: x),
    Case("residual_identity", lambda: nn.Residual(nn.Sequential(nn.Linear(4, 4), nn.Tanh())),
         lambda t: torch_residual(t, t.Sequential(t.Linear(4, 4), t.Tanh())), (3, 4),
         lambda x, p: np.tanh(ref.linear(x, sub(p, "body.0."))) + x),
    Case("resnet_block", make_block, torch_block, (2, 3, 7, 7), _block_ref),
    Case("sequential_cnn",
         lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
                               nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 5), nn.Tanh(),
                               nn.Linear(5, 3)),
         lambda t: t.Sequential(t.Conv2d(2, 3, 3, padding=1), t.LeakyReLU(0.1), t.MaxPool2d(2),
                                t.BatchNorm2d(3), t.Flatten(), t.Linear(12, 5), t.Tanh(),
                                t.Linear(5, 3)),
         (3, 2, 5, 4), _mlp_ref),
]


def torch_residual(tnn, body):
    block = torch_block(tnn)
    block.body, block.shortcut = body, None
    return block
