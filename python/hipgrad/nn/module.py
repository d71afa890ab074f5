"""Parameter and Module: layers with an explicit forward and backward, PyTorch's state_dict keys.

A Module's forward(x) computes its output and, in training mode only, saves what its backward
needs in `self._saved`. backward(dy) returns dx, consumes the saved tensors and ACCUMULATES the
parameter gradients into `param.grad` (add_), skipping parameters with requires_grad=False.
All math runs through hipgrad.ops on the tensors' device; NumPy is used only for
initialisation and for state_dict I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import functools

import numpy as np

from .. import ops
from .._args import flag
from .._native import _C
from ..engine.steps import Step
from ..ops._common import IMPLS
from ..profiling import tracing
from ..tensor import Tensor, check_exact, distinct_view, tensor
from .grad import GRAD_HOOKS, accumulate_grad  # noqa: F401  (layers import them from here)

# exported as hipgrad.nn.<name>
__all__ = ["LoadResult", "Module", "Parameter"]


class Parameter:
    """A float32 tensor a layer learns. `grad` is None until a backward accumulates into it."""

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        if not isinstance(data, Tensor):
            arr = np.asarray(data)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"Parameter: data must be real numbers, got dtype {arr.dtype}")
            data = tensor(arr, dtype=np.float32)
        if np.dtype(data.dtype) != np.float32:
            raise TypeError(f"Parameter: data must be float32, got {data.dtype}")
        self.data: Tensor = data
        self.grad: Tensor | None = None
        self.requires_grad = flag(requires_grad, "Parameter: requires_grad")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def device(self) -> str:
        return self.data.device

    def __repr__(self) -> str:
        return (f"Parameter(shape={self.shape}, device='{self.device}', "
                f"requires_grad={self.requires_grad})")


def to_array(value: Any, key: str) -> np.ndarray:
    """A state_dict value (NumPy array, hg.Tensor, torch tensor, number) as a NumPy array."""
    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:
        raise TypeError(f"load_state_dict: value for {key!r} is not array-like "
                        f"({type(value).__name__})") from exc


def run_child(name: str, child: Module, method: Any, arg: Any) -> Any:
    """method(arg) with the ops inside labelled "<path>.<name>:<Class>" in an active hg.trace()."""
    if not tracing._active:
        return method(arg)
    _, outer = _C.trace_context()
    path = outer.split(":")[0]
    label = f"{path}.{name}" if path else name
    with tracing.layer(f"{label}:{type(child).__name__}"):
        return method(arg)


def _state_dtype(m: Module, name: str) -> np.dtype:
    """The dtype module `m` keeps its state entry `name` in."""
    if name in m._param_names:
        return np.dtype(np.float32)
    if name in m._buffer_names:
        return np.dtype(getattr(m, name).dtype)
    return np.asarray(m._own_state()[name]).dtype  # a host-side counter


def _named_by_layer(exc: Exception, layer: str) -> Exception:
    """An op's TypeError / ValueError raised inside a layer's forward, its message prefixed with
    the innermost layer's class ("Linear: gemm: a must be float32 ...") once."""
    if type(exc) not in (TypeError, ValueError) or getattr(exc, "_hg_layer", False):
        return exc
    named = type(exc)(f"{layer}: {exc}")
    named._hg_layer = True  # type: ignore[attr-defined]
    return named


class LoadResult(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class: registers Parameter and Module attributes (in assignment order) and buffers."""

    impl = "auto"  # the impl ("auto", "handwritten", "vendor") the layer's ops run with; set_impl()

    def __init__(self) -> None:
        object.__setattr__(self, "_param_names", [])
        object.__setattr__(self, "_buffer_names", [])
        object.__setattr__(self, "_module_names", [])
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_device", "cpu")
        object.__setattr__(self, "_saved", None)
        object.__setattr__(self, "_out", None)  # (save count, output shape) of the last __call__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every layer's backward gets its dy checked once, here: converted like a forward input
        and, after a training-mode call, of the output's shape (errors name the layer and dy)."""
        super().__init_subclass__(**kwargs)
        inner = cls.__dict__.get("backward")
        if inner is None or getattr(inner, "_checks_dy", False):
            return

        @functools.wraps(inner)
        def backward(self: Module, *args: Any, **kw: Any) -> Any:
            if args:
                args = (self._grad_input(args[0]),) + args[1:]
            try:
                return inner(self, *args, **kw)
            except (TypeError, ValueError) as exc:
                raise _named_by_layer(exc, f"{type(self).__name__}.backward") from None
        backward._checks_dy = True  # type: ignore[attr-defined]
        cls.backward = backward

    # ---- registration ---------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_param_names" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning "
                                 f"attributes (assigning {name!r})")
        params, mods = self._param_names, self._module_names
        if isinstance(value, Parameter):
            if name in mods:
                mods.remove(name)
            if name not in params:
                params.append(name)
        elif isinstance(value, Module):
            if name in params:
                params.remove(name)
            if name not in mods:
                mods.append(name)
        else:
            if name in params:
                params.remove(name)
            if name in mods:
                mods.remove(name)
            if name in self._buffer_names and not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}: buffer {name!r} must stay a Tensor, "
                                f"got {type(value).__name__}")
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: Tensor) -> None:
        """A tensor saved in state_dict and moved by to(), but not learned."""
        if not isinstance(value, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor, got "
                            f"{type(value).__name__}")
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        object.__setattr__(self, name, value)

    def add_module(self, name: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module, got {type(module).__name__}")
        setattr(self, name, module)

    # ---- forward / backward -------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            y = self.forward(self._input(x), *args, **kwargs)
        except (TypeError, ValueError) as exc:
            raise _named_by_layer(exc, type(self).__name__) from None
        if self.training and isinstance(y, Tensor):
            object.__setattr__(self, "_out", (id(self._saved), tuple(y.shape)))
        return y

    def _grad_input(self, dy: Any) -> Any:
        name = f"{type(self).__name__}.backward"
        if isinstance(dy, (np.ndarray, list)) or (isinstance(dy, tuple) and not any(
                isinstance(e, Tensor) for e in dy)):
            try:
                dy = tensor(np.asarray(dy), device=self._device)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{name}: dy: {exc}") from None
        elif not isinstance(dy, (Tensor, tuple)):
            raise TypeError(f"{name}: dy must be an hg.Tensor or a NumPy array, got "
                            f"{type(dy).__name__} {dy!r:.60}")
        out = self._out
        if (isinstance(dy, Tensor) and out is not None and self._saved is not None
                and out[0] == id(self._saved) and tuple(dy.shape) != out[1]):
            raise ValueError(f"{name}: dy must have the shape of the forward's output {out[1]}, "
                             f"got {tuple(dy.shape)}")
        return dy

    def to_steps(self, name: str) -> list[Step]:
        """This layer as inference-engine steps with host copies of its weights (see
        hipgrad.engine.steps); `name` is its path in the model ("" at the root). Every layer the
        engine runs overrides this; containers return their children's steps."""
        raise ValueError(f"inference plan: layer {name or '(root)'} of type {type(self).__name__} "
                         "is not supported")

    def _input(self, x: Any) -> Any:
        """NumPy input, or a (nested) list of numbers, becomes a tensor on the module's device
        (float data as float32); anything else (a Tensor, a tuple of tensors) is passed on."""
        name = type(self).__name__
        if isinstance(x, np.ndarray):
            return self._convert(x)
        if isinstance(x, (list, tuple)) and not any(isinstance(e, Tensor) for e in x):
            try:
                arr = np.asarray(x)
            except ValueError:  # ragged
                raise TypeError(f"{name}: x must be an hg.Tensor, a NumPy array or a rectangular "
                                "(nested) list of numbers, got a ragged list") from None
            if arr.dtype.kind in "biuf":
                return self._convert(arr)
        if not isinstance(x, (Tensor, tuple)):
            raise TypeError(f"{name}: x must be an hg.Tensor, a NumPy array or a "
                            f"(nested) list of numbers, got {type(x).__name__} {x!r:.60}")
        return x

    def _convert(self, arr: np.ndarray) -> Tensor:
        try:
            return tensor(arr, device=self._device)
        except (TypeError, ValueError) as exc:  # name the layer and its input
            raise type(exc)(f"{type(self).__name__}: x: {exc}") from None

    def _save(self, *tensors: Any) -> None:
        """Keep what backward needs, in training mode only."""
        object.__setattr__(self, "_saved", tensors if self.training else None)

    def _take_saved(self) -> tuple:
        saved = self._saved
        if saved is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward: nothing saved for backward. Layers keep their "
                "inputs only for a forward in training mode (call .train()), and a backward "
                "consumes them (one backward per forward).")
        object.__setattr__(self, "_saved", None)
        return saved

    # ---- traversal ----------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name in self._module_names:
            yield name, getattr(self, name)

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every descendant, depth first, with dotted names ("" for self)."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(key, Parameter) with state_dict's keys; a parameter shared by two layers comes once."""
        seen: set[int] = set()
        for mod_name, m in self.named_modules(prefix):
            for name in m._param_names:
                p = getattr(m, name)
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, Tensor]]:
        for mod_name, m in self.named_modules():
            for name in m._buffer_names:
                yield (f"{mod_name}.{name}" if mod_name else name), getattr(m, name)

    # ---- modes, devices, gradients ------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Training mode (layers save inputs for backward, BatchNorm uses batch statistics,
        Dropout drops); train(False) is eval() and releases whatever was saved."""
        mode = flag(mode, f"{type(self).__name__}.train: mode")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
            if not mode:
                object.__setattr__(m, "_saved", None)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, device: str) -> Module:
        """Move parameters, their gradients and buffers to `device` (in place; returns self)."""
        if not isinstance(device, str):
            raise TypeError(f"to: device must be a string such as 'cpu' or 'gpu:0', got {device!r}")
        for m in self.modules():
            for name in m._param_names:
                p = getattr(m, name)
                if p.data.device != device:
                    p.data = p.data.to(device)
                if p.grad is not None and p.grad.device != device:
                    p.grad = p.grad.to(device)
            for name in m._buffer_names:
                b = getattr(m, name)
                if b.device != device:
                    object.__setattr__(m, name, b.to(device))
            object.__setattr__(m, "_device", device)
            object.__setattr__(m, "_saved", None)
        return self

    @property
    def device(self) -> str:
        return self._device

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (or zero it in place with set_to_none=False)."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter of this module and its children."""
        requires_grad = flag(requires_grad, f"{type(self).__name__}.requires_grad_: requires_grad")
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def set_impl(self, impl: str) -> Module:
        """The impl ("auto", "handwritten", "vendor") the ops of every layer run with."""
        if impl not in IMPLS:
            raise ValueError(f"set_impl: impl must be one of {IMPLS}, got {impl!r}")
        for m in self.modules():
            object.__setattr__(m, "impl", impl)
        return self

    # ---- state_dict ---------------------------------------------------------------------------
    def _own_state_shapes(self) -> dict[str, tuple[int, ...]]:
        """This module's own entries (parameters, then buffers) and their shapes."""
        out = {n: tuple(getattr(self, n).data.shape) for n in self._param_names}
        out.update({n: tuple(getattr(self, n).shape) for n in self._buffer_names})
        return out

    def _own_state(self) -> dict[str, np.ndarray]:
        out = {n: getattr(self, n).data.numpy() for n in self._param_names}
        out.update({n: getattr(self, n).numpy() for n in self._buffer_names})
        return out

    def _load_own(self, name: str, value: np.ndarray) -> None:
        target = getattr(self, name)
        dest = target.data if isinstance(target, Parameter) else target
        dest.copy_(tensor(value, device=dest.device, dtype=dest.dtype))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer as a NumPy copy, keyed and laid out as PyTorch's
        ("0.weight", "3.running_mean", ...), so torch's load_state_dict takes it directly."""
        out: dict[str, np.ndarray] = {}
        for prefix, m in self.named_modules():
            for name, arr in m._own_state().items():
                out[f"{prefix}.{name}" if prefix else name] = arr
        return out

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> LoadResult:
        """Copy values (NumPy arrays, hg or torch tensors) into the parameters and buffers in place.

        Everything is checked before anything is copied: with strict=True missing or unexpected
        keys are a ValueError listing them; a shape mismatch is always a ValueError naming the
        key and both shapes. Returns (missing_keys, unexpected_keys)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"load_state_dict: state_dict must be a dict, got "
                            f"{type(state_dict).__name__}")
        expected: dict[str, tuple[Module, str, tuple[int, ...]]] = {}
        for prefix, m in self.named_modules():
            for name, shape in m._own_state_shapes().items():
                expected[f"{prefix}.{name}" if prefix else name] = (m, name, shape)
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict ({type(self).__name__}): missing keys {missing}, "
                             f"unexpected keys {unexpected}")
        arrays: dict[str, np.ndarray] = {}
        for key, (_, _, shape) in expected.items():
            if key not in state_dict:
                continue
            arr = to_array(state_dict[key], key)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: {key!r} must hold real numbers (float, int or bool), "
                                f"got dtype {arr.dtype}")
            if tuple(arr.shape) != shape:
                raise ValueError(f"load_state_dict: shape mismatch for {key!r}: the checkpoint has "
                                 f"{tuple(arr.shape)}, the model expects {shape}")
            m, name, _ = expected[key]
            try:  # converts exactly into what the module holds (float32, an int64 counter)
                check_exact(distinct_view(arr), _state_dtype(m, name))
            except ValueError as exc:
                raise ValueError(f"load_state_dict: {key!r}: {exc}") from None
            arrays[key] = arr
        for key, arr in arrays.items():
            m, name, _ = expected[key]
            m._load_own(name, arr)
        return LoadResult(missing, unexpected)

    # ---- printing -----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)
