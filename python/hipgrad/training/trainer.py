"""The training loop: batches through forward, loss, backward and the optimizer step, epoch
after epoch, with validation, history, curves and checkpoints.

    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), 1e-3), "cpu")
    history = trainer.fit(DataLoader(train, 32, shuffle=True), epochs=15, val=val, out_dir="runs/x")

`Trainer.train_epoch` is the whole of training in one place; each step is marked with
`hg.phase` so `hg.trace()` shows where the time goes. A non-finite loss stops the run with an
error naming the epoch and step (or, with on_nonfinite="skip", skips that step's update);
checkpoints never hold non-finite weights. With `out_dir`, every epoch writes
model.safetensors + model.json (see checkpoint.py), history.json and history.csv, and the
run ends with curve.png; `resume=` continues a run from its checkpoint exactly.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable

import numpy as np

from . import checkpoint as ckpt
from . import parallel
from .grad_reducer import GradReducer, reduced_backward
from .. import distributed as dist
from ..data import DataLoader, Dataset
from ..profiling.tracing import phase
from ..tensor import borrow, empty, tensor


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; `epoch` and `step` say where."""

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step


HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                  "skipped_steps"]


def _progress_bar(iterable: Iterable, total: int, desc: str, enabled: bool) -> Iterable:
    """A tqdm bar on a terminal when `enabled`; the plain iterable otherwise (or without tqdm)."""
    if not (enabled and sys.stderr.isatty()):
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, unit="batch")


def _accuracy_count(logits: Any, labels: np.ndarray) -> int | None:
    """How many rows' argmax equals the integer label (None for non-class targets)."""
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        return None
    return int(np.count_nonzero(np.asarray(logits.numpy()).argmax(axis=1) == labels))


class _BufferKeeper:
    """A copy of a model's buffers (BatchNorm running statistics) and batch counters, taken
    before each forward and put back when the step's loss is not finite, so that neither
    on_nonfinite mode leaves a skipped batch in the model. Copies on the buffers' device into
    tensors made once; nothing for a model without buffers."""

    def __init__(self, model: Any) -> None:
        bufs = [b for _, b in model.named_buffers()] if hasattr(model, "named_buffers") else []
        self.pairs = [(b, empty(list(b.shape), device=b.device, dtype=b.dtype)) for b in bufs]
        mods = model.modules() if hasattr(model, "modules") else []
        self.counters = [m for m in mods if hasattr(m, "num_batches_tracked")]
        self.counts: list[int] = []

    def save(self) -> None:
        for b, copy in self.pairs:
            copy.copy_(b)
        self.counts = [m.num_batches_tracked for m in self.counters]

    def restore(self) -> None:
        for b, copy in self.pairs:
            b.copy_(copy)
        for m, n in zip(self.counters, self.counts):
            m.num_batches_tracked = n


class Trainer:
    """Trains `model` with `loss` and `optimizer` on `device`.

    loss(pred, target) returns a Python float and loss.backward() the gradient of the loss with
    respect to pred; the scheduler, if any, steps once per epoch. `max_grad_norm` clips the
    gradients' global L2 norm before each update.

    Under MPI (hipgrad.distributed.init() with world_size() > 1) the trainer is data-parallel
    (see training/parallel.py): each rank takes its rows of every global batch, gradients are
    averaged in buckets of `bucket_mb` MiB during the backward, logs show global figures and
    rank 0 alone writes files.
    """

    def __init__(self, model: Any, loss: Any, optimizer: Any, device: str = "cpu",
                 scheduler: Any = None, on_nonfinite: str = "stop",
                 max_grad_norm: float | None = None, bucket_mb: float = 4.0) -> None:
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive or None, got {max_grad_norm!r}")
        model.to(device)
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.device = device
        self.scheduler = scheduler
        self.on_nonfinite = on_nonfinite
        self.epoch = 0                      # epochs completed
        self.history: list[dict] = []
        self.extra: dict = {}               # stored with each checkpoint (e.g. data preprocessing)
        self.max_grad_norm = max_grad_norm
        self.reducer = None
        if parallel.active():
            parallel.sync_model(model)
            self.reducer = GradReducer(list(model.parameters())[::-1], bucket_mb)

    def train_epoch(self, loader: DataLoader, epoch: int, progress: bool = False) -> dict:
        """One pass over `loader`: the five steps of training for every batch."""
        self.model.train()
        keep = _BufferKeeper(self.model)
        loss_sum, correct, seen, counted, skipped = 0.0, 0, 0, 0, 0
        batches = _progress_bar(loader, len(loader), f"epoch {epoch}", progress)
        for step, (x_np, y_np) in enumerate(batches, start=1):
            n_global = len(y_np)
            if self.reducer is not None:     # this rank's rows of the global batch
                lo, hi = parallel.rows(n_global)
                x_np, y_np = x_np[lo:hi], y_np[lo:hi]
            # 1. data: take a batch onto the device (a copy; on the CPU the batch is wrapped)
            with phase("data"):
                x = borrow(x_np, device=self.device)
                y = borrow(y_np, device=self.device, dtype=y_np.dtype)
            keep.save()  # a skipped step leaves BatchNorm's running statistics as they were
            # 2. forward: the model's prediction for the batch
            with phase("forward"):
                pred = self.model(x)
            # 3. loss: one number saying how wrong the prediction is
            with phase("loss"):
                loss = self.loss(pred, y)
                if self.reducer is not None:  # the global batch's mean loss, on every rank
                    loss = dist.allreduce_values([loss * len(y_np)])[0] / n_global
            if not math.isfinite(loss):
                keep.restore()  # the forward already folded this batch into running statistics
                if self.on_nonfinite == "stop":
                    raise NonFiniteLossError(
                        f"non-finite loss ({loss}) at epoch {epoch}, step {step} of {len(loader)}; "
                        "no update was applied and no checkpoint of it was written (lower the "
                        "learning rate, or pass on_nonfinite='skip')", epoch, step)
                skipped += 1
                continue
            # 4. backward: gradients of the loss for every parameter, from the output back
            with phase("backward"):
                self.model.zero_grad()
                reduced_backward(self.reducer, self.model, self.loss, len(y_np) / n_global)
                if self.max_grad_norm is not None:
                    parallel.clip_grad_norm(list(self.model.parameters()), self.max_grad_norm)
            # 5. update: the optimizer moves each parameter against its gradient
            with phase("update"):
                self.optimizer.step()
            n = len(y_np)
            loss_sum += loss * n_global
            seen += n_global
            hits = _accuracy_count(pred, y_np)
            if hits is not None:
                correct += hits
                counted += n
        if self.reducer is not None:
            correct, counted = (int(v) for v in dist.allreduce_values([correct, counted]))
        return {"train_loss": loss_sum / seen if seen else float("nan"),
                "train_acc": correct / counted if counted else None, "skipped_steps": skipped}

    def evaluate(self, data: DataLoader | Dataset, batch_size: int = 256) -> dict:
        """Mean loss and accuracy over `data` in eval mode (no gradients, no updates)."""
        loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size)
        was_training = getattr(self.model, "training", True)
        self.model.eval()
        loss_sum, correct, seen, counted = 0.0, 0, 0, 0
        for x_np, y_np in loader:
            if parallel.active():
                lo, hi = parallel.rows(len(y_np)) if len(y_np) >= dist.world_size() else (0, 0)
                x_np, y_np = x_np[lo:hi], y_np[lo:hi]
                if not len(y_np):
                    continue
            pred = self.model(tensor(x_np, device=self.device))
            loss_sum += self.loss(pred, tensor(y_np, device=self.device, dtype=y_np.dtype)) * len(y_np)
            seen += len(y_np)
            hits = _accuracy_count(pred, y_np)
            if hits is not None:
                correct += hits
                counted += len(y_np)
        if was_training:
            self.model.train()
        if parallel.active():
            loss_sum, seen, correct, counted = dist.allreduce_values([loss_sum, seen, correct, counted])
            correct, counted = int(correct), int(counted)
        return {"loss": loss_sum / seen if seen else float("nan"),
                "acc": correct / counted if counted else None}

    def fit(self, train: DataLoader, epochs: int, val: DataLoader | Dataset | None = None,
            out_dir: str | Path | None = None, resume: str | Path | None = None,
            progress: bool = True, log: Callable[[str], None] | None = None) -> list[dict]:
        """Train until `epochs` epochs are complete (counting those of a resumed run).

        Per epoch: train loss and accuracy, val loss and accuracy (if `val`), the learning rate
        used, seconds. Returns the history; with `out_dir` also writes it (history.json/.csv),
        the checkpoint after every epoch and curve.png at the end. `progress` shows a bar on a
        terminal and prints one table row per epoch; `log` (a function taking a line) receives
        the rows instead of print, and gets them even when progress is False.
        """
        if not isinstance(train, DataLoader):
            raise TypeError(f"fit: train must be a DataLoader, got {type(train).__name__}")
        if resume is not None:
            self.resume_from(resume)
        lead = not parallel.active() or dist.rank() == 0   # the rank that writes and logs
        out = Path(out_dir) if out_dir is not None else None
        if out is not None and lead:
            out.mkdir(parents=True, exist_ok=True)
        say = log if log is not None else (print if progress else None)
        if not lead:
            say, progress = None, False
        if say is not None and self.epoch < epochs:
            say(format_header())
        for epoch in range(self.epoch + 1, int(epochs) + 1):
            start = time.perf_counter()
            lr = float(getattr(self.optimizer, "lr", float("nan")))
            train.set_epoch(epoch - 1)       # the batch order depends on (seed, epoch) only
            row: dict[str, Any] = {"epoch": epoch, **self.train_epoch(train, epoch, progress)}
            if val is not None:
                v = self.evaluate(val)
                row["val_loss"], row["val_acc"] = v["loss"], v["acc"]
            if self.scheduler is not None:
                self.scheduler.step()
            row["lr"] = lr
            row["seconds"] = time.perf_counter() - start
            self.history.append(row)
            self.epoch = epoch
            if out is not None and lead:
                self.save(out / ckpt.WEIGHTS_NAME)
                save_history(self.history, out)
            if parallel.active():
                dist.barrier()   # the checkpoint exists before any rank goes on
            if say is not None:
                say(format_row(row))
        if out is not None and self.history and lead:
            save_curves(self.history, out / "curve.png", log=say or print)
        return self.history

    def save(self, path: str | Path) -> Path:
        """A checkpoint of the model, optimizer, scheduler, RNG, epoch and history."""
        return ckpt.save_checkpoint(path, self.model, optimizer=self.optimizer,
                                    scheduler=self.scheduler, epoch=self.epoch,
                                    history=self.history, extra=self.extra)

    def resume_from(self, path: str | Path) -> None:
        """Continue from a checkpoint: weights, optimizer, scheduler, RNG, epoch, history."""
        c = ckpt.load_checkpoint(path)
        spec = getattr(self.model, "spec", None)
        if spec is not None and c.spec is not None and c.spec != spec:
            raise ckpt.CheckpointError(f"{c.path}: checkpoint is for model {c.spec}, not {spec}")
        c.restore(self.model, self.optimizer, self.scheduler)
        self.epoch, self.history = c.epoch, c.history
        if parallel.active():     # every rank read the same file (any number of ranks)
            parallel.check_weights(self.model)


def format_header() -> str:
    return (f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'val loss':>9}  {'val acc':>8}"
            f"  {'lr':>8}  {'time s':>7}")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_row(row: dict) -> str:
    skipped = f"  ({row['skipped_steps']} steps skipped)" if row.get("skipped_steps") else ""
    return (f"{row['epoch']:>5}  {_num(row.get('train_loss'), '.4f'):>10}  "
            f"{_pct(row.get('train_acc')):>9}  {_num(row.get('val_loss'), '.4f'):>9}  "
            f"{_pct(row.get('val_acc')):>8}  {_num(row.get('lr'), '.2e'):>8}  "
            f"{row.get('seconds', 0.0):>7.2f}{skipped}")


def save_history(history: list[dict], out_dir: str | Path,
                 fields: list[str] = HISTORY_FIELDS) -> None:
    """history.json (a list of per-epoch or per-step dicts) and history.csv (one row each, the
    columns `fields`)."""
    out = Path(out_dir)
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
             for r in history]
    (out / "history.json").write_text(json.dumps(clean, indent=1) + "\n")
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in clean:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})


def save_curves(history: list[dict], path: str | Path, log: Callable[[str], None] = print) -> bool:
    """Loss and accuracy per epoch, train vs val, as a PNG; False (and a message) without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        log(f"{path} not written: matplotlib is not installed (pip install matplotlib)")
        return False
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        for split in ("train", "val"):
            vals = [r.get(f"{split}_{key}") for r in history]
            if any(v is not None for v in vals):
                ax.plot(epochs, [np.nan if v is None else v for v in vals], marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
