"""Batch normalisation over the channel axis (axis 1) with PyTorch's running statistics."""

from __future__ import annotations

import numpy as np

from .. import ops
from .._args import real
from ..engine.steps import Step, host_copy
from ..tensor import Tensor, int_arg, tensor
from .module import Module, Parameter, accumulate_grad

# exported as hipgrad.nn.<name>
__all__ = ["BatchNorm1d", "BatchNorm2d"]


class BatchNorm2d(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias per channel.

    Training uses the batch's statistics and updates running_mean / running_var (unbiased
    variance, running = (1 - momentum) * running + momentum * batch); eval uses the running ones.
    Input (N, C, H, W) or (N, C). state_dict keys: weight, bias, running_mean, running_var,
    num_batches_tracked (as PyTorch's BatchNorm1d/2d)."""

    input_ndims = (2, 4)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        num_features = int_arg(num_features, f"{type(self).__name__}: num_features")
        if momentum is None:
            raise ValueError(f"{type(self).__name__}: momentum=None (a cumulative average) is not "
                             "supported; give a number in [0, 1]")
        if num_features <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be positive, got "
                             f"{num_features}")
        name = type(self).__name__
        if num_features > 2**59:
            raise MemoryError(f"{name}: num_features={num_features} is too large to allocate")
        self.num_features = num_features
        self.eps = real(eps, f"{name}: eps", lo=0, lo_open=True, f32=True)
        self.momentum = real(momentum, f"{name}: momentum", lo=0, hi=1, f32=True)
        self.weight = Parameter(tensor(np.ones(num_features, np.float32)))
        self.bias = Parameter(tensor(np.zeros(num_features, np.float32)))
        self.register_buffer("running_mean", tensor(np.zeros(num_features, np.float32)))
        self.register_buffer("running_var", tensor(np.ones(num_features, np.float32)))
        self.num_batches_tracked = 0

    def _as_4d(self, x: Tensor) -> Tensor:
        shape = tuple(x.shape)
        if len(shape) not in self.input_ndims or shape[1] != self.num_features:
            forms = " or ".join(f"{n}-D" for n in self.input_ndims)
            raise ValueError(f"{type(self).__name__}: x must be {forms} with {self.num_features} "
                             f"channels on axis 1, got shape {shape}")
        if len(shape) == 4:
            return x
        return x.reshape(shape[0], shape[1], shape[2] if len(shape) == 3 else 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        x4 = self._as_4d(x)
        y, save_mean, save_invstd = ops.batch_norm(
            x4, self.weight.data, self.bias.data, self.running_mean, self.running_var,
            training=self.training, momentum=self.momentum, eps=self.eps, impl=self.impl)
        if self.training:
            self.num_batches_tracked += 1
        self._save(x4, save_mean, save_invstd, tuple(x.shape))
        return y if x4 is x else y.reshape(*x.shape)

    def backward(self, dy: Tensor) -> Tensor:
        x4, save_mean, save_invstd, shape = self._take_saved()
        dy4 = dy if len(shape) == 4 else dy.reshape(*x4.shape)
        dx, dgamma, dbeta = ops.batch_norm_backward(dy4, x4, self.weight.data, save_mean,
                                                    save_invstd, training=True, impl=self.impl)
        if self.weight.requires_grad:
            accumulate_grad(self.weight, dgamma)
        if self.bias.requires_grad:
            accumulate_grad(self.bias, dbeta)
        return dx if len(shape) == 4 else dx.reshape(*shape)

    # num_batches_tracked is a host-side counter, stored as PyTorch's 0-d int64 buffer.
    def _own_state_shapes(self) -> dict[str, tuple[int, ...]]:
        return {**super()._own_state_shapes(), "num_batches_tracked": ()}

    def _own_state(self) -> dict[str, np.ndarray]:
        return {**super()._own_state(),
                "num_batches_tracked": np.array(self.num_batches_tracked, dtype=np.int64)}

    def _load_own(self, name: str, value: np.ndarray) -> None:
        if name == "num_batches_tracked":
            self.num_batches_tracked = int(value)
        else:
            super()._load_own(name, value)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"

    def to_steps(self, name: str) -> list[Step]:
        """Inference batch norm on the running statistics (folded into a conv before it)."""
        return [Step("batch_norm", name, arrays={"weight": host_copy(self.weight),
                                                 "bias": host_copy(self.bias),
                                                 "running_mean": host_copy(self.running_mean),
                                                 "running_var": host_copy(self.running_var)},
                     attrs={"eps": float(self.eps)})]


class BatchNorm1d(BatchNorm2d):
    """BatchNorm2d's math for (N, C) or (N, C, L) input."""

    input_ndims = (2, 3)
