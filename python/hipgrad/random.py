"""The package's random state: one NumPy generator that parameter initialisation and dropout
seeds draw from, reseeded by `hg.manual_seed(n)` for reproducible runs."""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Reseed the generator behind initialisation and dropout (any non-negative int)."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def generator() -> np.random.Generator:
    """The current generator (replaced, not reseeded in place, by manual_seed)."""
    return _generator


def next_seed() -> int:
    """A fresh 63-bit seed for a device-side random op such as dropout."""
    return int(_generator.integers(0, 2**63 - 1))
