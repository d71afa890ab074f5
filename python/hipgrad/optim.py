"""Optimizers (one fused op per parameter per step) and learning-rate schedulers, with
PyTorch's update rules and schedules.

Optimizer.state_dict() layout (plain Python and NumPy, picklable / np.savez-friendly):
    {"type": "SGD" | "Adam" | "AdamW",
     "hyper": {"lr": float, ...every constructor hyper-parameter...},
     "initial_lr": float | None,    # set by the first scheduler attached (PyTorch's initial_lr)
     "state": {key: {"step": int, "<buffer>": np.ndarray float32, ...}}}
key is the parameter's name when the optimizer was built from named_parameters(), otherwise its
position "0", "1", ...; buffers are SGD's "momentum_buffer" and Adam's "exp_avg"/"exp_avg_sq".
Parameters that have never been stepped have no entry.

Scheduler.state_dict(): {"type", "last_epoch", "step_count", "base_lrs", "last_lr", and the
schedule's own hyper-parameters}.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import ops
from ._args import flag, real
from .nn.module import Parameter
from .tensor import Tensor, int_arg, tensor, zeros


def _rate(value: Any, what: str, **kw: Any) -> float:
    """A hyper-parameter the float32 kernels use: a finite real >= 0 (and within kw's range)
    that stays so in float32."""
    return real(value, what, lo=0, f32=True, **kw)


def _positive_int(value: Any, what: str) -> int:
    value = int_arg(value, what)
    if value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value}")
    return value


class Optimizer:
    """Holds the parameters, their per-parameter state (device tensors) and the hyper-parameters."""

    def __init__(self, params: Iterable[Any], hyper: dict[str, Any]) -> None:
        name = type(self).__name__
        if isinstance(params, (Tensor, str, bytes, dict)) or not isinstance(params, Iterable):
            raise TypeError(f"{name}: params must be an iterable of Parameters or (name, Parameter) "
                            f"pairs (e.g. model.parameters()), got {type(params).__name__}")
        self.params: list[Parameter] = []
        self.names: list[str] = []
        for i, item in enumerate(params):
            if isinstance(item, Parameter):
                key, p = str(i), item
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Parameter):
                key, p = str(item[0]), item[1]
            else:
                raise TypeError(f"{name}: params must hold Parameters or (name, Parameter) pairs, "
                                f"got {type(item).__name__} at position {i}")
            if any(p is q for q in self.params):
                raise ValueError(f"{name}: parameter {key!r} appears twice in params")
            if key in self.names:
                raise ValueError(f"{name}: parameter name {key!r} appears twice in params")
            self.params.append(p)
            self.names.append(key)
        if not self.params:
            raise ValueError(f"{name}: params is empty")
        self.hyper: dict[str, Any] = hyper
        self.initial_lr: float | None = None
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    @property
    def lr(self) -> float:
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.hyper["lr"] = _rate(value, f"{type(self).__name__}: lr")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self) -> None:
        """One update of every parameter that requires grad and has one (one op each)."""
        for p, state in zip(self.params, self.state):
            if p.requires_grad and p.grad is not None:
                self._update(p, state)

    def _update(self, p: Parameter, state: dict[str, Any]) -> None:
        raise NotImplementedError

    @staticmethod
    def _buffer(state: dict[str, Any], name: str, p: Parameter) -> Tensor:
        if name not in state:
            state[name] = zeros(p.shape, device=p.device)
        return state[name]

    def state_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "hyper": dict(self.hyper),
            "initial_lr": self.initial_lr,
            "state": {key: {k: (v.numpy() if isinstance(v, Tensor) else v) for k, v in st.items()}
                      for key, st in zip(self.names, self.state) if st},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and buffers (checked fully before anything changes)."""
        name = type(self).__name__
        saved, hyper = _checked_state(state_dict, f"{name}.load_state_dict", name)
        unknown = [k for k in saved if k not in self.names]
        if unknown:
            raise ValueError(f"{name}.load_state_dict: state for unknown parameters {unknown} "
                             f"(this optimizer has {self.names})")
        new_state: list[dict[str, Any]] = []
        for key, p in zip(self.names, self.params):
            st = {}
            entry = saved.get(key, {})
            if not isinstance(entry, dict):
                raise TypeError(f"{name}.load_state_dict: state[{key!r}] must be a dict of buffers, "
                                f"got {type(entry).__name__}")
            for k, v in entry.items():
                try:
                    arr = np.asarray(v)
                except ValueError:  # ragged
                    raise TypeError(f"{name}.load_state_dict: state[{key!r}][{k!r}] must be an "
                                    f"array or a count, got {type(v).__name__}") from None
                if arr.dtype.kind not in "iuf":
                    raise TypeError(f"{name}.load_state_dict: state[{key!r}][{k!r}] must be numeric, "
                                    f"got {arr.dtype}")
                if arr.ndim == 0 and arr.dtype.kind in "iu":
                    st[k] = int(arr)
                    if not 0 <= st[k] < 2**62:  # a step count
                        raise ValueError(f"{name}.load_state_dict: state[{key!r}][{k!r}] must be a "
                                         f"count >= 0, got {st[k]}")
                    continue
                what = f"{name}.load_state_dict: state[{key!r}][{k!r}]"
                if arr.shape != p.shape:
                    raise ValueError(f"{what} has shape {arr.shape}, the parameter has {p.shape}")
                if not np.isfinite(arr).all() or (k == "exp_avg_sq" and (arr < 0).any()):
                    raise ValueError(f"{what} must hold finite values"
                                     + (" >= 0" if k == "exp_avg_sq" else ""))
                try:
                    st[k] = tensor(arr, device=p.device, dtype=np.float32)
                except ValueError as exc:  # beyond float32
                    raise ValueError(f"{what}: {exc}") from None
            new_state.append(st)
        new_hyper = dict(self.hyper)
        for k, v in hyper.items():
            if k in new_hyper:
                new_hyper[k] = _same_kind(new_hyper[k], v, f"{name}.load_state_dict: hyper[{k!r}]")
        try:  # the constructor's own checks (eps > 0, betas < 1, nesterov needs momentum, ...)
            new_hyper = type(self)(list(zip(self.names, self.params)), **new_hyper).hyper
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{name}.load_state_dict: hyper: {exc}") from None
        initial_lr = state_dict.get("initial_lr")
        if initial_lr is not None:
            initial_lr = _rate(initial_lr, f"{name}.load_state_dict: initial_lr")
        self.state = new_state
        self.hyper = new_hyper
        self.initial_lr = initial_lr

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v}" for k, v in self.hyper.items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


class SGD(Optimizer):
    """torch.optim.SGD with dampening 0: g += weight_decay * p; buf = momentum * buf + g;
    p -= lr * (g + momentum * buf if nesterov else buf), or p -= lr * g when momentum is 0."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        lr, momentum, weight_decay = (_rate(lr, "SGD: lr"), _rate(momentum, "SGD: momentum"),
                                      _rate(weight_decay, "SGD: weight_decay"))
        nesterov = flag(nesterov, "SGD: nesterov")
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        super().__init__(params, {"lr": float(lr), "momentum": float(momentum),
                                  "weight_decay": float(weight_decay), "nesterov": bool(nesterov)})

    def _update(self, p: Parameter, state: dict[str, Any]) -> None:
        h = self.hyper
        buf = self._buffer(state, "momentum_buffer", p) if h["momentum"] != 0 else None
        ops.sgd_step(p.data, p.grad, buf, lr=h["lr"], momentum=h["momentum"],
                     weight_decay=h["weight_decay"], nesterov=h["nesterov"])


class Adam(Optimizer):
    """torch.optim.Adam: L2 weight decay added to the gradient, bias-corrected moments."""

    decoupled = False

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        name = type(self).__name__
        lr, weight_decay = _rate(lr, f"{name}: lr"), _rate(weight_decay, f"{name}: weight_decay")
        # eps > 0 as the fused step requires (eps = 0 divides 0 by 0), also in float32
        eps = _rate(eps, f"{name}: eps", lo_open=True)
        try:
            b1, b2 = betas  # a tuple, list or array of two
        except (TypeError, ValueError):
            raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas!r}") from None
        betas = (_rate(b1, f"{name}: betas[0]", hi=1, hi_open=True),
                 _rate(b2, f"{name}: betas[1]", hi=1, hi_open=True))
        super().__init__(params, {"lr": float(lr), "betas": (float(betas[0]), float(betas[1])),
                                  "eps": float(eps), "weight_decay": float(weight_decay)})

    def _update(self, p: Parameter, state: dict[str, Any]) -> None:
        h = self.hyper
        state["step"] = state.get("step", 0) + 1
        m = self._buffer(state, "exp_avg", p)
        v = self._buffer(state, "exp_avg_sq", p)
        ops.adam_step(p.data, p.grad, m, v, step=state["step"], lr=h["lr"], beta1=h["betas"][0],
                      beta2=h["betas"][1], eps=h["eps"], weight_decay=h["weight_decay"],
                      decoupled=self.decoupled)


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay p -= lr * weight_decay * p before the Adam step."""

    decoupled = True

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def _checked_state(state_dict: Any, what: str, name: str) -> tuple[dict, dict]:
    """An optimizer state dict's "state" and "hyper" entries, each checked by type."""
    if not isinstance(state_dict, dict):
        raise TypeError(f"{what}: state_dict must be a dict (from state_dict()), got "
                        f"{type(state_dict).__name__}")
    if state_dict.get("type") != name:
        raise ValueError(f"{what}: the state is for {state_dict.get('type')!r}")
    for key in ("state", "hyper"):
        if key not in state_dict:
            raise ValueError(f"{what}: state_dict lacks its {key!r} entry")
        if not isinstance(state_dict[key], dict):
            raise TypeError(f"{what}: state_dict[{key!r}] must be a dict, got "
                            f"{type(state_dict[key]).__name__}")
    return state_dict["state"], state_dict["hyper"]


def _same_kind(current: Any, value: Any, what: str) -> Any:
    """A saved hyper-parameter checked against the kind of the current one."""
    if isinstance(current, bool):
        return flag(value, what)
    if isinstance(current, int):  # the schedulers' step counts: positive
        return _positive_int(value, what)
    if isinstance(current, tuple):
        if not isinstance(value, (tuple, list)) or len(value) != len(current):
            raise ValueError(f"{what} must be {len(current)} numbers, got {value!r}")
        return tuple(_rate(v, f"{what}[{i}]") for i, v in enumerate(value))
    return _rate(value, what)


# ---- learning-rate schedulers ---------------------------------------------------------------
class LRScheduler:
    """PyTorch's protocol: construction applies the epoch-0 rate; step() after each optimizer step
    (or epoch) advances last_epoch and sets optimizer.lr. The rules are PyTorch's recursive
    (chainable) forms, so two schedulers stepped together compose as they do in PyTorch."""

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: optimizer must be a hipgrad Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        if optimizer.initial_lr is None:
            optimizer.initial_lr = optimizer.lr
        self.base_lrs = [optimizer.initial_lr]
        self.last_epoch = -1
        self.step_count = 0
        self.step()

    def _next_lr(self, lr: float) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.step_count += 1
        self.last_epoch += 1
        # PyTorch's recursive forms can round a rate that should reach 0 to -1e-18 or so
        # (LinearLR with end_factor=0): that rounding noise is 0. Anything more negative (a
        # negative gamma or eta_min) or NaN still reaches the optimizer, which refuses it.
        lr = self._next_lr(self.optimizer.lr)
        if -1e-12 * max(self.base_lrs + [1e-300]) <= lr < 0.0:
            lr = 0.0
        try:
            self.optimizer.lr = lr
        except ValueError as exc:  # the schedule left the range the optimizer takes
            raise ValueError(f"{type(self).__name__}: step {self.last_epoch} gives lr={lr!r}: "
                             f"{exc}") from None
        self._last_lr = [self.optimizer.lr]

    def get_last_lr(self) -> list[float]:
        """The rate the latest step() set (a one-element list, as PyTorch's per-group list)."""
        return list(self._last_lr)

    def _hyper(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "last_epoch": self.last_epoch,
                "step_count": self.step_count, "base_lrs": list(self.base_lrs),
                "last_lr": list(self._last_lr), **self._hyper()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        name = type(self).__name__
        what = f"{name}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{what}: state_dict must be a dict, got {type(state_dict).__name__}")
        if state_dict.get("type") != name:
            raise ValueError(f"{what}: the state is for {state_dict.get('type')!r}")
        missing = [k for k in ("last_epoch", "step_count", "base_lrs", "last_lr", *self._hyper())
                   if k not in state_dict]
        if missing:
            raise ValueError(f"{what}: state_dict lacks {missing}")
        last_epoch = int_arg(state_dict["last_epoch"], f"{what}: last_epoch")
        step_count = int_arg(state_dict["step_count"], f"{what}: step_count")
        lrs = {}
        for k in ("base_lrs", "last_lr"):
            v = state_dict[k]
            if not isinstance(v, (list, tuple)) or len(v) != 1:
                raise ValueError(f"{what}: {k} must be a one-element list, got {v!r}")
            lrs[k] = [_rate(v[0], f"{what}: {k}[0]")]
        hyper = {k: _same_kind(cur, state_dict[k], f"{what}: {k}") for k, cur in self._hyper().items()}
        self.last_epoch, self.step_count = last_epoch, step_count
        self.base_lrs, self._last_lr = lrs["base_lrs"], lrs["last_lr"]
        for k, v in hyper.items():
            setattr(self, k, v)


class StepLR(LRScheduler):
    """Multiply the rate by gamma every step_size steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _positive_int(step_size, "StepLR: step_size")
        self.gamma = real(gamma, "StepLR: gamma", lo=0)
        super().__init__(optimizer)

    def _next_lr(self, lr: float) -> float:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma

    def _hyper(self) -> dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma}


class CosineAnnealingLR(LRScheduler):
    """eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2, continued as PyTorch's
    recursive form past T_max (it rises again)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = _positive_int(T_max, "CosineAnnealingLR: T_max")
        self.eta_min = _rate(eta_min, "CosineAnnealingLR: eta_min")
        super().__init__(optimizer)

    def _next_lr(self, lr: float) -> float:
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        if t == 0:
            return lr
        if (t - 1 - T) % (2 * T) == 0:
            return lr + (self.base_lrs[0] - lo) * (1 - math.cos(math.pi / T)) / 2
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return ratio * (lr - lo) + lo

    def _hyper(self) -> dict[str, Any]:
        return {"T_max": self.T_max, "eta_min": self.eta_min}


class LinearWarmup(LRScheduler):
    """PyTorch's LinearLR: the factor goes linearly from start_factor (step 0) to end_factor
    (step warmup_steps) and stays there."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0) -> None:
        self.warmup_steps = _positive_int(warmup_steps, "LinearWarmup: warmup_steps")
        self.start_factor = real(start_factor, "LinearWarmup: start_factor", lo=0, hi=1,
                                 lo_open=True)
        self.end_factor = real(end_factor, "LinearWarmup: end_factor", lo=0, hi=1)
        super().__init__(optimizer)

    def _next_lr(self, lr: float) -> float:
        t, n, a, b = self.last_epoch, self.warmup_steps, self.start_factor, self.end_factor
        if t == 0:
            return lr * a
        if t > n:
            return lr
        return lr * (1.0 + (b - a) / (n * a + (t - 1) * (b - a)))

    def _hyper(self) -> dict[str, Any]:
        return {"warmup_steps": self.warmup_steps, "start_factor": self.start_factor,
                "end_factor": self.end_factor}


__all__ = ["SGD", "Adam", "AdamW", "CosineAnnealingLR", "LRScheduler", "LinearWarmup",
           "Optimizer", "StepLR"]
