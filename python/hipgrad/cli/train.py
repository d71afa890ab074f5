"""`hipgrad train`: train a model on a data set, writing a checkpoint, history and curves.

    hipgrad train --data digits --model lenet --epochs 15 --device auto --out runs/digits
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .common import Runner, UsageError, pick_device
from .generate import add_lm_train_arguments, run_train_gpt


def add_arguments(p: argparse.ArgumentParser) -> Runner:
    p.add_argument("--data", default="digits",
                   help="digits | mnist:<dir> | fashion-mnist:<dir> | cifar10:<dir> (default digits)")
    p.add_argument("--model", default="lenet", help="mlp | lenet | resnet | gpt (default lenet)")
    p.add_argument("--epochs", type=int, default=15, help="total epochs (default 15)")
    p.add_argument("--device", default="auto", help="auto | cpu | gpu:0 (default auto)")
    p.add_argument("--out", default=None, help="output directory (default runs/<data>-<model>)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 3e-3 for adam/adamw, 0.05 for sgd)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (gpt: 16)")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--scheduler", choices=["cosine", "step", "none"], default="cosine",
                   help="per-epoch learning-rate schedule: cosine to 0 over --epochs, step (x0.1 "
                        "every third of --epochs) or none (default cosine)")
    p.add_argument("--seed", type=int, default=0, help="weights, split and batch order (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="digits only (default 0.2)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--impl", choices=["auto", "handwritten", "vendor"], default="auto",
                   help="which kernels GEMM and convolution run: handwritten, vendor, or auto (the "
                        "fastest candidate, timed once per shape), so pin one for bit-identical runs "
                        "across processes (default auto)")
    p.add_argument("--on-nonfinite", choices=["stop", "skip"], default="stop")
    p.add_argument("--resume", default=None, help="checkpoint (file or run directory) to continue")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_lm_train_arguments(p)
    return run


def make_optimizer(name: str, params: list, lr: float | None, momentum: float, weight_decay: float):
    from .. import optim
    if name == "sgd":
        return optim.SGD(params, lr=0.05 if lr is None else lr, momentum=momentum,
                         weight_decay=weight_decay)
    cls = optim.Adam if name == "adam" else optim.AdamW
    return cls(params, lr=3e-3 if lr is None else lr, weight_decay=weight_decay)


def make_scheduler(name: str, optimizer, epochs: int):
    from .. import optim
    if name == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=epochs)
    if name == "step":
        return optim.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    return None


def _join_mpi(args: argparse.Namespace) -> tuple[int, bool]:
    """(ranks, whether this process writes and logs). Under an MPI launcher (mpiexec -n N with
    N > 1) join the job: --device auto becomes this rank's device and, without --threads, a
    CPU rank takes its share of the cores."""
    size = next((os.environ[k] for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
                 if k in os.environ), "1")
    if not size.isdigit() or int(size) <= 1:
        return 1, True
    from .. import distributed as dist
    try:
        device = dist.init(threads=args.threads is None)
    except dist.DistributedError as e:
        raise UsageError(str(e)) from None
    if args.device == "auto":
        args.device = device
    return dist.world_size(), dist.rank() == 0


def run(args: argparse.Namespace) -> int:
    import hipgrad as hg

    from .. import nn
    from ..data import DataError, DataLoader, load_dataset
    from ..training.checkpoint import CheckpointError
    from ..training.models import MODELS, build_model
    from ..training.trainer import NonFiniteLossError, Trainer

    if args.model == "gpt":
        return run_train_gpt(args, _join_mpi(args))
    if args.batch_size is None:
        args.batch_size = 32
    if args.model not in MODELS:
        raise UsageError(f"unknown model {args.model!r}: expected one of {', '.join(MODELS)}")
    if args.epochs < 1 or args.batch_size < 1:
        raise UsageError("--epochs and --batch-size must be positive")
    ranks, lead = _join_mpi(args)
    if ranks > 1 and args.batch_size < ranks:
        raise UsageError(f"--batch-size {args.batch_size} is the global batch: it must be at least "
                         f"the number of ranks ({ranks})")
    say = print if lead else (lambda *a, **k: None)
    device = pick_device(args.device)
    # Every argument is checked before training starts; a bad one is a usage error naming it.
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be a positive int, got {args.threads}")
    try:
        if args.threads is not None:
            hg.set_num_threads(args.threads)
        train_set, val_set = load_dataset(args.data, args.val_fraction, args.seed)
    except (DataError, ValueError) as e:
        raise UsageError(str(e)) from None
    out = Path(args.out or f"runs/{args.data.partition(':')[0]}-{args.model}")

    hg.manual_seed(args.seed)
    model = build_model(args.model, train_set.in_shape, train_set.num_classes)
    model.set_impl(args.impl)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    try:  # the optimizer's own checks, as --lr / --momentum / --weight-decay
        optimizer = make_optimizer(args.optimizer, trainable, args.lr, args.momentum, args.weight_decay)
    except ValueError as e:
        flag = next((f for k, f in (("lr", "--lr"), ("momentum", "--momentum"),
                                    ("weight_decay", "--weight-decay")) if f"{k} must" in str(e)), None)
        raise UsageError(f"{flag}: {e}" if flag else str(e)) from None
    start_lr = optimizer.lr
    scheduler = make_scheduler(args.scheduler, optimizer, args.epochs)
    trainer = Trainer(model, nn.CrossEntropyLoss(), optimizer, device, scheduler=scheduler,
                      on_nonfinite=args.on_nonfinite)
    trainer.extra = {"data": {"name": args.data, "classes": train_set.classes,
                              "preprocess": train_set.preprocess}}
    loader = DataLoader(train_set, args.batch_size, shuffle=True, seed=args.seed)
    n_params = sum(int(p.data.size) for p in model.parameters())
    say(f"hipgrad train: {args.model} ({n_params:,} parameters) on {args.data} "
          f"({len(train_set)} train / {len(val_set)} val, {train_set.in_shape}), device {device}, "
          f"{args.optimizer} lr {start_lr:g} ({args.scheduler} schedule), batch {args.batch_size}, "
          f"seed {args.seed}" + (f", {ranks} ranks (data-parallel)" if ranks > 1 else ""))
    if args.resume is not None:  # a checkpoint already at --epochs would train nothing
        from ..training.checkpoint import load_checkpoint

        try:
            done = load_checkpoint(args.resume).epoch or 0
        except CheckpointError as e:
            raise UsageError(str(e)) from None
        if done >= args.epochs:
            raise UsageError(f"--epochs {args.epochs}: the checkpoint {args.resume} is already at epoch "
                             f"{done}; --epochs counts the resumed ones, so ask for more than {done}")
    start = time.perf_counter()
    try:
        history = trainer.fit(loader, args.epochs, val=val_set, out_dir=out, resume=args.resume,
                              progress=not args.no_progress, log=print)
    except CheckpointError as e:
        raise UsageError(str(e)) from None
    except NonFiniteLossError as e:
        say(f"hipgrad train: {e}", file=sys.stderr)
        return 1
    if not lead:
        return 0
    seconds = time.perf_counter() - start
    best = max(history, key=lambda r: -1.0 if r.get("val_acc") is None else r["val_acc"])
    summary = {
        "data": args.data, "model": args.model, "spec": model.spec, "device": device,
        "parameters": n_params, "impl": args.impl, "optimizer": args.optimizer, "scheduler": args.scheduler,
        "lr": start_lr, "final_lr": optimizer.lr,
        "batch_size": args.batch_size, "ranks": ranks, "seed": args.seed, "epochs": trainer.epoch,
        "seconds": seconds, "threads": hg.get_num_threads(), "hipgrad_version": hg.__version__,
        "final": history[-1], "best_val_acc": best.get("val_acc"), "best_epoch": best["epoch"],
        "files": ["model.safetensors", "model.json", "history.json", "history.csv", "curve.png"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    last = history[-1]
    print(f"done in {seconds:.1f} s: val accuracy {100 * (last.get('val_acc') or 0):.2f}% "
          f"(best {100 * (best.get('val_acc') or 0):.2f}% at epoch {best['epoch']}); wrote {out}/")
    return 0
