"""hipgrad.optim: SGD / Adam / AdamW over several steps against float64 NumPy updates and
torch.optim, skipping rules, state_dict round trips; schedulers against their closed forms and
torch.optim.lr_scheduler."""

from __future__ import annotations

import math

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check, to_dev
from tests.nn.cases import import_torch

optim = hg.optim
SHAPES = [(7, 3), (31,), (1,)]
STEPS = 5


def _params(rng, device, shapes=SHAPES):
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    return arrays, [hg.nn.Parameter(to_dev(a, device)) for a in arrays]


def _grads(rng, shapes=SHAPES):
    return [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(STEPS)]


def sgd_reference(p, grads, lr, momentum, weight_decay, nesterov):
    p, buf = p.astype(np.float64), None
    for g in grads:
        g = g + weight_decay * p
        if momentum:
            buf = g if buf is None else momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def adam_reference(p, grads, lr, betas, eps, weight_decay, decoupled):
    p = p.astype(np.float64)
    m = v = np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        p = p - lr * (m / (1 - betas[0] ** t)) / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
    return p


SGD_CONFIGS = [
    {"lr": 0.1},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.03, "momentum": 0.8, "weight_decay": 0.1},
    {"lr": 0.02, "momentum": 0.9, "weight_decay": 0.01, "nesterov": True},
]
ADAM_CONFIGS = [
    (optim.Adam, {"lr": 0.01}),
    (optim.Adam, {"lr": 0.003, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    (optim.AdamW, {"lr": 0.01}),
    (optim.AdamW, {"lr": 0.02, "eps": 1e-6, "weight_decay": 0.3}),
]


def _run(opt_cls, cfg, params, grads):
    opt = opt_cls(params, **cfg)
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = hg.tensor(g, device=p.device)
        opt.step()
    return opt


@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=str)
def test_sgd_matches_numpy(device, rng, cfg):
    arrays, params = _params(rng, device)
    grads = _grads(rng)
    _run(optim.SGD, cfg, params, grads)
    full = {"momentum": 0.0, "weight_decay": 0.0, "nesterov": False, **cfg}
    for i, (a, p) in enumerate(zip(arrays, params)):
        check(p.data, sgd_reference(a, [g[i] for g in grads], **full), rtol=1e-5, atol=1e-6,
              what=f"SGD {cfg} param {i}")


@pytest.mark.parametrize("opt_cls,cfg", ADAM_CONFIGS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_adam_matches_numpy(device, rng, opt_cls, cfg):
    arrays, params = _params(rng, device)
    grads = _grads(rng)
    _run(opt_cls, cfg, params, grads)
    decoupled = opt_cls is optim.AdamW
    full = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01 if decoupled else 0.0}
    full.update(cfg)
    for i, (a, p) in enumerate(zip(arrays, params)):
        check(p.data, adam_reference(a, [g[i] for g in grads], decoupled=decoupled, **full),
              rtol=1e-5, atol=1e-6, what=f"{opt_cls.__name__} {cfg} param {i}")


@pytest.mark.parametrize("opt_cls,cfg", [(optim.SGD, c) for c in SGD_CONFIGS] + ADAM_CONFIGS,
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_optimizers_match_torch(device, rng, opt_cls, cfg):
    torch = import_torch()
    arrays, params = _params(rng, device)
    grads = _grads(rng)
    _run(opt_cls, cfg, params, grads)
    tparams = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays]
    topt = getattr(torch.optim, opt_cls.__name__)(tparams, **cfg)
    for gs in grads:
        for tp, g in zip(tparams, gs):
            tp.grad = torch.from_numpy(g)
        topt.step()
    for i, (p, tp) in enumerate(zip(params, tparams)):
        check(p.data, tp.detach().double().numpy(), rtol=1e-5, atol=1e-6,
              what=f"{opt_cls.__name__} {cfg} param {i} vs torch")


def test_step_skips_frozen_params_and_missing_grads(device, rng):
    arrays, params = _params(rng, device)
    opt = optim.Adam(params, lr=0.1)
    params[0].grad = hg.tensor(np.ones(SHAPES[0], np.float32), device=device)
    params[0].requires_grad = False
    params[2].grad = hg.tensor(np.ones(SHAPES[2], np.float32), device=device)
    opt.step()
    np.testing.assert_array_equal(params[0].data.numpy(), arrays[0])
    np.testing.assert_array_equal(params[1].data.numpy(), arrays[1])
    assert not np.array_equal(params[2].data.numpy(), arrays[2])
    assert list(opt.state_dict()["state"]) == ["2"]
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("opt_cls,cfg", [(optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                                         (optim.AdamW, {"lr": 0.01})],
                         ids=["SGD", "AdamW"])
def test_state_dict_round_trip_resumes_exactly(device, rng, opt_cls, cfg):
    model = hg.nn.Sequential(hg.nn.Linear(3, 4), hg.nn.Linear(4, 2)).to(device)
    twin = hg.nn.Sequential(hg.nn.Linear(3, 4), hg.nn.Linear(4, 2)).to(device)
    opt = opt_cls(model.named_parameters(), **cfg)
    grads = [{k: rng.standard_normal(p.shape).astype(np.float32)
              for k, p in model.named_parameters()} for _ in range(5)]

    def step(m, o, g):
        for k, p in m.named_parameters():
            p.grad = hg.tensor(g[k], device=device)
        o.step()

    for g in grads[:3]:
        step(model, opt, g)
    sd = opt.state_dict()
    assert sd["type"] == opt_cls.__name__
    assert set(sd["state"]) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    assert all(isinstance(v, np.ndarray)
               for st in sd["state"].values() for k, v in st.items() if k != "step")
    twin.load_state_dict(model.state_dict())
    resumed = opt_cls(twin.named_parameters(), lr=123.0)
    resumed.load_state_dict(sd)
    assert resumed.lr == cfg["lr"]
    for g in grads[3:]:
        step(model, opt, g)
        step(twin, resumed, g)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(twin.state_dict()[k], v, err_msg=k)
    with pytest.raises(ValueError, match="unknown parameters"):
        opt_cls([p for p in model.parameters()], **cfg).load_state_dict(sd)
    other = optim.Adam if opt_cls is optim.SGD else optim.SGD
    with pytest.raises(ValueError, match="the state is for"):
        other(model.named_parameters(), lr=0.1).load_state_dict(sd)


def test_lr_is_settable(device, rng):
    _, params = _params(rng, device, [(3,)])
    opt = optim.SGD(params, lr=0.5)
    opt.lr = 0.0
    params[0].grad = hg.tensor(np.ones(3, np.float32), device=device)
    before = params[0].data.numpy()
    opt.step()
    np.testing.assert_array_equal(params[0].data.numpy(), before)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
            opt.lr = bad


def test_bad_arguments_are_rejected(rng):
    _, params = _params(rng, "cpu")
    with pytest.raises(ValueError, match="params is empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="Parameters or \\(name, Parameter\\) pairs"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="appears twice"):
        optim.SGD([params[0], params[0]], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(params, betas=(0.9, 1.0))
    nan = float("nan")  # refused when the optimizer is made, not at its first step()
    for make, message in ((lambda: optim.Adam(params, eps=0.0), "eps must be a finite number > 0"),
                          (lambda: optim.Adam(params, lr=nan), "lr must be a finite number >= 0"),
                          (lambda: optim.AdamW(params, weight_decay=nan), "weight_decay must be a finite"),
                          (lambda: optim.SGD(params, lr=0.1, momentum=nan), "momentum must be a finite"),
                          (lambda: optim.SGD(params, lr=-0.1), "lr must be a finite number >= 0")):
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(TypeError, match="hipgrad Optimizer"):
        optim.StepLR(object(), 3)


# ---- schedulers -------------------------------------------------------------------------------
def _lrs(make, steps=25, lr=0.5):
    opt = optim.SGD([hg.nn.Parameter(np.zeros(1, np.float32))], lr=lr)
    sched = make(opt)
    out = [sched.get_last_lr()[0]]
    for _ in range(steps):
        sched.step()
        out.append(sched.get_last_lr()[0])
        assert opt.lr == out[-1]
    return out


def test_schedulers_follow_their_closed_forms():
    lrs = _lrs(lambda o: optim.StepLR(o, 4, gamma=0.5))
    assert lrs == pytest.approx([0.5 * 0.5 ** (t // 4) for t in range(26)])
    lrs = _lrs(lambda o: optim.CosineAnnealingLR(o, 10, eta_min=0.01), steps=10)
    assert lrs == pytest.approx([0.01 + 0.49 * (1 + math.cos(math.pi * t / 10)) / 2
                                 for t in range(11)])
    lrs = _lrs(lambda o: optim.LinearWarmup(o, 6, start_factor=0.1))
    assert lrs == pytest.approx([0.5 * (0.1 + 0.9 * min(t, 6) / 6) for t in range(26)])
    for n, a in ((3, 0.3), (7, 0.9), (5, 0.77)):  # down to 0: the recursion may land at -1e-18
        lrs = _lrs(lambda o, n=n, a=a: optim.LinearWarmup(o, n, start_factor=a, end_factor=0.0), lr=0.1)
        assert min(lrs) >= 0.0 and lrs == pytest.approx([0.1 * a * (1 - min(t, n) / n) for t in range(26)],
                                                          abs=1e-15)
    for make in (lambda o: optim.StepLR(o, 1, gamma=-0.5), lambda o: optim.StepLR(o, 1, gamma=float("nan")),
                 lambda o: optim.CosineAnnealingLR(o, 4, eta_min=-1.0)):  # not rounding noise: refused, naming the argument
        with pytest.raises(ValueError, match="(gamma|eta_min|lr) must be a finite number >= 0"):
            _lrs(make)


SCHEDULES = [
    ("StepLR", lambda o: optim.StepLR(o, 3, gamma=0.3), lambda t, o: t.StepLR(o, 3, gamma=0.3)),
    ("Cosine", lambda o: optim.CosineAnnealingLR(o, 7, eta_min=0.05),
     lambda t, o: t.CosineAnnealingLR(o, 7, eta_min=0.05)),
    ("Warmup", lambda o: optim.LinearWarmup(o, 5), lambda t, o: t.LinearLR(o, total_iters=5)),
    ("Warmup_0.01_end_0.5", lambda o: optim.LinearWarmup(o, 4, start_factor=0.01, end_factor=0.5),
     lambda t, o: t.LinearLR(o, start_factor=0.01, end_factor=0.5, total_iters=4)),
]


@pytest.mark.parametrize("name,ours,theirs", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedulers_match_torch(name, ours, theirs):
    torch = import_torch()
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    tsched = theirs(torch.optim.lr_scheduler, topt)
    expect = [tsched.get_last_lr()[0]]
    for _ in range(25):
        topt.step()
        tsched.step()
        expect.append(tsched.get_last_lr()[0])
    assert _lrs(ours) == pytest.approx(expect, rel=1e-12)


def test_chained_warmup_and_cosine_match_torch():
    torch = import_torch()
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    tw = torch.optim.lr_scheduler.LinearLR(topt, start_factor=0.2, total_iters=4)
    tc = torch.optim.lr_scheduler.CosineAnnealingLR(topt, 12)
    opt = optim.SGD([hg.nn.Parameter(np.zeros(1, np.float32))], lr=0.5)
    w, c = optim.LinearWarmup(opt, 4, start_factor=0.2), optim.CosineAnnealingLR(opt, 12)
    for _ in range(15):
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)
        topt.step()
        tw.step(), tc.step()
        w.step(), c.step()


def test_scheduler_state_dict_resumes():
    opt = optim.SGD([hg.nn.Parameter(np.zeros(1, np.float32))], lr=0.5)
    sched = optim.CosineAnnealingLR(opt, 10)
    for _ in range(4):
        sched.step()
    sd, osd = sched.state_dict(), opt.state_dict()
    opt2 = optim.SGD([hg.nn.Parameter(np.zeros(1, np.float32))], lr=0.5)
    sched2 = optim.CosineAnnealingLR(opt2, 10)
    opt2.load_state_dict(osd)
    sched2.load_state_dict(sd)
    for _ in range(3):
        sched.step(), sched2.step()
        assert sched2.get_last_lr() == sched.get_last_lr() and opt2.lr == opt.lr
    with pytest.raises(ValueError, match="the state is for"):
        optim.StepLR(opt2, 2).load_state_dict(sd)
