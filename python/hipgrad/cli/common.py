"""What the `hipgrad` subcommands share: the usage error (one line, exit code 2), checks of
output paths, devices and .npy inputs, and for the commands that build a model from --model /
--data (tune, explain, compare's kin): their arguments and `prepare()`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Runner = Callable[[argparse.Namespace], int]  # what a command's add_arguments returns
WIDTH = 100  # the width every command's report fits


class UsageError(Exception):
    """A problem with the command line or its inputs: printed as one line, exit code 2."""


def output_path(path: str | None, flag: str, directory: bool = False) -> None:
    """Check before any work that `path` (a file, or with `directory` a folder) can be written:
    its folder is created if missing; a file where a folder must be is a usage error naming
    the flag."""
    if not path:
        return
    p = Path(path)
    folder = p if directory else p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"{flag} {path}: {folder} exists and is not a directory") from None
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot create {folder} ({e.strerror})") from None
    if not directory and p.is_dir():
        raise UsageError(f"{flag} {path}: is a directory, expected a file name")


def pick_device(requested: str) -> str:
    """"auto" -> "gpu:0" where hipgrad sees a GPU, else "cpu"; other names must be usable."""
    from ..runtime import devices, gpu_unavailable_reason

    available = devices()
    if requested == "auto":
        return "gpu:0" if "gpu:0" in available else "cpu"
    if requested not in available:
        why = gpu_unavailable_reason()
        raise UsageError(f"device {requested!r} is not usable here (usable: {', '.join(available)})"
                         + (f"; {why}" if why else ""))
    return requested


def load_npy(path: str, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"{what} file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{what} file {path} is not a readable .npy array ({e})") from None


def add_model_arguments(p: argparse.ArgumentParser, batch: int) -> None:
    """The arguments `tune` and `explain` share."""
    p.add_argument("--model", default="lenet", help="mlp | lenet | resnet (default lenet)")
    p.add_argument("--batch", type=int, default=batch, help=f"batch size (default {batch})")
    p.add_argument("--data", default="digits",
                   help="the data set whose input shape and classes the model is built for: digits "
                        "| mnist:<dir> | fashion-mnist:<dir> | cifar10:<dir> (default digits)")
    p.add_argument("--device", default="auto", help="auto | cpu | gpu:0 (default auto)")
    p.add_argument("--seed", type=int, default=0, help="weights and batch (default 0)")


@dataclass
class Prepared:
    """A model ready for one training step: the trainer, a one-batch loader and that batch."""

    name: str
    data: str
    device: str
    batch: int
    net: Any
    trainer: Any
    loader: Any
    x_np: np.ndarray
    in_shape: tuple[int, ...]
    num_classes: int

    def train_step(self) -> None:
        """One step of training exactly as `Trainer.train_epoch` runs it (phases labelled)."""
        self.trainer.train_epoch(self.loader, 1)

    def engine(self, precision: str = "fp32") -> Any:
        """An inference engine of the model's current weights (int8: calibrated on the batch)."""
        from ..engine.engine import InferenceEngine

        engine = InferenceEngine.from_model(self.net, device=self.device, precision=precision)
        if precision == "int8":
            engine.calibrate([self.x_np])
        return engine


def prepare(args: argparse.Namespace) -> Prepared:
    """Check the shared arguments (UsageError naming the argument), load the data's shapes and
    build the model on the device with an Adam optimizer and a one-batch loader."""
    from .. import nn, optim
    from ..data import DataError, DataLoader, load_dataset
    from ..random import manual_seed
    from ..training.models import MODELS, build_model
    from ..training.trainer import Trainer

    if args.model not in MODELS:
        raise UsageError(f"--model: unknown model {args.model!r}: expected one of {', '.join(MODELS)}")
    if args.batch < 1:
        raise UsageError(f"--batch must be a positive integer, got {args.batch}")
    try:
        train_set, _ = load_dataset(args.data, 0.2, args.seed)
    except DataError as e:
        raise UsageError(f"--data: {e}") from None
    device = pick_device(args.device)
    manual_seed(args.seed)
    try:
        net = build_model(args.model, train_set.in_shape, train_set.num_classes)
    except ValueError as e:
        raise UsageError(f"--model {args.model} does not fit --data {args.data}: {e}") from None
    net.set_impl("auto")
    # the batch: the first `batch` training images, repeated when the set is smaller
    batch_set = train_set.subset(np.arange(args.batch) % len(train_set))
    trainer = Trainer(net, nn.CrossEntropyLoss(), optim.Adam(net.parameters(), lr=1e-3), device)
    return Prepared(args.model, args.data, device, args.batch, net, trainer,
                    DataLoader(batch_set, args.batch), batch_set.images, train_set.in_shape,
                    train_set.num_classes)
