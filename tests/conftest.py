"""Shared fixtures: devices (GPU ones skip with the reason), impls, fresh random inputs, and
poisoned allocations so an output element a kernel never writes shows up as NaN."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HIPGRAD_CACHE_DIR", tempfile.mkdtemp(prefix="hipgrad-test-cache-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import hipgrad as hg  # noqa: E402

hg._C._set_poison_allocations(True)

IMPLS = ["handwritten", "vendor", "auto"]


def _device_params():
    params = [pytest.param("cpu", id="cpu")]
    gpu_ok = len(hg.devices()) > 1
    params.append(pytest.param(
        "gpu:0", id="gpu", marks=[pytest.mark.gpu] + ([] if gpu_ok else [pytest.mark.skip(
            reason=f"no GPU: {hg.gpu_unavailable_reason()}")])))
    return params


DEVICES = _device_params()


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(params=IMPLS)
def impl(request) -> str:
    return request.param


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A fresh generator per test; the seed is printed on failure (pytest -ra shows it)."""
    seed = np.random.SeedSequence().entropy % (2**32)
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng(seed)


def to_dev(x: np.ndarray, device: str) -> hg.Tensor:
    return hg.tensor(x, device=device, dtype=x.dtype)


def check(actual, expected: np.ndarray, rtol: float = 1e-4, atol: float = 1e-4, what: str = "") -> None:
    """Shape and dtype before values; NaN anywhere (a poisoned, unwritten element) fails."""
    got = actual.numpy() if isinstance(actual, hg.Tensor) else np.asarray(actual)
    assert got.shape == tuple(expected.shape), f"{what}: shape {got.shape} != {expected.shape}"
    assert np.all(np.isfinite(got)) or not np.all(np.isfinite(expected)), (
        f"{what}: output has non-finite elements (unwritten?) at {np.argwhere(~np.isfinite(got))[:5].tolist()}")
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=rtol, atol=atol, err_msg=what)
