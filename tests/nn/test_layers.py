"""Every layer case: forward, dx and parameter gradients against the float64 NumPy reference
(gradients by central differences of the reference), and against torch.nn loaded with the same
state_dict when torch is installed."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check, to_dev
from tests.nn import reference as ref
from tests.nn.cases import import_torch
from tests.op_cases import LAYER_CASES as CASES

IDS = [c.id for c in CASES]
PARAM_CASES = [c for c in CASES if list(c.make().parameters())]


def _run(case, device, rng):
    hg.manual_seed(int(rng.integers(2**31)))
    layer = case.make().to(device)
    x = case.input(rng)
    y = layer(to_dev(x, device))
    assert y.device == device
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(to_dev(dy, device))
    return layer, x, y, dy, dx


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_matches_numpy_reference(case, device, rng):
    layer, x, y, dy, dx = _run(case, device, rng)
    params = {k: v.astype(np.float64) if v.dtype == np.float32 else v
              for k, v in layer.state_dict().items()}
    x_ref = x if case.int_input else x.astype(np.float64)
    check(y, case.ref(x_ref, params), what=f"{case.id} y")
    learn = {k: params[k] for k, _ in layer.named_parameters()}
    wrt = dict(learn) if case.int_input else {"x": x, **learn}
    num = ref.numeric_grads(lambda a: case.ref(a.get("x", x), {**params, **a}), wrt, dy)
    if case.int_input:
        assert dx is None
    else:
        check(dx, num["x"], rtol=1e-3, atol=1e-4, what=f"{case.id} dx")
    for k, p in layer.named_parameters():
        check(p.grad, num[k], rtol=1e-3, atol=1e-4, what=f"{case.id} d{k}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer_matches_torch(case, device, rng):
    torch = import_torch()
    layer, x, y, dy, dx = _run(case, device, rng)
    tl = case.torch(torch.nn)
    before = layer.state_dict()  # taken after our forward: restore torch's running stats below
    tl.load_state_dict({k: torch.from_numpy(v) for k, v in before.items()})
    for name, buf in tl.named_buffers():  # running stats back to their initial values
        if name.endswith("running_mean"):
            buf.zero_()
        elif name.endswith("running_var"):
            buf.fill_(1.0)
        elif name.endswith("num_batches_tracked"):
            buf.zero_()
    tl.train()
    xt = torch.from_numpy(x)
    if not case.int_input:
        xt.requires_grad_(True)
    yt = tl(xt)
    yt.backward(torch.from_numpy(dy))
    check(y, yt.detach().double().numpy(), what=f"{case.id} y")
    if not case.int_input:
        check(dx, xt.grad.double().numpy(), rtol=1e-4, atol=1e-5, what=f"{case.id} dx")
    tgrads = dict(tl.named_parameters())
    assert set(tgrads) == {k for k, _ in layer.named_parameters()}
    for k, p in layer.named_parameters():
        check(p.grad, tgrads[k].grad.double().numpy(), rtol=1e-4, atol=1e-4, what=f"{case.id} d{k}")
    tsd = tl.state_dict()
    assert list(tsd) == list(before), "state_dict keys (and their order) differ from torch's"
    for k, v in layer.state_dict().items():  # running statistics after one training forward
        check(v.astype(np.float64), tsd[k].double().numpy(), what=f"{case.id} {k} after forward")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_eval_mode_keeps_nothing(case, device, rng):
    layer = case.make().to(device).eval()
    x = case.input(rng)
    layer(to_dev(x, device))
    assert all(m._saved is None for m in layer.modules())
    if case.id != "identity":
        with pytest.raises(RuntimeError, match="nothing saved for backward"):
            layer.backward(to_dev(rng.standard_normal((1,)).astype(np.float32), device))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_backward_twice_after_one_forward_raises(case, device, rng):
    if case.id == "identity":
        pytest.skip("Identity keeps nothing, so a second backward is legitimate")
    layer, _, _, dy, _ = _run(case, device, rng)
    with pytest.raises(RuntimeError, match="one backward per forward"):
        layer.backward(to_dev(dy, device))


@pytest.mark.parametrize("case", PARAM_CASES, ids=[c.id for c in PARAM_CASES])
def test_gradients_accumulate_over_two_backwards(case, device, rng):
    layer = case.make().to(device)
    x = case.input(rng)
    dys, singles = [], []
    for _ in range(2):
        y = layer(to_dev(x, device))
        dys.append(rng.standard_normal(y.shape).astype(np.float32))
        layer.backward(to_dev(dys[-1], device))
        singles.append({k: p.grad.numpy().astype(np.float64) for k, p in layer.named_parameters()})
        layer.zero_grad()
        assert all(p.grad is None for p in layer.parameters())
    for dy in dys:
        layer(to_dev(x, device))
        layer.backward(to_dev(dy, device))
    for k, p in layer.named_parameters():
        check(p.grad, singles[0][k] + singles[1][k], what=f"{case.id} accumulated d{k}")


@pytest.mark.parametrize("case", PARAM_CASES, ids=[c.id for c in PARAM_CASES])
def test_frozen_parameters_get_no_gradient(case, device, rng):
    layer = case.make().to(device)
    names = [k for k, _ in layer.named_parameters()]
    frozen = set(names[::2])
    for k, p in layer.named_parameters():
        p.requires_grad = k not in frozen
    x = case.input(rng)
    y = layer(to_dev(x, device))
    dx = layer.backward(to_dev(rng.standard_normal(y.shape).astype(np.float32), device))
    for k, p in layer.named_parameters():
        assert (p.grad is None) == (k in frozen), k
    if not case.int_input:
        assert tuple(dx.shape) == x.shape
