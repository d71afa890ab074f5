"""Every op of the table (tests/op_cases.py): each sample on every device and impl against its
float64 reference, outputs poisoned before the call (conftest), shapes and finiteness checked."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check
from tests.op_cases import OPS, expected, run

CASES = [pytest.param(name, i, id=f"{name}-{i}")
         for name, info in sorted(OPS.items())
         for i in range(len(info.samples(np.random.default_rng(0))))]


@pytest.mark.parametrize("name, index", CASES)
def test_op_matches_its_float64_reference(device, impl, rng, name, index):
    info = OPS[name]
    if device.split(":")[0] not in info.devices:
        pytest.skip(f"{name} runs on {', '.join(info.devices)} only")
    sample = info.samples(rng)[index]
    got = run(info, sample, device, impl)
    want = expected(info, sample, got)
    assert len(got) == len(want), f"{name}: {len(got)} outputs, the reference has {len(want)}"
    rtol, atol = info.tol
    for k, (g, w) in enumerate(zip(got, want)):
        if w is None:
            continue
        if isinstance(g, hg.Tensor):
            assert g.device == device, f"{name} output {k} is on {g.device}"
        check(g, w, rtol=rtol, atol=atol, what=f"{name} {sample.id} output {k} impl={impl}")


GRADIENT_OPS = sorted(name for name, info in OPS.items() if info.gradient is not None)


@pytest.mark.parametrize("name", GRADIENT_OPS)
def test_backward_matches_finite_differences(device, impl, rng, name):
    """L = sum(w * output0): the table's backward ops against central differences of L, at up
    to 40 coordinates of each differentiated input."""
    info = OPS[name]
    grad = info.gradient
    sample = grad.sample(rng)
    kwargs = dict(sample.kwargs, impl=impl)
    args = [np.array(a) if isinstance(a, np.ndarray) else a for a in sample.args]

    def forward(values):
        t = tuple(hg.tensor(v, device=device, dtype=v.dtype) if isinstance(v, np.ndarray) else v
                  for v in values)
        return t, info.outputs(getattr(hg.ops, name)(*t, **kwargs), t)

    t, outs = forward(args)
    y = outs[0].numpy().astype(np.float64)
    w = rng.standard_normal(y.shape) if y.shape else np.ones(())
    wt = hg.tensor(w.astype(np.float32), device=device)
    grads = grad.backward(t, outs, wt, **sample.kwargs)
    assert len(grads) == len(grad.wrt), f"{name}: {len(grads)} gradients for wrt {grad.wrt}"

    def loss(values):
        return float(np.sum(forward(values)[1][0].numpy().astype(np.float64) * w))

    rtol, atol = grad.tol
    for pos, g in zip(grad.wrt, grads):
        x = args[pos]
        flat = x.reshape(-1)
        picks = rng.choice(flat.size, min(flat.size, 40), replace=False)
        numeric = np.empty(picks.size)
        for j, i in enumerate(picks):
            old = flat[i]
            flat[i] = old + grad.eps
            hi = loss(args)
            flat[i] = old - grad.eps
            lo = loss(args)
            flat[i] = old
            numeric[j] = (hi - lo) / (2 * grad.eps)
        analytic = (g.numpy() if isinstance(g, hg.Tensor) else np.asarray(g)).astype(np.float64)
        assert analytic.shape == x.shape, f"{name}: gradient of input {pos} has shape {analytic.shape}"
        np.testing.assert_allclose(analytic.reshape(-1)[picks], numeric, rtol=rtol, atol=atol,
                                   err_msg=f"{name}: d/d(input {pos}) vs central differences")
