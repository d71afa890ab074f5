"""Windows of tokens for next-token training: a window of block_size + 1 tokens gives the input
x = window[:-1] and the target y = window[1:] (each position predicts the token after it).

Training draws windows at random offsets (reproducibly from (seed, step)); validation reads a
fixed set of windows evenly spread over the validation tokens, so every evaluation of a run sees
the same ones.
"""

from __future__ import annotations

import numpy as np

from .datasets import DataError


class TokenWindows:
    """int64 token ids and the windows over them."""

    def __init__(self, ids: np.ndarray, block_size: int, name: str = "tokens") -> None:
        self.ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        self.block_size = int(block_size)
        self.name = name
        if self.block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        if len(self.ids) < self.block_size + 1:
            raise DataError(f"{name}: {len(self.ids)} tokens is fewer than one window of "
                            f"block_size + 1 = {self.block_size + 1}; use more text or a smaller "
                            "--block-size")

    def __len__(self) -> int:
        return len(self.ids)

    def _gather(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.ids[starts[:, None] + np.arange(self.block_size + 1)[None, :]]
        return np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])

    def random_batch(self, batch_size: int, seed: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) int64 (batch_size, block_size) from windows at offsets drawn from (seed, step)."""
        rng = np.random.default_rng([int(seed), int(step)])
        starts = rng.integers(0, len(self.ids) - self.block_size, size=int(batch_size))
        return self._gather(starts)

    def fixed_windows(self, max_windows: int) -> np.ndarray:
        """Start offsets of up to `max_windows` windows evenly spread over the tokens."""
        last = len(self.ids) - self.block_size - 1
        count = max(1, min(int(max_windows), last // self.block_size + 1))
        return np.unique(np.linspace(0, last, count).round().astype(np.int64))

    def val_batches(self, batch_size: int, max_windows: int = 256):
        """(x, y) batches over the fixed windows."""
        starts = self.fixed_windows(max_windows)
        for i in range(0, len(starts), int(batch_size)):
            yield self._gather(starts[i:i + int(batch_size)])
