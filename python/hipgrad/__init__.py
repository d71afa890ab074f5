"""hipgrad: a small deep-learning engine with handwritten CPU/GPU kernels and vendor wrappers.

The package, by subpackage: `ops` (the op contract over the native kernels), `nn` (layers),
`optim`, `data` (data sets and the loader), `training` (the Trainer, checkpoints, the model zoo),
`engine` (the inference engine: lowering models to steps, memory planning, INT8, ONNX, saving),
`profiling` (traces, the tuning cache, training-vs-inference comparison) and `cli` (the
`hipgrad` command, one module per subcommand). The engine, the comparison and the CLI load on
first use, so `import hipgrad` stays fast.
"""

from __future__ import annotations

from typing import Any

from . import nn, ops, optim
from ._native import _C
from ._version import __version__
from .data import DataLoader, Dataset, load_dataset
from .errors import BackendError
from .profiling.tracing import layer, phase, trace
from .profiling.tuning import tuning_report
from .random import manual_seed
from .runtime import (build_info, devices, empty_cache, get_num_threads, gpu_unavailable_reason,
                      memory_stats, reset_peak_memory_stats, set_num_threads, synchronize,
                      time_ms)
from .sysinfo import device_info
from .tensor import Tensor, as_tensor, borrow, empty, from_dlpack, tensor, zeros
from .training.checkpoint import load_checkpoint, load_model, save_checkpoint
from .training.models import build_model
from .training.trainer import Trainer

_LAZY = ("InferenceEngine", "compare")  # imported on first use


def __getattr__(name: str) -> Any:
    if name == "InferenceEngine":
        from .engine.engine import InferenceEngine as value
    elif name == "compare":
        from .profiling.compare import compare as value
    else:
        raise AttributeError(f"module 'hipgrad' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BackendError", "DataLoader", "Dataset", "InferenceEngine", "Tensor", "Trainer", "_C",
    "as_tensor", "borrow", "build_info", "build_model", "compare", "devices", "empty",
    "empty_cache", "from_dlpack", "get_num_threads", "gpu_unavailable_reason", "layer",
    "load_checkpoint", "load_dataset", "load_model", "manual_seed", "memory_stats", "nn", "ops",
    "optim", "phase", "reset_peak_memory_stats", "save_checkpoint", "set_num_threads",
    "synchronize", "tensor", "time_ms", "trace", "tuning_report", "zeros",
]
__all__ += ["device_info"]
