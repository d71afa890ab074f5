"""PyTorch's default initialisations, drawn in NumPy from hipgrad's generator (hg.manual_seed).

Initialisation is the one place the layers compute in NumPy: arrays are made here, then copied
to the layer's device once."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from .. import random as _random


def fan_in(shape: Sequence[int]) -> int:
    """Inputs feeding one output: shape[1] * prod(shape[2:]), for Linear (out, in) and
    conv (K, C/groups, R, S) weights."""
    if len(shape) < 2:
        raise ValueError(f"fan_in: a weight needs at least 2 dimensions, got shape {tuple(shape)}")
    return int(shape[1] * math.prod(shape[2:]))


def _sized(shape: Sequence[int]) -> tuple[int, ...]:
    """shape, refused (MemoryError naming it) before NumPy tries an impossible allocation."""
    shape = tuple(int(s) for s in shape)
    n = math.prod(shape)
    if n > 2**59 or 8 * n > _physical_memory():  # sampled in float64 first
        raise MemoryError(f"a parameter of shape {shape} ({n} elements) is too large to "
                          "allocate on this machine")
    return shape


def _physical_memory() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


def uniform(shape: Sequence[int], bound: float) -> np.ndarray:
    """float32 samples of U(-bound, bound)."""
    shape = _sized(shape)
    return _random.generator().uniform(-bound, bound, size=tuple(shape)).astype(np.float32)


def normal(shape: Sequence[int], std: float = 1.0) -> np.ndarray:
    """float32 samples of N(0, std^2)."""
    shape = _sized(shape)
    return (_random.generator().standard_normal(size=tuple(shape)) * std).astype(np.float32)


def kaiming_uniform(shape: Sequence[int], a: float = math.sqrt(5.0)) -> np.ndarray:
    """Kaiming-uniform with leaky-ReLU slope `a` (PyTorch's default for Linear and Conv2d weights):
    bound = sqrt(6 / ((1 + a^2) fan_in)), which is 1/sqrt(fan_in) for a = sqrt(5)."""
    fan = fan_in(shape)
    bound = math.sqrt(6.0 / ((1.0 + a * a) * fan)) if fan > 0 else 0.0
    return uniform(shape, bound)


def bias_uniform(num: int, weight_shape: Sequence[int]) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for a bias of `num` entries (PyTorch's default)."""
    fan = fan_in(weight_shape)
    return uniform((num,), 1.0 / math.sqrt(fan) if fan > 0 else 0.0)
