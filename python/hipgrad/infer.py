"""The inference engine: frozen weights, forward only, fused layers, optional INT8.

A model (an nn.Module, a hipgrad checkpoint or an ONNX file) is compiled into a plan: a list of
steps with the engine's own read-only copies of the weights, BatchNorm folded into the
convolution before it, each activation fused into the convolution or linear layer before it,
Dropout removed. Running the plan keeps no activation caches. Memory is planned per input
shape (memplan.py): the first predict of a shape computes every step's output shape and
allocates the activation buffers once (two ping-pong buffers for a chain, more inside residual
blocks, an int8 scratch for INT8, on a GPU an input staging buffer); every op then writes into a prefix
view of one of them (out=), so later predicts of that shape allocate nothing. Concurrent
predicts each take their own set from a pool. plan_memory=False runs the unplanned path (each
op allocates its output), kept to compare against.

    engine = InferenceEngine.load("runs/digits/model.safetensors", precision="int8")
    engine.calibrate(x_calib)        # INT8: activation scales from a few batches of real data
    labels = engine.predict(x)       # NumPy in, NumPy out; safe to call from several threads
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import ops, runtime
from ._native import _C
from .ops._conv import _hyper as _conv_hyper
from .memplan import Arena, ArenaPool, MemoryPlan, check_input_shape, step_output_shape
from .tensor import Tensor, tensor, try_borrow

PRECISIONS = ("fp32", "int8")
FUSABLE = {"relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "elu"}


@dataclass
class Step:
    """One node of the plan. `kind` is one of conv, linear, act, maxpool, avgpool, flatten,
    affine (a BatchNorm with no conv before it), residual, embedding, softmax."""

    kind: str
    name: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # host copies (float32)
    attrs: dict[str, Any] = field(default_factory=dict)
    body: list["Step"] = field(default_factory=list)
    shortcut: list["Step"] = field(default_factory=list)
    tensors: dict[str, Tensor] = field(default_factory=dict)  # device copies, read-only
    x_scale: float | None = None  # INT8: input activation scale from calibration


_FLOAT32, _INT64 = np.dtype(np.float32), np.dtype(np.int64)
_PACK_MIN_N = 64  # see InferenceEngine._packs
_FLT_MAX = float(np.finfo(np.float32).max)


def _all_finite(a: np.ndarray) -> bool:
    """No NaN and no infinity in `a`. A C-contiguous float32 array (the usual batch) is checked
    natively in one pass over hipgrad's threads; otherwise min and max, which propagate NaN and
    show an infinity and unlike np.isfinite(a).all() make no temporary array of a's size."""
    if a.size == 0:
        return True
    if a.dtype == _FLOAT32 and a.flags.c_contiguous:
        return bool(_C._all_finite_f32(a))
    return bool(np.isfinite(np.minimum.reduce(a, axis=None)) and np.isfinite(np.maximum.reduce(a, axis=None)))


def _tensor_all_finite(x: Tensor) -> bool:
    """_all_finite for an hg.Tensor without copying it to the host: on the CPU a NumPy view; on
    a GPU the per-channel sums of bias_backward (one pass, C floats back), into which a NaN or an
    infinity anywhere propagates. Only where a sum is not finite is the tensor brought to the
    host and checked exactly (finite values whose sum overflows are not an error)."""
    if x.numel() == 0 or np.dtype(x.dtype).kind != "f":
        return True
    if x.device == "cpu":
        return _all_finite(np.from_dlpack(x))
    if np.dtype(x.dtype) == np.float32 and x.ndim >= 2 and _all_finite(ops.bias_backward(x).numpy()):
        return True
    return _all_finite(x.numpy())


def _fits_float32(a: np.ndarray) -> bool:
    """A float array wider than float32 holds only values the engine's float32 can hold:
    a finite float64 beyond +-3.4e38 would become an infinity in the cast."""
    if a.size == 0 or a.dtype.itemsize <= 4:
        return True
    return bool(np.minimum.reduce(a, axis=None) >= -_FLT_MAX and np.maximum.reduce(a, axis=None) <= _FLT_MAX)


def _unpacked(steps: list[Step]) -> list[Step]:
    """The plan as saved: packed linear weights back in the (N, K) layout, which loads under
    any CPU ISA or device (each engine packs for its own)."""
    out = []
    for s in steps:
        t, a = dict(s.tensors), dict(s.attrs)
        if "weight_packed" in t:
            p = t.pop("weight_packed").numpy()  # (panels, K, NR): w[q * NR + j][k] at [q][k][j]
            n = a.pop("out_features")
            t["weight"] = tensor(np.ascontiguousarray(p.transpose(0, 2, 1).reshape(-1, p.shape[1])[:n]))
        out.append(replace(s, tensors=t, attrs=a, body=_unpacked(s.body), shortcut=_unpacked(s.shortcut)))
    return out


def _pairs(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def resolve_device(device: str) -> str:
    from .runtime import devices

    if device == "auto":
        return "gpu:0" if "gpu:0" in devices() else "cpu"
    return device


class InferenceEngine:
    """Forward-only execution of a frozen plan on one device, fp32 or int8."""

    def __init__(self, plan: list[Step], *, device: str = "auto", precision: str = "fp32",
                 batch_size: int | None = None, input_shape: Sequence[int] | None = None,
                 source: str = "model", plan_memory: bool = True) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        self.device = resolve_device(device)
        self.precision = precision
        self.batch_size = None if batch_size is None else int(batch_size)
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.source = source
        self._plan = plan
        self._has_residual = any(s.kind == "residual" for s in plan)  # no recorded calls (_run_recorded)
        self._ends_in_softmax = bool(plan) and plan[-1].kind == "softmax"  # outputs are probabilities
        self._shapes_checked: set[tuple[int, ...]] = set()
        self._lock = threading.Lock()
        self.calibrated = False
        self.plan_memory = bool(plan_memory)
        self._arenas = ArenaPool(self.device)
        self._upload(self._plan)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: Any, *, device: str = "auto", precision: str = "fp32",
                   batch_size: int | None = None, input_shape: Sequence[int] | None = None,
                   plan_memory: bool = True) -> "InferenceEngine":
        """Compile an nn.Module (its current weights are copied; later training does not leak in).
        `input_shape` (without the batch) defaults to the model's spec (hipgrad.models)."""
        from .plan import plan_from_module

        if isinstance(getattr(model, "spec", None), dict) and model.spec.get("name") == "gpt":
            from .lm.engine import GPTEngine
            return GPTEngine.from_model(model, device=resolve_device(device), precision=precision)
        if input_shape is None and isinstance(getattr(model, "spec", None), dict):
            input_shape = model.spec.get("in_shape")
        return cls(plan_from_module(model), device=device, precision=precision,
                   batch_size=batch_size, input_shape=input_shape, source=type(model).__name__,
                   plan_memory=plan_memory)

    @classmethod
    def load(cls, path: str, *, device: str = "auto", precision: str | None = None,
             batch_size: int | None = None, plan_memory: bool = True) -> "InferenceEngine":
        """A hipgrad checkpoint (.safetensors + .json sidecar), an INT8 engine saved with save(),
        or an ONNX file (.onnx). `precision`: None keeps the file's (fp32 for a checkpoint or
        ONNX file); "int8" quantizes an fp32 model; a saved int8 engine cannot load as fp32
        (calibration kept only its int8 weights)."""
        from .plan import plan_from_file

        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or None, got {precision!r}")
        from .lm.engine import GPTEngine, is_gpt_checkpoint
        if is_gpt_checkpoint(path):  # a language model: generate()
            return GPTEngine.load(path, device=resolve_device(device), precision=precision)
        plan, meta = plan_from_file(path)
        saved = meta.get("precision") or "fp32"
        if precision == "fp32" and saved == "int8":
            raise ValueError(f"precision='fp32': {path} holds an int8 engine (its fp32 weights are not "
                             "saved); load the fp32 checkpoint it came from, or precision=None / 'int8'")
        engine = cls(plan, device=device, precision=precision or saved,
                     batch_size=batch_size, input_shape=meta.get("input_shape"), source=str(path),
                     plan_memory=plan_memory)
        if meta.get("calibrated") and engine.precision == "int8":
            engine.calibrated = True
            engine._drop_fp32_weights(engine._plan)
        return engine

    def _upload(self, steps: list[Step]) -> None:
        """Move each step's host arrays to the device (the engine's only copy from then on).
        INT8 engines also get per-output-channel symmetric int8 weights; their fp32 weights stay
        only until calibration has run."""
        for s in steps:
            arrays = dict(s.arrays)
            if self.precision == "int8" and s.kind in ("conv", "linear") and "wq" not in arrays:
                w = arrays["weight"].astype(np.float64)
                amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
                w_scale = np.where(amax > 0, amax / 127.0, 1.0)
                wq = np.clip(np.rint(w / w_scale.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127)
                arrays["w_scale"] = w_scale.astype(np.float32)
                arrays["wq"] = wq.astype(np.int8)
            s.tensors = {k: tensor(v, device=self.device, dtype=v.dtype) for k, v in arrays.items()}
            s.arrays = {}
            if self._packs(s):  # the frozen weight in the CPU GEMM's panels, instead of (N, K)
                w = s.tensors.pop("weight")
                s.attrs["out_features"] = w.shape[0]
                s.tensors["weight_packed"] = ops.pack_linear_weight(w)
            self._upload(s.body)
            self._upload(s.shortcut)

    def _packs(self, s: Step) -> bool:
        """An fp32 CPU linear step at least _PACK_MIN_N wide holds its weight packed once
        (ops.pack_linear_weight, the same bytes in the GEMM's panel order) and runs
        linear_bias_act_packed: no packing of the weight on every call. Narrower layers (a
        classifier's 10 outputs) keep impl="auto"'s choice among all linear_bias_act kernels."""
        return (self.device == "cpu" and self.precision == "fp32" and s.kind == "linear"
                and "weight" in s.tensors and s.tensors["weight"].shape[0] >= _PACK_MIN_N)

    # ---- frozen weights -----------------------------------------------------------------------
    def weights_digest(self) -> str:
        """SHA-256 over every weight the engine holds, read back from the device."""
        h = hashlib.sha256()

        def walk(steps: list[Step]) -> None:
            for s in steps:
                for k in sorted(s.tensors):
                    h.update(f"{s.name}.{k}".encode())
                    h.update(s.tensors[k].numpy().tobytes())
                walk(s.body)
                walk(s.shortcut)

        walk(self._plan)
        return h.hexdigest()

    def backward(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("InferenceEngine is forward-only: its weights are frozen; train an nn.Module instead")

    def parameters(self) -> Iterable[Any]:
        raise RuntimeError("InferenceEngine has no trainable parameters: its weights are frozen, "
                           "so no optimizer can step them")

    named_parameters = parameters
    zero_grad = backward
    step = backward

    # ---- running ------------------------------------------------------------------------------
    def _check_input(self, x: Any) -> np.ndarray | Tensor:
        """x checked (dtype, shape against every step, finite values in float32's range) and
        returned as given, or as a NumPy array where the engine converts it: a NumPy or
        array-like input, or a tensor of another dtype than the engine reads."""
        if isinstance(x, Tensor) and np.dtype(x.dtype).kind in "fiu" and np.dtype(x.dtype) != self._input_dtype():
            x = x.numpy()  # converted as a NumPy input is (into the staging buffer)
        if isinstance(x, Tensor):
            arr = None
            shape, dtype = x.shape, x.dtype
        else:
            try:
                arr = np.asarray(x)
            except Exception as e:  # noqa: BLE001 - anything NumPy refuses
                raise TypeError(f"x must be a NumPy array or hg.Tensor, got {type(x).__name__}") from e
            shape, dtype = arr.shape, arr.dtype
        if self._plan and self._plan[0].kind == "embedding":
            if np.dtype(dtype).kind not in "iu":
                raise TypeError(f"x must hold integer token ids, got dtype {dtype}")
        elif np.dtype(dtype).kind not in "fiu":
            raise TypeError(f"x must be a float array, got dtype {dtype}")
        if self.input_shape is not None and tuple(shape[1:]) != self.input_shape:
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, self.input_shape))}), got {tuple(shape)}")
        if len(shape) < 1 or shape[0] < 1:
            raise ValueError(f"x must have a non-empty batch dimension, got shape {tuple(shape)}")
        key = tuple(int(v) for v in shape[1:])
        if key not in self._shapes_checked:  # every step's expectation, before anything runs
            check_input_shape(self._plan, (1,) + key, given=tuple(shape))
            self._shapes_checked.add(key)
        if arr is not None:
            if arr.dtype.kind == "f" and not _all_finite(arr):
                raise ValueError("x contains NaN or infinite values")
            if arr.dtype.kind == "f" and not _fits_float32(arr):
                raise ValueError(f"x holds {arr.dtype} values beyond float32's range (|x| > {_FLT_MAX:.4g}); "
                                 "the engine computes in float32")
            return arr
        if not _tensor_all_finite(x):
            raise ValueError("x contains NaN or infinite values")
        return x

    def forward(self, x: Any) -> np.ndarray:
        """Raw outputs (logits) as a NumPy array; batches split by batch_size."""
        arr = self._check_input(x)
        if self.precision == "int8" and not self.calibrated:
            raise RuntimeError("int8 engine is not calibrated: call engine.calibrate(x) with a few batches first")
        n = arr.shape[0]
        bs = self.batch_size or n
        if isinstance(arr, Tensor):
            if bs >= n:  # one batch: stays on its device, no copy
                return self._run_batch(arr.to(self.device) if arr.device != self.device else arr)
            arr = arr.numpy()
        if bs >= n:
            return self._run_batch(arr)
        return np.concatenate([self._run_batch(arr[i:i + bs]) for i in range(0, n, bs)], axis=0)

    def _input_dtype(self) -> np.dtype:
        return _INT64 if self._plan and self._plan[0].kind == "embedding" else _FLOAT32

    def _run_batch(self, x: np.ndarray | Tensor) -> np.ndarray:
        """One batch through the plan; the output is copied to the host before its buffers go
        back to the pool."""
        int8 = self.precision == "int8"
        if not self.plan_memory:
            if isinstance(x, np.ndarray):
                x = tensor(x, device=self.device, dtype=self._input_dtype())
            return self._run(self._plan, x, int8).numpy()
        dtype = np.dtype(x.dtype) if isinstance(x, Tensor) else self._input_dtype()
        arena = self._arenas.acquire(self._plan, tuple(x.shape), dtype, int8)
        try:
            xt = arena.stage(x) if isinstance(x, np.ndarray) else x
            return self._run_recorded(xt, int8, arena).numpy()
        finally:
            self._arenas.release(arena)

    def _run_recorded(self, x: Tensor, int8: bool, arena: Arena) -> Tensor:
        """The plan on a planned arena. Its first run records each step as a call with every
        argument bound but the input (weights, attributes, the planned output view: the
        buffer choice is the same on every run of one arena); later runs replay those calls,
        one native call per step without re-deciding anything in Python. A plan with a
        residual block (nested, several live tensors) always runs step by step. An int8 record
        binds the calibrated scales: calibrate() runs once per engine, before any int8 forward."""
        tape = arena.tapes.get(int8)
        if tape is None:
            if self._has_residual:
                return self._run(self._plan, x, int8, mem=arena)
            tape = []
            x = self._run(self._plan, x, int8, mem=arena, tape=tape)
            arena.tapes[int8] = tape
            return x
        for call in tape:
            x = call(x)
        return x

    __call__ = forward

    def predict(self, x: Any) -> np.ndarray:
        """Class indices (int64) of the highest output."""
        return self.forward(x).argmax(axis=-1)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities: the softmax of the outputs, or the outputs themselves where the
        model already ends in a softmax (an ONNX classifier's Softmax node)."""
        out = self.forward(x)
        return out if self._ends_in_softmax else ops.softmax(tensor(out)).numpy()

    def topk(self, x: Any, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """(indices, probabilities) of the k most likely classes, most likely first."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {type(k).__name__} {k!r}")
        p = self.predict_proba(x)
        if not 1 <= int(k) <= p.shape[-1]:
            raise ValueError(f"k must be in [1, {p.shape[-1]}], got {k}")
        idx = np.argsort(-p, axis=-1, kind="stable")[..., : int(k)]
        return idx, np.take_along_axis(p, idx, axis=-1)

    def _run(self, steps: list[Step], x: Tensor, int8: bool, observe: dict | None = None,
             mem: Arena | None = None, tape: list | None = None) -> Tensor:
        for s in steps:
            x = self._step(s, x, int8, observe, mem, tape)  # the input's last reference goes here
        return x

    def _step(self, s: Step, x: Tensor, int8: bool, observe: dict | None, mem: Arena | None,
              tape: list | None = None) -> Tensor:
        """One step. With `mem`, every op writes into `out(*live)`: a view of a planned buffer
        that holds none of the `live` tensors (still to be read); without it, ops allocate.
        With `tape`, the step's call (see _call) is also appended there for replay."""
        if s.kind in ("conv", "linear") and observe is not None:
            amax = float(np.abs(x.numpy()).max())
            observe[id(s)] = max(observe.get(id(s), 0.0), amax)
        if s.kind == "residual":
            return self._residual(s, x, int8, observe, mem)
        call = self._call(s, x, int8, mem)
        if tape is not None:
            tape.append(call)
        return call(x)

    def _call(self, s: Step, x: Tensor, int8: bool, mem: Arena | None) -> Callable[[Tensor], Tensor]:
        """The step as a function of its input alone, for an input like `x`: weights,
        attributes and (with `mem`) the output view chosen now for x's shape are bound."""
        t, a = s.tensors, s.attrs
        act, alpha = a.get("act"), float(a.get("alpha", 0.01))
        if s.kind == "flatten":  # a view: no copy, no buffer
            merged = step_output_shape(s, x.shape)
            return lambda v: v.reshape(*merged)
        if s.kind == "linear" and x.ndim != 2:  # on the last axis (nn.Linear, ONNX MatMul): views
            rows, lead = (-1, x.shape[-1]), step_output_shape(s, x.shape)
            inner = self._call(s, x.reshape(*rows), int8, mem)
            return lambda v: inner(v.reshape(*rows)).reshape(*lead)
        shape = None if mem is None else step_output_shape(s, x.shape)

        def out(*live: Tensor) -> Tensor | None:
            return None if mem is None else mem.out(shape, *live)

        if int8 and s.kind in ("conv", "linear"):
            q = None if mem is None else mem.quantized(x.shape)
            o = out()  # x is read only by the quantize before the op writes here
            scale, wq, w_scale, bias = s.x_scale, t["wq"], t["w_scale"], t.get("bias")
            if s.kind == "conv":
                return lambda v: ops.qconv2d(ops.quantize(v, scale, out=q), wq, scale, w_scale, bias,
                                             stride=a["stride"], padding=a["padding"],
                                             dilation=a["dilation"], groups=a["groups"],
                                             activation=act, alpha=alpha, out=o)
            return lambda v: ops.qgemm(ops.quantize(v, scale, out=q), wq, scale, w_scale, bias,
                                       activation=act, alpha=alpha, out=o)
        o = out(x)
        if s.kind == "conv":  # the hot steps call the native op directly (all checked there)
            hyper = _conv_hyper("conv2d_bias_act", a["stride"], a["padding"], a["dilation"], a["groups"])
            w, bias, kind = t["weight"], t.get("bias"), act or "none"
            return lambda v: _C.ops.conv2d_bias_act(v, w, bias, *hyper, kind, alpha, "auto", o)
        if s.kind == "linear" and "weight_packed" in t:
            w, bias, kind, n = t["weight_packed"], t.get("bias"), act or "none", a["out_features"]
            return lambda v: _C.ops.linear_bias_act_packed(v, w, bias, n, kind, alpha, "auto", o)
        if s.kind == "linear":
            w, bias, kind = t["weight"], t.get("bias"), act or "none"
            return lambda v: _C.ops.linear_bias_act(v, w, bias, kind, alpha, "auto", o)
        if s.kind == "act":
            return lambda v: ops.activation(v, a["kind"], alpha=alpha, out=o)
        if s.kind == "maxpool":
            return lambda v: ops.max_pool2d(v, a["kernel"], stride=a["stride"], padding=a["padding"],
                                            out=o, with_argmax=False)[0]
        if s.kind == "avgpool":
            return lambda v: ops.avg_pool2d(v, a["kernel"], stride=a["stride"], padding=a["padding"], out=o)
        if s.kind == "affine":  # eval batch norm reads the running statistics, never writes them
            return lambda v: ops.batch_norm(v, t["weight"], t["bias"], t["running_mean"], t["running_var"],
                                            training=False, eps=a["eps"], out=o)[0]
        if s.kind == "softmax":
            return lambda v: ops.softmax(v, out=o)
        if s.kind == "embedding":
            return lambda v: ops.embedding(t["weight"], v, out=o)
        raise ValueError(f"plan step {s.name!r} has an unknown kind {s.kind!r}")

    def _residual(self, s: Step, x: Tensor, int8: bool, observe: dict | None, mem: Arena | None) -> Tensor:
        """act(body(x) + shortcut(x)). With `mem`, x stays pinned in its buffer while the body
        runs, x and the body's output while the shortcut runs (three buffers in all), and the sum
        is formed in the body's buffer."""
        act, alpha = s.attrs.get("act"), s.attrs.get("alpha", 0.01)
        if mem is None:
            body = self._run(s.body, x, int8, observe)
            short = self._run(s.shortcut, x, int8, observe) if s.shortcut else x
            del x
            y = ops.add(body, short)
            return ops.activation(y, act, alpha=alpha) if act else y
        with mem.pinned(x):
            body = self._run(s.body, x, int8, observe, mem)
            with mem.pinned(body):
                short = self._run(s.shortcut, x, int8, observe, mem) if s.shortcut else x
            with mem.pinned(short):
                if mem.owns(body):
                    y = ops.add_(body, short)
                else:  # the body was views of x only
                    y = ops.add(body, short, out=mem.out(body.shape, body))
        return ops.activation(y, act, alpha=alpha, out=mem.out(y.shape, y)) if act else y

    # ---- INT8 ---------------------------------------------------------------------------------
    def calibrate(self, data: Any, batches: int | None = None) -> "InferenceEngine":
        """Set each quantized layer's input scale (max |x| / 127) from real inputs: an array or an
        iterable of arrays / (x, y) batches. Once per engine: calibration keeps only the int8
        weights, so a new calibration needs a new engine (from_model / load)."""
        if self.precision != "int8":
            raise RuntimeError(f"calibrate: only an int8 engine is calibrated; this one is "
                               f"{self.precision} (InferenceEngine.from_model(model, precision='int8'))")
        if self.calibrated:
            raise RuntimeError("calibrate: this int8 engine is already calibrated and keeps only its "
                               "int8 weights; build a new engine (from_model / load) to calibrate "
                               "on other data")
        if batches is not None and (isinstance(batches, bool) or not isinstance(batches, (int, np.integer))
                                    or batches < 1):
            raise ValueError(f"calibrate: batches must be a positive int or None, got {batches!r}")
        if isinstance(data, (np.ndarray, Tensor)):
            data = [data]
        seen: dict[int, float] = {}
        count = 0
        for batch in data:
            if isinstance(batch, tuple):
                batch = batch[0]
            arr = self._check_input(batch)
            if isinstance(arr, Tensor) and arr.device != self.device:
                arr = arr.to(self.device)
            xt = arr if isinstance(arr, Tensor) else tensor(np.asarray(arr, self._input_dtype()), device=self.device)
            self._run(self._plan, xt, int8=False, observe=seen)
            count += 1
            if batches is not None and count >= batches:
                break
        if count == 0:
            raise ValueError("calibrate: data holds no batches")

        def assign(steps: list[Step]) -> None:
            for s in steps:
                if s.kind in ("conv", "linear"):
                    amax = seen.get(id(s), 0.0)
                    s.x_scale = amax / 127.0 if amax > 0 else 1.0
                assign(s.body)
                assign(s.shortcut)

        assign(self._plan)
        self.calibrated = True
        self._drop_fp32_weights(self._plan)
        return self

    def _drop_fp32_weights(self, steps: list[Step]) -> None:
        for s in steps:
            if s.kind in ("conv", "linear"):
                s.tensors.pop("weight", None)
            self._drop_fp32_weights(s.body)
            self._drop_fp32_weights(s.shortcut)

    def save(self, path: str) -> None:
        """Write the engine (plan, weights, INT8 scales) for InferenceEngine.load."""
        from .plan import save_plan

        save_plan(path, _unpacked(self._plan), {"precision": self.precision, "calibrated": self.calibrated,
                                     "input_shape": list(self.input_shape) if self.input_shape else None})

    # ---- reporting ----------------------------------------------------------------------------
    def weight_bytes(self) -> int:
        """Bytes of the weights the engine holds on its device."""
        total = 0

        def walk(steps: list[Step]) -> None:
            nonlocal total
            for s in steps:
                total += sum(v.nbytes for v in s.tensors.values())
                walk(s.body)
                walk(s.shortcut)

        walk(self._plan)
        return total

    def memory_plan(self, shape: Sequence[int]) -> MemoryPlan:
        """The buffers a predict of one batch of `shape` (batch first) uses (cached per shape)."""
        return self._arenas.plan(self._plan, shape, self._input_dtype(), self.precision == "int8")

    def _stages(self, arr: np.ndarray | Tensor, bs: int) -> bool:
        """Whether forward(arr) (as _check_input returns it) copies its batches into the arenas'
        staging buffers: a tensor on the engine's device in one batch is read as it is, and so
        on the CPU is a NumPy batch it can wrap (float32, C-contiguous: Arena.stage)."""
        if isinstance(arr, Tensor):
            if arr.device == self.device and bs >= arr.shape[0]:
                return False
            if not self.device.startswith("cpu"):
                return True
            arr = arr.numpy()
        if not self.device.startswith("cpu"):
            return True
        return try_borrow(arr[:bs], "cpu", self._input_dtype()) is None

    def memory_report(self, x: Any = None) -> dict:
        """Weight bytes, the planned buffers of every input shape seen so far, the allocation
        counters behind them, and with `x`: the measured peak device memory of forward(x) with its
        buffers allocated afresh (idle pooled buffers are freed first), next to the planned figure.
        """
        weights = self.weight_bytes()
        report: dict[str, Any] = {"device": self.device, "precision": self.precision,
                                  "plan_memory": self.plan_memory, "weights_bytes": weights}
        if x is not None:
            arr = self._check_input(x)
            n = arr.shape[0]
            bs = min(self.batch_size or n, n)
            self._arenas.drop()
            runtime.synchronize(self.device)
            base = runtime.memory_stats(self.device)["current"]
            runtime.reset_peak_memory_stats(self.device)
            self.forward(arr)
            runtime.synchronize(self.device)
            peak = int(runtime.memory_stats(self.device)["peak"] - base)
            measured = {"input_shape": list(arr.shape), "peak_above_live_bytes": peak,
                        "peak_bytes": weights + peak}
            if self.plan_memory:  # one buffer set per chunk shape (the last chunk may be smaller)
                chunks = {bs} | ({n % bs} if n % bs else set())
                plans = [self.memory_plan((c,) + tuple(arr.shape[1:])) for c in chunks]
                staged = self._stages(arr, bs)
                measured["planned_peak_bytes"] = weights + sum(
                    p.activation_bytes + p.int8_numel
                    + (math.prod(p.input_shape) * np.dtype(p.input_dtype).itemsize if staged else 0)
                    for p in plans)
            report["measured"] = measured
        report["plans"] = [dict(plan.as_dict(), idle_sets=idle) for plan, idle in self._arenas.plans()]
        report["buffer_sets_allocated"] = self._arenas.arenas_created
        report["buffers_allocated"] = self._arenas.buffers_allocated
        report["buffer_bytes_allocated"] = self._arenas.bytes_allocated
        return report

    def describe(self) -> str:
        lines = [f"InferenceEngine({self.source}, device={self.device}, precision={self.precision})"]

        def walk(steps: list[Step], indent: str) -> None:
            for s in steps:
                extra = f" + {s.attrs['act']}" if s.attrs.get("act") else ""
                folded = " (BatchNorm folded)" if s.attrs.get("folded_bn") else ""
                lines.append(f"{indent}{s.name}: {s.kind}{extra}{folded}")
                if s.kind == "residual":
                    walk(s.body, indent + "  body ")
                    walk(s.shortcut, indent + "  shortcut ")

        walk(self._plan, "  ")
        return "\n".join(lines)
