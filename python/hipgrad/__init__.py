"""hipgrad: a small deep-learning engine with handwritten CPU/GPU kernels and vendor wrappers."""

from __future__ import annotations

from . import nn, ops, optim, tuning
from ._native import _C
from .errors import BackendError
from .random import manual_seed
from .runtime import (build_info, devices, empty_cache, get_num_threads, gpu_unavailable_reason,
                      memory_stats, reset_peak_memory_stats, set_num_threads, synchronize,
                      time_ms)
from .sysinfo import device_info
from .tensor import Tensor, as_tensor, borrow, empty, from_dlpack, tensor, zeros
from .tracing import layer, phase, trace
from .tuning import tuning_report
from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .data import DataLoader, Dataset, load_dataset
from .models import build_model
from .train import Trainer
from .compare import compare
from .infer import InferenceEngine

__version__ = "0.1.0"

__all__ = [
    "BackendError", "Tensor", "layer", "phase", "trace", "tuning_report", "as_tensor", "build_info", "devices", "empty", "empty_cache",
    "borrow", "from_dlpack", "get_num_threads", "gpu_unavailable_reason", "manual_seed", "memory_stats",
    "nn", "ops", "optim",
    "reset_peak_memory_stats", "set_num_threads", "synchronize", "tensor", "time_ms", "zeros", "_C",
]
__all__ += ["device_info"]
__all__ += ["DataLoader", "Dataset", "InferenceEngine", "Trainer", "compare", "build_model", "load_checkpoint", "load_dataset",
            "load_model", "save_checkpoint"]
