"""CrossEntropyLoss and MSELoss: the float they return and the gradient backward() gives, against
float64 NumPy (with finite differences) and torch.nn.functional."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check, to_dev
from tests.nn import reference as ref
from tests.nn.cases import import_torch

nn = hg.nn


@pytest.mark.parametrize("nc", [(1, 1), (7, 3), (33, 129)])
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
def test_cross_entropy_matches_reference(device, rng, nc, label_dtype):
    n, c = nc
    logits = (rng.standard_normal((n, c)) * 3).astype(np.float32)
    labels = rng.integers(0, c, size=n).astype(label_dtype)
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(to_dev(logits, device), labels)
    assert isinstance(loss, float)
    expect = ref.cross_entropy(logits.astype(np.float64), labels)
    assert loss == pytest.approx(expect, rel=1e-5, abs=1e-6)
    dlogits = loss_fn.backward()
    assert dlogits.device == device
    if n * c <= 64:
        num = ref.numeric_grads(lambda a: ref.cross_entropy(a["z"], labels), {"z": logits},
                                np.ones(()))
        check(dlogits, num["z"], rtol=1e-4, atol=1e-6, what="d loss / d logits")
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(n), labels] -= 1
    check(dlogits, p / n, rtol=1e-4, atol=1e-6, what="(softmax - onehot) / N")


def test_cross_entropy_takes_tensor_labels_and_rejects_float_labels(device, rng):
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    labels = np.array([0, 4, 2, 2])
    loss_fn = nn.CrossEntropyLoss()
    a = loss_fn(to_dev(logits, device), to_dev(labels.astype(np.int32), device))
    b = loss_fn(to_dev(logits, device), labels)
    assert a == pytest.approx(b, rel=1e-6)
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        loss_fn(to_dev(logits, device), labels.astype(np.float32))
    with pytest.raises(TypeError, match="int64 or int32"):
        loss_fn(to_dev(logits, device), to_dev(labels.astype(np.uint8), device))


@pytest.mark.parametrize("shape", [(1,), (7, 3), (2, 3, 5, 5)])
def test_mse_matches_reference(device, rng, shape):
    pred = rng.standard_normal(shape).astype(np.float32)
    target = rng.standard_normal(shape)  # float64 NumPy target is converted
    loss_fn = nn.MSELoss()
    loss = loss_fn(to_dev(pred, device), target)
    t32 = target.astype(np.float32).astype(np.float64)
    assert isinstance(loss, float)
    assert loss == pytest.approx(np.mean((pred - t32) ** 2), rel=1e-5)
    check(loss_fn.backward(), 2 * (pred - t32) / pred.size, rtol=1e-5, atol=1e-7, what="d mse")


def test_losses_match_torch(device, rng):
    torch = import_torch()
    logits = rng.standard_normal((9, 6)).astype(np.float32)
    labels = rng.integers(0, 6, size=9)
    zt = torch.from_numpy(logits).requires_grad_(True)
    lt = torch.nn.functional.cross_entropy(zt, torch.from_numpy(labels))
    lt.backward()
    ce = nn.CrossEntropyLoss()
    assert ce(to_dev(logits, device), labels) == pytest.approx(lt.item(), rel=1e-5)
    check(ce.backward(), zt.grad.double().numpy(), rtol=1e-5, atol=1e-7, what="CE grad vs torch")
    target = rng.standard_normal((9, 6)).astype(np.float32)
    zt.grad = None
    mt = torch.nn.functional.mse_loss(zt, torch.from_numpy(target))
    mt.backward()
    mse = nn.MSELoss()
    assert mse(to_dev(logits, device), to_dev(target, device)) == pytest.approx(mt.item(), rel=1e-5)
    check(mse.backward(), zt.grad.double().numpy(), rtol=1e-5, atol=1e-7, what="MSE grad vs torch")


def test_loss_backward_needs_a_forward(device):
    with pytest.raises(RuntimeError, match="nothing saved for backward"):
        nn.CrossEntropyLoss().backward()
