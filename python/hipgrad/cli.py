"""The `hipgrad` command (also `python -m hipgrad`).

    hipgrad train --data digits --model lenet --epochs 15 --device auto --out runs/digits

Subcommands are registered in COMMANDS: a name maps to a function that adds its arguments to
an argparse sub-parser and returns the function that runs it (args -> exit code). Errors a
user can fix (unknown data, bad paths, bad checkpoints) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from collections.abc import Callable, Sequence

Runner = Callable[[argparse.Namespace], int]


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
    import hipgrad as hg
    available = hg.devices()
    if requested == "auto":
        return "gpu:0" if "gpu:0" in available else "cpu"
    if requested not in available:
        why = hg.gpu_unavailable_reason()
        raise UsageError(f"device {requested!r} is not usable here (usable: {', '.join(available)})"
                         + (f"; {why}" if why else ""))
    return requested


# --- hipgrad train ----------------------------------------------------------------------------

def add_train_command(p: argparse.ArgumentParser) -> Runner:
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
                   help="kernel variant for GEMM and convolution; auto picks the faster once per "
                        "shape, so pin one for bit-identical runs across processes (default auto)")
    p.add_argument("--on-nonfinite", choices=["stop", "skip"], default="stop")
    p.add_argument("--resume", default=None, help="checkpoint (file or run directory) to continue")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_lm_train_arguments(p)
    return run_train


def make_optimizer(name: str, params: list, lr: float | None, momentum: float, weight_decay: float):
    from . import optim
    if name == "sgd":
        return optim.SGD(params, lr=0.05 if lr is None else lr, momentum=momentum,
                         weight_decay=weight_decay)
    cls = optim.Adam if name == "adam" else optim.AdamW
    return cls(params, lr=3e-3 if lr is None else lr, weight_decay=weight_decay)


def make_scheduler(name: str, optimizer, epochs: int):
    from . import optim
    if name == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=epochs)
    if name == "step":
        return optim.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    return None


def run_train(args: argparse.Namespace) -> int:
    import hipgrad as hg

    from . import nn
    from .checkpoint import CheckpointError
    from .data import DataError, DataLoader, load_dataset
    from .models import MODELS, build_model
    from .train import NonFiniteLossError, Trainer

    if args.model == "gpt":
        return run_train_gpt(args)
    if args.batch_size is None:
        args.batch_size = 32
    if args.model not in MODELS:
        raise UsageError(f"unknown model {args.model!r}: expected one of {', '.join(MODELS)}")
    if args.epochs < 1 or args.batch_size < 1:
        raise UsageError("--epochs and --batch-size must be positive")
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
    print(f"hipgrad train: {args.model} ({n_params:,} parameters) on {args.data} "
          f"({len(train_set)} train / {len(val_set)} val, {train_set.in_shape}), device {device}, "
          f"{args.optimizer} lr {start_lr:g} ({args.scheduler} schedule), batch {args.batch_size}, "
          f"seed {args.seed}")
    if args.resume is not None:  # a checkpoint already at --epochs would train nothing
        from .checkpoint import load_checkpoint

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
        print(f"hipgrad train: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    best = max(history, key=lambda r: -1.0 if r.get("val_acc") is None else r["val_acc"])
    summary = {
        "data": args.data, "model": args.model, "spec": model.spec, "device": device,
        "parameters": n_params, "impl": args.impl, "optimizer": args.optimizer, "scheduler": args.scheduler,
        "lr": start_lr, "final_lr": optimizer.lr,
        "batch_size": args.batch_size, "seed": args.seed, "epochs": trainer.epoch,
        "seconds": seconds, "threads": hg.get_num_threads(), "hipgrad_version": hg.__version__,
        "final": history[-1], "best_val_acc": best.get("val_acc"), "best_epoch": best["epoch"],
        "files": ["model.safetensors", "model.json", "history.json", "history.csv", "curve.png"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    last = history[-1]
    print(f"done in {seconds:.1f} s: val accuracy {100 * (last.get('val_acc') or 0):.2f}% "
          f"(best {100 * (best.get('val_acc') or 0):.2f}% at epoch {best['epoch']}); wrote {out}/")
    return 0


from .cli_explain import add_explain_command  # noqa: E402
from .cli_finetune import add_finetune_command  # noqa: E402
from .cli_lm import add_generate_command, add_lm_train_arguments, run_train_gpt  # noqa: E402
from .cli_infer import add_compare_command, add_infer_command  # noqa: E402
from .cli_tune import add_tune_command  # noqa: E402

# --- the command table and entry point --------------------------------------------------------

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Runner]]] = {
    "train": ("train a model on a data set, writing a checkpoint, history and curves",
              add_train_command),
    "infer": ("run a trained model forward only (fp32 or int8) and print predictions",
              add_infer_command),
    "compare": ("one training step vs one inference pass: time, memory, bytes kept",
                add_compare_command),
    "tune": ("time every shape a model uses once for impl=auto and save the choices",
             add_tune_command),
    "explain": ("one training step and one inference pass, traced and explained in plain words",
                add_explain_command),
    "finetune": ("train a checkpoint further on new data into a new run; report what changed",
                 add_finetune_command),
    "generate": ("continue a text prompt with a trained language model",
                 add_generate_command),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hipgrad", description="hipgrad: train and run small models")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (help_text, add) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(run=add(p))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as e:
        print(f"hipgrad {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hipgrad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
