"""The inference engine: frozen weights, forward only, fused layers, optional INT8.

A model (an nn.Module, a hipgrad checkpoint or an ONNX file) is compiled into a plan: a graph
of steps over named values (steps.py) with the engine's own read-only copies of the weights,
BatchNorm folded into the convolution before it, each activation fused into the step before it,
a residual add fused into a convolution's epilogue, Dropout removed. Running the plan keeps no
activation caches. Memory is planned per input shape by liveness (memplan.py): the first
predict of a shape computes every value's shape and last reader, and allocates the activation
buffers once (a value's buffer is reused once its last reader ran: two ping-pong buffers for a
chain, three for a residual block; an int8 scratch for INT8, on a GPU an input staging buffer);
every op then writes into a planned view of one of them (out=), so later predicts of that shape
allocate nothing. Concurrent predicts each take their own set from a pool. plan_memory=False
runs the unplanned path (each op allocates its output), kept to compare against. A graph with
several outputs returns a tuple of arrays from forward().

    engine = InferenceEngine.load("runs/digits/model.safetensors", precision="int8")
    engine.calibrate(x_calib)        # INT8: activation scales from a few batches of real data
    labels = engine.predict(x)       # NumPy in, NumPy out; safe to call from several threads
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Sequence

import numpy as np

from .. import ops
from .._native import _C
from ..errors import BackendError
from ..runtime import resolve_device
from ..tensor import Tensor, tensor
from . import execute, quantize, report
from .arena import Arena, ArenaPool
from .checks import check_input, input_dtype
from .memplan import MemoryPlan
from .steps import PRECISIONS, Graph, Step, chain

_PACK_MIN_N = 64  # see InferenceEngine._packs
_PACK_MIN_1X1 = 1 << 18  # see InferenceEngine._packs_conv (SqueezeNet's 512 -> 1000 classifier)


class InferenceEngine:
    """Forward-only execution of a frozen plan on one device, fp32 or int8."""

    def __init__(self, plan: Graph | list[Step], *, device: str = "auto", precision: str = "fp32",
                 batch_size: int | None = None, input_shape: Sequence[int] | None = None,
                 source: str = "model", plan_memory: bool = True, fixed_batch: int | None = None) -> None:
        """`fixed_batch`: the only batch size `plan` holds for (an ONNX export whose shapes fold
        its fixed batch in: onnx.graph_from_onnx's meta["batch"]); other batches are refused."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        self.device = resolve_device(device)
        self.precision = precision
        self.batch_size = None if batch_size is None else int(batch_size)
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.fixed_batch = None if fixed_batch is None else int(fixed_batch)
        self.source = source
        self._plan = (plan if isinstance(plan, Graph) else chain(list(plan))).validate()
        last = self._plan.producers().get(self._plan.outputs[0])
        self._ends_in_softmax = last is not None and last.kind == "softmax"  # outputs are probabilities
        self._program = execute.Program(self._plan)
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
        `input_shape` (without the batch) defaults to the model's spec (hipgrad.training.models)."""
        from .lowering import plan_from_module

        if isinstance(getattr(model, "spec", None), dict) and model.spec.get("name") == "gpt":
            from ..lm.engine import GPTEngine   # a language model: generate()
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
        from .serialize import plan_from_file

        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or None, got {precision!r}")
        from ..lm.engine import GPTEngine, is_gpt_checkpoint
        if is_gpt_checkpoint(path):  # a language model: generate()
            return GPTEngine.load(path, device=resolve_device(device), precision=precision)
        plan, meta = plan_from_file(path)
        saved = meta.get("precision") or "fp32"
        if precision == "fp32" and saved == "int8":
            raise ValueError(f"precision='fp32': {path} holds an int8 engine (its fp32 weights are not "
                             "saved); load the fp32 checkpoint it came from, or precision=None / 'int8'")
        from ..training.checkpoint import CheckpointError
        try:  # a stored plan is untrusted: whatever does not build or run is the file's fault
            engine = cls(plan, device=device, precision=precision or saved,
                         batch_size=batch_size, input_shape=meta.get("input_shape"),
                         source=str(path), plan_memory=plan_memory, fixed_batch=meta.get("batch"))
            if meta.get("calibrated") and engine.precision == "int8":
                engine.calibrated = True
                quantize.drop_fp32_weights(engine._plan)
            if engine.input_shape and (engine.precision == "fp32" or engine.calibrated):
                engine.forward(np.zeros((engine.fixed_batch or 1, *engine.input_shape), input_dtype(engine._plan)))
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, RuntimeError) as e:
            if isinstance(e, BackendError):
                raise
            raise CheckpointError(f"{path}: the stored model does not build or run "
                                  f"({type(e).__name__}: {e})") from None
        return engine

    def _upload(self, steps: Graph) -> None:
        """Move each step's host arrays to the device (the engine's only copy from then on).
        INT8 engines also get per-output-channel symmetric int8 weights; their fp32 weights stay
        only until calibration has run; their head and projection shortcuts stay float32 (quantize.mark_fp32)."""
        if self.precision == "int8":
            quantize.mark_fp32(steps)
        for s in steps:
            arrays = quantize.int8_weights(s, s.arrays) if self.precision == "int8" else s.arrays
            s.tensors = {k: tensor(v, device=self.device, dtype=v.dtype) for k, v in arrays.items()}
            s.arrays = {}
            if self._packs(s):  # the frozen weight in the CPU GEMM's panels, instead of (N, K)
                w = s.tensors.pop("weight")
                s.attrs["out_features"] = w.shape[0]
                s.tensors["weight_packed"] = ops.pack_linear_weight(w)
            elif self._packs_conv(s):  # (K, C, R, S) as the panels of its (K, C*R*S) view
                w = s.tensors.pop("weight")
                s.attrs["w_shape"] = [int(d) for d in w.shape]
                s.tensors["weight_packed"] = ops.pack_linear_weight(w.reshape(w.shape[0], -1))
            elif self.device == "cpu" and "wq" in s.tensors and s.kind == "conv":
                # INT8 CPU conv: wq also in qconv2d's packed rows (kernels._quantized), for the
                # ISA named by the tag; a saved engine keeps only wq (serialize.unpacked)
                s.tensors["wq_packed"] = ops.qpack_weight(s.tensors["wq"])
                s.attrs["qpack_tag"] = int(_C.ops.cpu_qpack_tag())

    def _packs(self, s: Step) -> bool:
        """An fp32 CPU linear step at least _PACK_MIN_N wide holds its weight packed once
        (ops.pack_linear_weight, the same bytes in the GEMM's panel order) and runs
        linear_bias_act_packed: no packing of the weight on every call. Narrower layers (a
        classifier's 10 outputs) keep impl="auto"'s choice among all linear_bias_act kernels."""
        fp32 = self.precision == "fp32" or bool(s.attrs.get("fp32"))  # an int8 engine's fp32 head
        return (self.device == "cpu" and fp32 and s.kind == "linear"
                and "weight" in s.tensors and s.tensors["weight"].shape[0] >= _PACK_MIN_N)

    def _packs_conv(self, s: Step) -> bool:
        """An fp32 CPU conv step with groups 1, at least _PACK_MIN_N output channels and a
        kernel larger than 1x1 (or a 1x1 weight of _PACK_MIN_1X1 values: a classifier conv)
        holds its weight packed once for conv2d_bias_act_packed, which kernels.bind runs where
        the output plane is small (kernels.PACKED_CONV_ROWS): there the weights dominate and the
        output pixels of the batch are the GEMM's rows. A smaller 1x1 weight is cheaper to pack
        per call than the packed op's lowering and scatter."""
        if not (self.device == "cpu" and self.precision == "fp32" and s.kind == "conv"
                and "weight" in s.tensors and int(s.attrs.get("groups", 1)) == 1):
            return False
        k, c, r, sw = s.tensors["weight"].shape
        return k >= _PACK_MIN_N and (r * sw > 1 or k * c >= _PACK_MIN_1X1)

    # ---- frozen weights -----------------------------------------------------------------------
    def weights_digest(self) -> str:
        """SHA-256 over every weight the engine holds, read back from the device."""
        return report.weights_digest(self._plan)

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
        """x checked against the plan (checks.check_input): as given, or as a NumPy array where
        the engine converts it."""
        return check_input(x, self._plan, self.input_shape, self._shapes_checked, self.fixed_batch)

    def forward(self, x: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """Raw outputs (logits) as a NumPy array (a tuple of them for a graph with several
        outputs); batches split by batch_size."""
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
        parts = [self._run_batch(arr[i:i + bs]) for i in range(0, n, bs)]
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate(p, axis=0) for p in zip(*parts))
        return np.concatenate(parts, axis=0)

    def _input_dtype(self) -> np.dtype:
        return input_dtype(self._plan)

    def _run_batch(self, x: np.ndarray | Tensor) -> np.ndarray | tuple[np.ndarray, ...]:
        """One batch through the plan; the outputs are copied to the host before their buffers
        go back to the pool."""
        int8 = self.precision == "int8"
        if not self.plan_memory:
            if isinstance(x, np.ndarray):
                x = tensor(x, device=self.device, dtype=self._input_dtype())
            return _host(execute.run(self._program, [x], int8))
        dtype = np.dtype(x.dtype) if isinstance(x, Tensor) else self._input_dtype()
        arena = self._arenas.acquire(self._plan, tuple(x.shape), dtype, int8)
        try:
            xt = arena.stage(x) if isinstance(x, np.ndarray) else x
            return _host(self._run_recorded(xt, int8, arena))
        finally:
            self._arenas.release(arena)

    def _run_recorded(self, x: Tensor, int8: bool, arena: Arena) -> list[Tensor]:
        """The plan on a planned arena. Its first run records each step as a call with every
        argument bound but its inputs (weights, attributes, the planned output views: the
        buffer choice is fixed per arena); later runs replay those calls, one native call per
        step without re-deciding anything in Python. An int8 record binds the calibrated
        scales: calibrate() runs once per engine, before any int8 forward."""
        tape = arena.tapes.get(int8)
        if tape is None:
            tape = []
            out = execute.run(self._program, [x], int8, arena=arena, tape=tape)
            arena.tapes[int8] = tape
            return out
        return execute.replay(self._program, tape, [x])

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

    # ---- INT8 ---------------------------------------------------------------------------------
    def calibrate(self, data: Any, batches: int | None = None) -> "InferenceEngine":
        """Set each quantized layer's input scale (max |x| / 127) and correct its bias for the
        rounding of its weights (quantize.py) from real inputs: an array or an iterable of
        arrays / (x, y) batches. Once per engine: calibration keeps only the int8
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
            execute.run(self._program, [xt], int8=False, observe=seen)
            count += 1
            if batches is not None and count >= batches:
                break
        if count == 0:
            raise ValueError("calibrate: data holds no batches")
        quantize.assign_scales(self._plan, seen)
        self.calibrated = True
        quantize.drop_fp32_weights(self._plan)
        return self

    def save(self, path: str) -> None:
        """Write the engine (plan, weights, INT8 scales) for InferenceEngine.load."""
        from ..training.checkpoint import check_path
        from .serialize import save_plan, unpacked

        save_plan(check_path(path, "InferenceEngine.save"), unpacked(self._plan),
                  {"precision": self.precision, "calibrated": self.calibrated,
                   "input_shape": list(self.input_shape) if self.input_shape else None,
                   "batch": self.fixed_batch})

    # ---- reporting ----------------------------------------------------------------------------
    def weight_bytes(self) -> int:
        """Bytes of the weights the engine holds on its device."""
        return report.weight_bytes(self._plan)

    def memory_plan(self, shape: Sequence[int]) -> MemoryPlan:
        """The buffers a predict of one batch of `shape` (batch first) uses (cached per shape)."""
        return self._arenas.plan(self._plan, shape, self._input_dtype(), self.precision == "int8")

    def memory_report(self, x: Any = None) -> dict:
        """Weight bytes, the planned buffers of every input shape seen so far, the allocation
        counters behind them, and with `x`: the measured peak device memory of forward(x) with its
        buffers allocated afresh (idle pooled buffers are freed first), next to the planned figure.
        """
        return report.memory_report(self, x)

    def describe(self, shape: Sequence[int] | None = None) -> str:
        """The plan, one line per step (report.describe); with `shape` (a batch's, batch
        first), then its memory plan: buffers and planned bytes next to the sum of all
        intermediate values."""
        text = report.describe(self._plan, f"InferenceEngine({self.source}, device={self.device}, "
                                           f"precision={self.precision})", self.precision == "int8")
        return text if shape is None else text + "\n" + report.memory_line(self.memory_plan(shape))


def _host(outputs: list[Tensor]) -> np.ndarray | tuple[np.ndarray, ...]:
    """The graph's outputs as host arrays: one array, or a tuple for several outputs."""
    arrays = tuple(t.numpy() for t in outputs)
    return arrays[0] if len(arrays) == 1 else arrays
