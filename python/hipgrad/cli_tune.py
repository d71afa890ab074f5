"""`hipgrad tune`: time every (op, shape) a model uses once, ahead of time, and keep the choices.

    hipgrad tune --model lenet --batch 256 --data digits --precision both

impl="auto" picks between kernel variants by timing each the first time it meets a shape (see
hipgrad.tuning). This command meets all of a model's shapes at once: one training step (forward,
loss, backward, update, as `Trainer` runs it) and one inference pass through `InferenceEngine`
(fp32, int8 or both), then writes the tuning cache and prints the choices. A later process
loads the cache at import and times nothing; a second `hipgrad tune` shows that ("0 timed").

`prepare()` is shared with `hipgrad explain` (cli_explain.py): argument checks, data, model.
"""

from __future__ import annotations

import argparse
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import hipgrad as hg

Runner = Callable[[argparse.Namespace], int]
WIDTH = 100


def add_model_arguments(p: argparse.ArgumentParser, batch: int) -> None:
    """The arguments `tune` and `explain` share."""
    p.add_argument("--model", default="lenet", help="mlp | lenet | resnet (default lenet)")
    p.add_argument("--batch", type=int, default=batch, help=f"batch size (default {batch})")
    p.add_argument("--data", default="digits",
                   help="the data set whose input shape and classes the model is built for: digits "
                        "| mnist:<dir> | fashion-mnist:<dir> | cifar10:<dir> (default digits)")
    p.add_argument("--device", default="auto", help="auto | cpu | gpu:0 (default auto)")
    p.add_argument("--seed", type=int, default=0, help="weights and batch (default 0)")


def add_tune_command(p: argparse.ArgumentParser) -> Runner:
    add_model_arguments(p, batch=256)
    p.add_argument("--precision", choices=["fp32", "int8", "both"], default="both",
                   help="which inference pass to tune besides the training step (default both)")
    return run_tune


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
        from .infer import InferenceEngine

        engine = InferenceEngine.from_model(self.net, device=self.device, precision=precision)
        if precision == "int8":
            engine.calibrate([self.x_np])
        return engine


def prepare(args: argparse.Namespace) -> Prepared:
    """Check the shared arguments (UsageError naming the argument), load the data's shapes and
    build the model on the device with an Adam optimizer and a one-batch loader."""
    import hipgrad as hg

    from . import nn, optim
    from .cli import UsageError, pick_device
    from .data import DataError, DataLoader, load_dataset
    from .models import MODELS, build_model
    from .train import Trainer

    if args.model not in MODELS:
        raise UsageError(f"--model: unknown model {args.model!r}: expected one of {', '.join(MODELS)}")
    if args.batch < 1:
        raise UsageError(f"--batch must be a positive integer, got {args.batch}")
    try:
        train_set, _ = load_dataset(args.data, 0.2, args.seed)
    except DataError as e:
        raise UsageError(f"--data: {e}") from None
    device = pick_device(args.device)
    hg.manual_seed(args.seed)
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


def _device_key(r: dict) -> str:
    """A trace record's (device, shape key) as the tuning report spells it: CPU choices are kept
    per thread count (the traced code ran with this process's count)."""
    dev = r["device"]
    threads = f"threads={hg.get_num_threads()}," if dev.startswith("cpu") else ""
    return f"{dev}|{threads}{r['key']}"


def shapes_used(ops: list[dict], report: list[dict]) -> tuple[list[dict], set[tuple[str, str]]]:
    """From a trace's records and the tuning report: the report rows for the (op, shape) pairs
    the traced code ran with impl="auto" choices, and the pairs it timed (tuning runs)."""
    ran = {(r["op"], _device_key(r)) for r in ops if not r["tuning"]}
    timed = {(r["op"], _device_key(r)) for r in ops if r["tuning"]}
    rows = [r for r in report if (r["op"], r["key"]) in ran | timed]
    return rows, timed


def _candidate_times(row: dict) -> list[tuple[str, float]]:
    """Every candidate's time in a report row, whatever form the row gives them in: a
    `candidates` field (a mapping name -> ms, or a list of dicts) and `<name>_ms` fields."""
    out: dict[str, float] = {}
    cands = row.get("candidates")
    if isinstance(cands, dict):
        items = [(str(k), v.get("ms") if isinstance(v, dict) else v) for k, v in cands.items()]
    elif isinstance(cands, (list, tuple)):
        items = [(str(c.get("name") or c.get("impl") or c.get("variant") or i),
                  c.get("ms", c.get("time_ms"))) if isinstance(c, dict) else (str(c), None)
                 for i, c in enumerate(cands)]
    else:
        items = []
    for name, ms in items:
        out[name] = float("nan") if ms is None else float(ms)
    if not out:  # only the per-variant fields (handwritten_ms, vendor_ms): those, by variant
        for k, v in row.items():
            if k.endswith("_ms") and isinstance(v, (int, float)):
                out[k[:-3]] = float(v)
    return list(out.items())


def format_report(rows: list[dict], timed: set[tuple[str, str]] | None = None,
                  width: int = WIDTH) -> str:
    """The choices as a table grouped by op: shape key, chosen variant, each candidate's ms
    (* marks the chosen kernel, or the chosen variant where a row names no kernel), and whether
    this run timed it or the cache supplied it."""
    known = {"op", "key", "chosen", "candidates"}
    lines = [f"{'op / shape key':<{width - 22}}{'chosen':>12}{'source':>10}", "-" * width]
    for op in sorted({r["op"] for r in rows}):
        lines.append(op)
        for r in sorted((r for r in rows if r["op"] == op), key=lambda r: r["key"]):
            shape = re.sub(r"^threads=\d+,", "", r["key"].split("|", 1)[-1])  # in the header
            source = "" if timed is None else ("timed" if (r["op"], r["key"]) in timed else "cache")
            head = textwrap.wrap(shape, width - 24, break_on_hyphens=False) or [""]
            lines.append(f"  {head[0]:<{width - 24}}{r.get('chosen', '?'):>12}{source:>10}")
            lines += [f"    {h}" for h in head[1:]]
            winner = r.get("kernel", r.get("chosen"))
            times = ", ".join(f"{n}{'*' if n == winner else ''} {ms:.3f} ms"
                              for n, ms in _candidate_times(r))
            extra = ", ".join(f"{k}={v}" for k, v in r.items()
                              if k not in known and not k.endswith("_ms"))
            text = "; ".join(s for s in (times, extra) if s)
            if text:
                lines += textwrap.wrap(text, width, initial_indent="      ",
                                       subsequent_indent="        ")
    return "\n".join(lines)


def run_tune(args: argparse.Namespace) -> int:
    import hipgrad as hg

    from . import tuning
    from .cli import UsageError

    if os.environ.get("HIPGRAD_NO_TUNING_CACHE") == "1":
        raise UsageError("HIPGRAD_NO_TUNING_CACHE=1 turns the tuning cache off; unset it to tune")
    if os.environ.get("HIPGRAD_IMPL", "auto") not in ("", "auto"):
        raise UsageError(f"HIPGRAD_IMPL={os.environ['HIPGRAD_IMPL']} pins every op to one variant, "
                         "so there is nothing to tune; unset it")
    prep = prepare(args)
    precisions = ["fp32", "int8"] if args.precision == "both" else [args.precision]
    print(f"hipgrad tune: {prep.name} for {args.data} {prep.in_shape}, batch {prep.batch}, "
          f"device {prep.device}, {hg.get_num_threads()} threads; inference {', '.join(precisions)}")
    with hg.trace() as t:
        prep.train_step()
        for precision in precisions:
            engine = prep.engine(precision)
            with hg.phase("forward"):
                engine.forward(prep.x_np)
    hg.synchronize(prep.device)
    rows, timed = shapes_used(t.ops, hg.tuning_report())
    path = tuning.save(prep.device)
    print()
    print(format_report(rows, timed))
    print()
    timed_now = sum((r["op"], r["key"]) in timed for r in rows)
    print(f"{len(rows)} shapes with a choice for impl=\"auto\": {len(rows) - timed_now} already "
          f"tuned (from the cache), {timed_now} timed now")
    single = sorted({r["op"] for r in t.ops} - {r["op"] for r in rows})
    if single:
        print(*textwrap.wrap("ran with one variant only (nothing to choose): " + ", ".join(single),
                             WIDTH, subsequent_indent="  "), sep="\n")
    if path is None:
        print("nothing to save: no op here has more than one variant to choose from")
    else:
        held = sum(r["key"].split("|", 1)[0] == prep.device for r in hg.tuning_report())
        print(f"tuning cache ({held} choices for {prep.device} in all):\n  {path}")
    return 0


__all__ = ["add_model_arguments", "add_tune_command", "format_report", "prepare", "shapes_used"]
