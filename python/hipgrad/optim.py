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
from .nn.module import Parameter
from .tensor import Tensor, tensor, zeros


def _number(value: Any, what: str) -> float:
    """A real number (int, float, NumPy scalar; not a bool) as a float, else a TypeError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a number, got {value!r}")
    return float(value)


class Optimizer:
    """Holds the parameters, their per-parameter state (device tensors) and the hyper-parameters."""

    def __init__(self, params: Iterable[Any], hyper: dict[str, Any]) -> None:
        name = type(self).__name__
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
        if not 0 <= hyper["lr"] < math.inf:  # NaN fails too
            raise ValueError(f"{name}: lr must be a finite number >= 0, got {hyper['lr']}")
        if not 0 <= hyper.get("weight_decay", 0.0) < math.inf:
            raise ValueError(f"{name}: weight_decay must be a finite number >= 0, got {hyper['weight_decay']}")
        self.hyper: dict[str, Any] = hyper
        self.initial_lr: float | None = None
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    @property
    def lr(self) -> float:
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        value = _number(value, f"{type(self).__name__}: lr")
        if not 0 <= value < math.inf:
            raise ValueError(f"{type(self).__name__}: lr must be a finite number >= 0, got {value}")
        self.hyper["lr"] = float(value)

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
        if state_dict.get("type") != name:
            raise ValueError(f"{name}.load_state_dict: the state is for {state_dict.get('type')!r}")
        saved = state_dict["state"]
        unknown = [k for k in saved if k not in self.names]
        if unknown:
            raise ValueError(f"{name}.load_state_dict: state for unknown parameters {unknown} "
                             f"(this optimizer has {self.names})")
        new_state: list[dict[str, Any]] = []
        for key, p in zip(self.names, self.params):
            st = {}
            for k, v in saved.get(key, {}).items():
                arr = np.asarray(v)
                if arr.ndim == 0 and arr.dtype.kind in "iu":
                    st[k] = int(arr)
                    continue
                arr = arr.astype(np.float32)
                if arr.shape != p.shape:
                    raise ValueError(f"{name}.load_state_dict: {key!r} {k} has shape {arr.shape}, "
                                     f"the parameter has {p.shape}")
                st[k] = tensor(arr, device=p.device)
            new_state.append(st)
        self.state = new_state
        self.hyper.update({k: v for k, v in state_dict["hyper"].items() if k in self.hyper})
        self.initial_lr = state_dict.get("initial_lr")

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v}" for k, v in self.hyper.items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


class SGD(Optimizer):
    """torch.optim.SGD with dampening 0: g += weight_decay * p; buf = momentum * buf + g;
    p -= lr * (g + momentum * buf if nesterov else buf), or p -= lr * g when momentum is 0."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        lr, momentum, weight_decay = (_number(lr, "SGD: lr"), _number(momentum, "SGD: momentum"),
                                      _number(weight_decay, "SGD: weight_decay"))
        if not 0 <= momentum < math.inf:
            raise ValueError(f"SGD: momentum must be a finite number >= 0, got {momentum}")
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
        lr, eps, weight_decay = (_number(lr, f"{name}: lr"), _number(eps, f"{name}: eps"),
                                 _number(weight_decay, f"{name}: weight_decay"))
        try:
            b1, b2 = betas  # a tuple, list or array of two
        except (TypeError, ValueError):
            raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas!r}") from None
        betas = (_number(b1, f"{name}: betas[0]"), _number(b2, f"{name}: betas[1]"))
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas!r}")
        if not 0 < eps < math.inf:  # as the fused step requires (eps = 0 divides 0 by 0)
            raise ValueError(f"{name}: eps must be a finite number > 0, got {eps}")
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
        self.optimizer.lr = lr
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
        if state_dict.get("type") != name:
            raise ValueError(f"{name}.load_state_dict: the state is for {state_dict.get('type')!r}")
        self.last_epoch = int(state_dict["last_epoch"])
        self.step_count = int(state_dict["step_count"])
        self.base_lrs = [float(v) for v in state_dict["base_lrs"]]
        self._last_lr = [float(v) for v in state_dict["last_lr"]]
        for k in self._hyper():
            setattr(self, k, state_dict[k])


class StepLR(LRScheduler):
    """Multiply the rate by gamma every step_size steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if int(step_size) <= 0:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
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
        if int(T_max) <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
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
        if int(warmup_steps) <= 0:
            raise ValueError(f"LinearWarmup: warmup_steps must be a positive int, got "
                             f"{warmup_steps}")
        if not 0.0 < start_factor <= 1.0:
            raise ValueError(f"LinearWarmup: start_factor must be in (0, 1], got {start_factor}")
        if not 0.0 <= end_factor <= 1.0:
            raise ValueError(f"LinearWarmup: end_factor must be in [0, 1], got {end_factor}")
        self.warmup_steps = int(warmup_steps)
        self.start_factor, self.end_factor = float(start_factor), float(end_factor)
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
