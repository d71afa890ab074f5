"""`hipgrad finetune`: start from a checkpoint, train more on new data, write a new run, and
report what changed: the weights digest before and after, each layer's relative change, and the
validation loss on the old and the new data before and after (adaptation versus forgetting).

    hipgrad finetune runs/pydoc-gpt --data text:notes.md --freeze transformer.h.0 --out runs/notes
    hipgrad finetune runs/digits --data digits --freeze 0 --epochs 2 --out runs/digits-ft

A language model keeps its tokenizer; an image model keeps its preprocessing. The source run is
never written to: an --out that resolves to it is refused before any work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .common import Runner, UsageError, output_path, pick_device



def add_arguments(p: argparse.ArgumentParser) -> Runner:
    p.add_argument("checkpoint", metavar="RUN", help="the checkpoint to start from (run directory or .safetensors)")
    p.add_argument("--data", required=True,
                   help="the new data: text:PATH | pydoc (a language model); digits | mnist:<dir> "
                        "| ... (an image model)")
    p.add_argument("--out", required=True, help="the new run's directory (never the source)")
    p.add_argument("--freeze", default=None,
                   help="comma-separated layer names whose weights stay fixed, e.g. "
                        "transformer.h.0,transformer.wpe (gpt) or 0,3 (lenet)")
    p.add_argument("--model", default=None, help="check that RUN holds this model (e.g. gpt, lenet)")
    p.add_argument("--lr", type=float, default=None, help="default 3e-4 (gpt), 1e-3 (images)")
    p.add_argument("--max-steps", type=int, default=None, help="gpt: steps (default 100)")
    p.add_argument("--max-minutes", type=float, default=None, help="gpt: time budget")
    p.add_argument("--epochs", type=int, default=3, help="image models: epochs (default 3)")
    p.add_argument("--batch-size", type=int, default=None, help="default 16 (gpt), 32 (images)")
    p.add_argument("--eval-interval", type=int, default=50, help="gpt: steps between evals")
    p.add_argument("--device", default="auto", help="auto | cpu | gpu:0 (default auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return run


def state_digest(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def layer_changes(before: dict, after: dict, names: list[str]) -> "OrderedDict[str, float]":
    """||after - before|| / ||before|| per layer (the parameter name without its last part)."""
    sums: "OrderedDict[str, list[float]]" = OrderedDict()
    for k in names:
        layer = k.rsplit(".", 1)[0]
        d, w = after[k].astype(np.float64) - before[k], before[k].astype(np.float64)
        acc = sums.setdefault(layer, [0.0, 0.0])
        acc[0] += float((d * d).sum())
        acc[1] += float((w * w).sum())
    return OrderedDict((k, math.sqrt(a) / math.sqrt(b) if b > 0 else math.sqrt(a))
                       for k, (a, b) in sums.items())


def _same_run(src: Path, out: str) -> bool:
    from ..training.checkpoint import resolve_paths
    sw, ss = resolve_paths(src, reading=True)
    ow, os_ = resolve_paths(out)
    return any(a.resolve() == b.resolve() for a in (sw, ss) for b in (ow, os_))


def run(args: argparse.Namespace) -> int:
    import hipgrad as hg

    from ..training.checkpoint import CheckpointError, freeze, load_checkpoint

    try:
        c = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        raise UsageError(f"RUN {args.checkpoint}: {e}") from None
    if _same_run(c.path, args.out):
        raise UsageError(f"--out {args.out} is the source checkpoint {c.path}: fine-tuning writes a "
                         "new run and never overwrites its source; pick another --out")
    name = (c.spec or {}).get("name")
    if args.model is not None and args.model != name:
        raise UsageError(f"--model {args.model}: RUN {args.checkpoint} holds a {name!r} model")
    output_path(args.out, "--out", directory=True)
    device = pick_device(args.device)
    hg.manual_seed(args.seed)
    model = c.build_model(device)
    layers = [s.strip() for s in (args.freeze or "").split(",") if s.strip()]
    if args.freeze is not None and not layers:
        raise UsageError("--freeze names no layer: give comma-separated layer names")
    try:
        frozen = freeze(model, layers)
    except ValueError as e:
        raise UsageError(f"--freeze: {e}") from None
    before = {k: v.copy() for k, v in model.state_dict().items()}
    digest_before = state_digest(model)
    if name == "gpt":
        report = _finetune_lm(args, c, model, device)
    else:
        report = _finetune_images(args, c, model, device)
    trained = [k for k, p in model.named_parameters() if p.requires_grad]
    changes = layer_changes(before, model.state_dict(), [k for k, _ in model.named_parameters()])
    digest_after = state_digest(model)
    print(f"\nweights digest: before {digest_before[:16]}, after {digest_after[:16]} "
          f"({'changed' if digest_after != digest_before else 'unchanged'}); "
          f"{len(frozen)} frozen, {len(trained)} trained tensors")
    print(f"{'layer':<34} {'relative change':>15}")
    for layer, r in changes.items():
        print(f"{layer:<34} {r:>15.3e}")
    print(f"\n{'validation loss':<34} {'before':>10} {'after':>10}")
    for label, (b, a) in report["val"].items():
        print(f"{label:<34} {b:>10.4f} {a:>10.4f}")
    summary = {"source": str(c.path), "data": args.data, "frozen": frozen,
               "digest_before": digest_before, "digest_after": digest_after,
               "relative_change": changes, "val_loss": {k: {"before": b, "after": a}
                                                         for k, (b, a) in report["val"].items()}}
    (Path(args.out) / "finetune.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out}/ (the source {c.path} is unchanged)")
    return 0


def _finetune_lm(args, c, model, device) -> dict:
    from ..data.text import tokenizer_from_meta
    from ..lm.train import LMTrainer
    from .generate import lm_data
    try:
        tok = tokenizer_from_meta(c.extra.get("tokenizer"), f"RUN {args.checkpoint}")
    except (ValueError, ImportError) as e:
        raise UsageError(str(e)) from None
    block = model.config["block_size"]
    train, val, _ = lm_data(args.data, tok, block)
    old_name = (c.extra.get("data") or {}).get("name")
    old_val = lm_data(old_name, tok, block)[1] if old_name else None
    if args.max_steps is None and args.max_minutes is None:
        args.max_steps = 100
    trainer = LMTrainer(model, tok, train, val, lr=args.lr or 3e-4, batch_size=args.batch_size or 16,
                        warmup_steps=10, seed=args.seed, device=device,
                        extra={"data": {"name": args.data}, "finetuned_from": str(c.path)})
    sets = [(f"old data ({old_name})", old_val)] if old_val is not None else []
    sets.append((f"new data ({args.data})", val))
    before = [trainer.evaluate(d) for _, d in sets]
    print(f"hipgrad finetune: gpt from {c.path} on {args.data} ({len(train):,} train tokens), "
          f"lr {trainer.base_lr:g}, device {device}")
    trainer.fit(max_steps=args.max_steps, max_minutes=args.max_minutes,
                eval_interval=args.eval_interval, out_dir=args.out, progress=not args.no_progress)
    after = [trainer.evaluate(d) for _, d in sets]
    return {"val": OrderedDict((label, (b, a)) for (label, _), b, a in zip(sets, before, after))}


def _finetune_images(args, c, model, device) -> dict:
    from .. import nn, optim
    from ..data import DataError, DataLoader, load_dataset
    from ..training.trainer import Trainer
    try:
        train, val = load_dataset(args.data, 0.2, args.seed)
    except (DataError, ValueError) as e:
        raise UsageError(f"--data: {e}") from None
    old_name = (c.extra.get("data") or {}).get("name")
    old_val = load_dataset(old_name, 0.2, args.seed)[1] if old_name else None
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(params, lr=args.lr or 1e-3), device)
    trainer.extra = {**c.extra, "finetuned_from": str(c.path)}
    sets = [(f"old data ({old_name})", old_val)] if old_val is not None else []
    sets.append((f"new data ({args.data})", val))
    before = [trainer.evaluate(d)["loss"] for _, d in sets]
    print(f"hipgrad finetune: {c.spec.get('name')} from {c.path} on {args.data}, {args.epochs} epochs")
    trainer.fit(DataLoader(train, args.batch_size or 32, shuffle=True, seed=args.seed), args.epochs,
                val=val, out_dir=args.out, progress=not args.no_progress, log=print)
    after = [trainer.evaluate(d)["loss"] for _, d in sets]
    return {"val": OrderedDict((label, (b, a)) for (label, _), b, a in zip(sets, before, after))}
