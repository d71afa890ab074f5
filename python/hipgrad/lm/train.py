"""Training a language model: random windows through forward, loss, backward, gradient clipping
and AdamW, step after step, until a step count or a time budget; validation on fixed windows.

    trainer = LMTrainer(model, tokenizer, train_windows, val_windows, lr=1e-3, batch_size=16)
    history = trainer.fit(max_steps=2000, out_dir="runs/pydoc-gpt")

Each evaluation appends a row to the history (train and val loss in nats per token, perplexity,
tokens/s, MFU) and writes the checkpoint (model.safetensors + model.json with the tokenizer, the
step and the optimizer state) atomically, history.json / history.csv, and at the end
curve.png. `resume=` continues a run from its checkpoint: weights, optimizer, step, history.
MFU is the share of the device's measured peak: model FLOPs per token (6 per parameter in the
matrices and embeddings read, plus the attention's 12 * n_layer * T * C) times tokens/s, over
the FLOP/s of a large GEMM timed on the same device when the run starts.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import distributed as dist
from ..training import checkpoint as ckpt
from ..training import parallel, trainer
from ..training.grad_reducer import GradReducer, reduced_backward
from .. import nn, ops
from ..optim import AdamW
from ..tensor import borrow, empty
from ..profiling.tracing import phase
from ..data.text import tokenizer_meta
from ..data.windows import TokenWindows

HISTORY_FIELDS = ["step", "train_loss", "val_loss", "val_ppl", "lr", "tokens_per_s", "mfu",
                  "seconds"]


def flops_per_token(model: Any, t: int) -> float:
    """Training FLOPs per token (forward + backward): 6 per weight in a matrix product (the
    position table is only read, not multiplied), plus attention's 12 * n_layer * T * C."""
    cfg = model.config
    n = sum(int(p.data.size) for _, p in model.named_parameters())
    n -= cfg["block_size"] * cfg["n_embd"]
    return 6.0 * n + 12.0 * cfg["n_layer"] * t * cfg["n_embd"]


def measure_peak_flops(device: str, size: int = 512, reps: int = 5) -> float:
    """FLOP/s of the fastest of `reps` (size x size x size) GEMMs on `device` (after a warm-up)."""
    from ..runtime import synchronize
    a = borrow(np.random.default_rng(0).standard_normal((size, size)).astype(np.float32), device)
    out = empty((size, size), device=device)
    ops.gemm(a, a, out=out)
    best = math.inf
    for _ in range(reps):
        synchronize(device) if device != "cpu" else None
        t0 = time.perf_counter()
        ops.gemm(a, a, out=out)
        synchronize(device) if device != "cpu" else None
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size ** 3 / best


class LMTrainer:
    def __init__(self, model: Any, tokenizer: Any, train: TokenWindows, val: TokenWindows | None,
                 *, lr: float = 1e-3, batch_size: int = 16, weight_decay: float = 0.0,
                 warmup_steps: int = 50, grad_clip: float = 1.0, seed: int = 0,
                 device: str = "cpu", extra: dict | None = None, eval_windows: int = 64,
                 bucket_mb: float = 4.0) -> None:
        model.to(device)
        self.model, self.tokenizer, self.train_data, self.val_data = model, tokenizer, train, val
        self.device, self.batch_size, self.seed = device, int(batch_size), int(seed)
        self.base_lr, self.warmup, self.grad_clip = float(lr), int(warmup_steps), float(grad_clip)
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.optimizer = AdamW(self.params, lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
        self.loss = nn.CrossEntropyLoss()
        self.step = 0
        self.history: list[dict] = []
        self.extra = dict(extra or {})
        self.eval_windows = int(eval_windows)
        self.peak_flops: float | None = None
        self.reducer = None
        if parallel.active():
            parallel.sync_model(model)
            self.reducer = GradReducer([p for _, p in self.params][::-1], bucket_mb)

    def lr_at(self, progress: float) -> float:
        """Linear warm-up over `warmup_steps`, then cosine decay to a tenth by the end
        (progress: the share of the step or time budget used)."""
        if self.step < self.warmup:
            return self.base_lr * (self.step + 1) / self.warmup
        cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))
        return self.base_lr * (0.1 + 0.9 * cos)

    def train_step(self, x_np: np.ndarray, y_np: np.ndarray) -> float:
        """One step: the five phases of training on one batch of windows; returns the loss."""
        self.model.train()
        n_global = len(x_np)
        if self.reducer is not None:         # this rank's rows of the global batch
            lo, hi = parallel.rows(n_global)
            x_np, y_np = x_np[lo:hi], y_np[lo:hi]
        with phase("data"):
            x = borrow(x_np, device=self.device)
            y = borrow(y_np, device=self.device)
        with phase("forward"):
            logits = self.model(x)
        with phase("loss"):
            loss = self.loss(logits, y)
            if self.reducer is not None:     # the global batch's mean loss, on every rank
                loss = dist.allreduce_values([loss * len(x_np)])[0] / n_global
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite loss ({loss}) at step {self.step + 1}; no update "
                                     "was applied (lower --lr)")
        with phase("backward"):
            self.model.zero_grad()
            reduced_backward(self.reducer, self.model, self.loss, len(x_np) / n_global)
        with phase("update"):
            grads = [p.grad for _, p in self.params if p.grad is not None]
            if grads:
                ops.clip_grad_norm_(grads, self.grad_clip)
            self.optimizer.step()
        self.step += 1
        return loss

    def evaluate(self, data: TokenWindows | None = None) -> float:
        """Mean loss (nats per token) over the fixed validation windows, in eval mode."""
        data = data if data is not None else self.val_data
        if data is None:
            return float("nan")
        self.model.eval()
        total, count = 0.0, 0
        for x_np, y_np in data.val_batches(self.batch_size, self.eval_windows):
            if parallel.active():            # this rank's rows; the sums are all-reduced
                lo, hi = parallel.rows(len(y_np)) if len(y_np) >= dist.world_size() else (0, 0)
                x_np, y_np = x_np[lo:hi], y_np[lo:hi]
                if not len(y_np):
                    continue
            logits = self.model(borrow(x_np, device=self.device))
            total += self.loss(logits, borrow(y_np, device=self.device)) * y_np.size
            count += y_np.size
        self.model.train()
        if parallel.active():
            total, count = dist.allreduce_values([total, count])
        return total / count

    def fit(self, *, max_steps: int | None = None, max_minutes: float | None = None,
            eval_interval: int = 100, out_dir: str | Path | None = None,
            resume: str | Path | None = None, log: Callable[[str], None] | None = print,
            progress: bool = True) -> list[dict]:
        if max_steps is None and max_minutes is None:
            raise ValueError("fit: give max_steps or max_minutes")
        if resume is not None:
            self.resume_from(resume)
        lead = not parallel.active() or dist.rank() == 0   # the rank that writes and logs
        if not lead:
            log, progress = None, False
        out = Path(out_dir) if out_dir is not None and lead else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        self.peak_flops = measure_peak_flops(self.device)
        if parallel.active():                # the job's peak: every rank's device
            self.peak_flops = dist.allreduce_values([self.peak_flops])[0]
        fpt = flops_per_token(self.model, self.train_data.block_size)
        budget = None if max_minutes is None else 60.0 * float(max_minutes)
        if log:
            log(f"{'step':>6}  {'train loss':>10}  {'val loss':>8}  {'val ppl':>8}  {'lr':>8}  "
                f"{'tokens/s':>9}  {'MFU':>6}")
        bar = _bar(max_steps, progress)
        start = time.perf_counter()
        window_t0, window_tokens, losses = start, 0, []
        while True:
            elapsed = time.perf_counter() - start
            if budget is not None and parallel.active():   # one clock for all ranks: they agree
                elapsed = dist.allreduce_values([elapsed])[0] / dist.world_size()  # on when to stop
            done = ((max_steps is not None and self.step >= max_steps)
                    or (budget is not None and elapsed >= budget))
            if not done:
                frac = max(self.step / max_steps if max_steps else 0.0,
                           elapsed / budget if budget else 0.0)
                self.optimizer.lr = self.lr_at(frac)
                x, y = self.train_data.random_batch(self.batch_size, self.seed, self.step)
                losses.append(self.train_step(x, y))
                window_tokens += x.size
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if losses and (done or self.step % eval_interval == 0):
                seconds = time.perf_counter() - window_t0
                tps = window_tokens / seconds if seconds > 0 else float("nan")
                val = self.evaluate()
                row = {"step": self.step, "train_loss": float(np.mean(losses)), "val_loss": val,
                       "val_ppl": math.exp(val) if math.isfinite(val) else None,
                       "lr": self.optimizer.lr, "tokens_per_s": tps,
                       "mfu": tps * fpt / self.peak_flops, "seconds": time.perf_counter() - start}
                self.history.append(row)
                if log:
                    log(format_row(row))
                if out is not None:
                    self.save(out / ckpt.WEIGHTS_NAME)
                    save_history(self.history, out)
                if parallel.active():
                    dist.barrier()           # the checkpoint exists before any rank goes on
                window_t0, window_tokens, losses = time.perf_counter(), 0, []
            if done:
                break
        if bar is not None:
            bar.close()
        if out is not None and self.history:
            save_curve(self.history, out / "curve.png")
        return self.history

    def save(self, path: str | Path) -> Path:
        extra = {**self.extra, "tokenizer": tokenizer_meta(self.tokenizer), "step": self.step}
        return ckpt.save_checkpoint(path, self.model, optimizer=self.optimizer, epoch=self.step,
                                    history=self.history, extra=extra)

    def resume_from(self, path: str | Path) -> None:
        c = ckpt.load_checkpoint(path)
        spec = getattr(self.model, "spec", None)
        if spec is not None and c.spec is not None and c.spec != spec:
            raise ckpt.CheckpointError(f"{c.path}: checkpoint is for model {c.spec}, not {spec}")
        c.restore(self.model, self.optimizer)
        self.step, self.history = int(c.extra.get("step", c.epoch)), c.history
        if parallel.active():                # every rank read the same file (any number of ranks)
            parallel.check_weights(self.model)


def _bar(total: int | None, enabled: bool) -> Any:
    import sys
    if not (enabled and sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", leave=False)


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def format_row(r: dict) -> str:
    return (f"{r['step']:>6}  {_fmt(r['train_loss'], '.4f'):>10}  {_fmt(r['val_loss'], '.4f'):>8}  "
            f"{_fmt(r['val_ppl'], '.2f'):>8}  {_fmt(r['lr'], '.2e'):>8}  "
            f"{_fmt(r['tokens_per_s'], ',.0f'):>9}  {_fmt(100 * r['mfu'], '.1f'):>5}%")


def save_history(history: list[dict], out: Path) -> None:
    trainer.save_history(history, out, HISTORY_FIELDS)


def save_curve(history: list[dict], path: Path) -> bool:
    """Train and val loss (nats per token) against the step, as a PNG (False without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps = [r["step"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train_loss", "val_loss"):
        ax.plot(steps, [np.nan if r.get(key) is None else r[key] for r in history], marker="o",
                label=key.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
