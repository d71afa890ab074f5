from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check, to_dev
from tests.op_cases import OPS
from tests.reference import optim as ref

NO_TORCH = "torch is not installed (pip install torch==2.13.0)"

SHAPES = OPS["sgd_step"].params["shapes"]
STEPS = 4
SGD_CASES = OPS["sgd_step"].params["cases"]
ADAM_CASES = OPS["adam_step"].params["cases"]


def _case_id(case: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in case.items())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", SGD_CASES, ids=_case_id)
def test_sgd_steps_match_the_pytorch_algorithm(device, impl, rng, shape, case):
    w0 = rng.standard_normal(shape).astype(np.float32)
    momentum = case.get("momentum", 0.0)
    param = to_dev(w0, device)
    buf = to_dev(np.zeros(shape, np.float32), device) if momentum else None
    want_w, want_buf = w0.astype(np.float64), np.zeros(shape) if momentum else None
    for _ in range(STEPS):
        g = rng.standard_normal(shape).astype(np.float32)
        assert hg.ops.sgd_step(param, to_dev(g, device), buf, impl=impl, **case) is None
        want_w, want_buf = ref.sgd_step(want_w, g, want_buf, **case)
        check(param, want_w, rtol=1e-5, atol=1e-6, what=f"sgd param {case}")
        if momentum:
            check(buf, want_buf, rtol=1e-5, atol=1e-6, what=f"sgd buf {case}")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", ADAM_CASES, ids=_case_id)
def test_adam_steps_match_the_pytorch_algorithm(device, impl, rng, shape, case):
    w0 = rng.standard_normal(shape).astype(np.float32)
    param = to_dev(w0, device)
    m = to_dev(np.zeros(shape, np.float32), device)
    v = to_dev(np.zeros(shape, np.float32), device)
    want = (w0.astype(np.float64), np.zeros(shape), np.zeros(shape))
    for step in range(1, STEPS + 1):
        g = rng.standard_normal(shape).astype(np.float32)
        out = hg.ops.adam_step(param, to_dev(g, device), m, v, step=step, impl=impl, **case)
        assert out is None
        want = ref.adam_step(*want[:1], g, *want[1:], step=step, **case)
        check(param, want[0], rtol=1e-5, atol=1e-6, what=f"adam param step {step} {case}")
        check(m, want[1], rtol=1e-5, atol=1e-6, what=f"adam m step {step}")
        check(v, want[2], rtol=1e-5, atol=1e-7, what=f"adam v step {step}")


def test_optimizer_steps_report_the_cpu_kernel(impl):
    p = hg.tensor(np.ones(4, np.float32))
    hg.ops.sgd_step(p, np.ones(4, np.float32), None, lr=0.1, impl=impl)
    ran = hg.ops.last_impl()
    assert ran["op"] == "sgd_step" and ran["impl"].startswith("cpu.sgd")
    assert ("vendor fallback" in ran["impl"]) == (impl == "vendor")


@pytest.mark.parametrize("case", SGD_CASES, ids=_case_id)
def test_sgd_matches_torch(rng, case):
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    shape = (7, 31)
    w0 = rng.standard_normal(shape).astype(np.float32)
    tw = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch.optim.SGD([tw], **case)
    param = hg.tensor(w0)
    buf = hg.zeros(shape) if case.get("momentum") else None
    for _ in range(STEPS):
        g = rng.standard_normal(shape).astype(np.float32)
        tw.grad = torch.from_numpy(g.copy())
        opt.step()
        hg.ops.sgd_step(param, g, buf, **case)
        check(param, tw.detach().numpy().astype(np.float64), rtol=1e-6, atol=1e-6, what="vs torch")


@pytest.mark.parametrize("case", ADAM_CASES, ids=_case_id)
def test_adam_and_adamw_match_torch(rng, case):
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    shape = (7, 31)
    case = dict(case)
    decoupled = case.pop("decoupled", False)
    w0 = rng.standard_normal(shape).astype(np.float32)
    tw = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    betas = (case.pop("beta1", 0.9), case.pop("beta2", 0.999))
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([tw], betas=betas, foreach=False, weight_decay=case.pop("weight_decay", 0.0), **case)
    param, m, v = hg.tensor(w0), hg.zeros(shape), hg.zeros(shape)
    for step in range(1, STEPS + 1):
        g = rng.standard_normal(shape).astype(np.float32)
        tw.grad = torch.from_numpy(g.copy())
        opt.step()
        hg.ops.adam_step(param, g, m, v, step=step, beta1=betas[0], beta2=betas[1],
                         weight_decay=opt.param_groups[0]["weight_decay"], decoupled=decoupled,
                         **case)
        check(param, tw.detach().numpy().astype(np.float64), rtol=1e-5, atol=1e-6,
              what=f"{cls.__name__} vs torch step {step}")


def test_sgd_rejects_bad_inputs():
    p = hg.tensor(np.ones((2, 3), np.float32))
    g = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0"):
        hg.ops.sgd_step(p, g, None, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum_buf is required"):
        hg.ops.sgd_step(p, g, None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"momentum_buf must have grad's shape \(2, 3\)"):
        hg.ops.sgd_step(p, g, hg.zeros((3, 2)), lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match="momentum_buf must be float32"):
        hg.ops.sgd_step(p, g, hg.zeros((2, 3), dtype=np.int64), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"param must have grad's shape \(3,\)"):
        hg.ops.sgd_step(p, np.ones(3, np.float32), None, lr=0.1)
    with pytest.raises(TypeError, match="param must be float32"):
        hg.ops.sgd_step(hg.zeros((2, 3), dtype=np.int32), g, None, lr=0.1)
    with pytest.raises(TypeError, match="grad must be float32"):
        hg.ops.sgd_step(p, g.astype(np.int64), None, lr=0.1)
    with pytest.raises(TypeError, match="param is updated in place and must be a hipgrad Tensor"):
        hg.ops.sgd_step(g.copy(), g, None, lr=0.1)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        hg.ops.sgd_step(p, g, None, lr=-1.0)
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
        hg.ops.sgd_step(p, g, None, lr=0.1, weight_decay=-0.1)
    np.testing.assert_array_equal(p.numpy(), np.ones((2, 3)))  # nothing ran


def test_adam_rejects_bad_inputs():
    p, m, v = hg.tensor(np.ones(4, np.float32)), hg.zeros(4), hg.zeros(4)
    g = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="step must be >= 1"):
        hg.ops.adam_step(p, g, m, v, step=0, lr=0.1)
    with pytest.raises(TypeError, match="step must be an int"):
        hg.ops.adam_step(p, g, m, v, step=1.5, lr=0.1)
    with pytest.raises(ValueError, match="adam_step: step must fit in a signed 64-bit int"):
        hg.ops.adam_step(p, g, m, v, step=2**63, lr=0.1)
    with pytest.raises(ValueError, match=r"beta1 must be in \[0, 1\)"):
        hg.ops.adam_step(p, g, m, v, step=1, lr=0.1, beta1=1.0)
    with pytest.raises(ValueError, match=r"beta2 must be in \[0, 1\)"):
        hg.ops.adam_step(p, g, m, v, step=1, lr=0.1, beta2=-0.1)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        hg.ops.adam_step(p, g, m, v, step=1, lr=0.1, eps=0.0)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        hg.ops.adam_step(p, g, m, v, step=1, lr=-0.1)
    with pytest.raises(ValueError, match=r"v must have grad's shape \(4,\)"):
        hg.ops.adam_step(p, g, m, hg.zeros(5), step=1, lr=0.1)
    with pytest.raises(TypeError, match="m must be float32"):
        hg.ops.adam_step(p, g, hg.zeros(4, dtype=np.int64), v, step=1, lr=0.1)
    with pytest.raises(TypeError, match="m is updated in place"):
        hg.ops.adam_step(p, g, np.zeros(4, np.float32), v, step=1, lr=0.1)
    np.testing.assert_array_equal(p.numpy(), np.ones(4))
