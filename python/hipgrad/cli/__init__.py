"""The `hipgrad` command (also `python -m hipgrad`).

    hipgrad train --data digits --model lenet --epochs 15 --device auto --out runs/digits

One module per subcommand in this folder, each with `add_arguments(parser) -> run`, where
`run(args)` returns the exit code; COMMANDS below registers them (a new command is its module
plus one row). common.py holds what several commands share. Errors a user can fix (unknown
data, bad paths, bad checkpoints) raise UsageError: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .common import UsageError

COMMANDS: dict[str, tuple[str, str]] = {  # name: (module in hipgrad.cli, one-line help)
    "train": ("train", "train a model on a data set, writing a checkpoint, history and curves"),
    "infer": ("infer", "run a trained model forward only (fp32 or int8) and print predictions"),
    "compare": ("compare", "one training step vs one inference pass: time, memory, bytes kept"),
    "tune": ("tune", "time every shape a model uses once for impl=auto and save the choices"),
    "explain": ("explain",
                "one training step and one inference pass, traced and explained in plain words"),
    "doctor": ("doctor", "why the GPU path does or does not work here, each problem with its fix"),
    "finetune": ("finetune", "train a checkpoint further on new data into a new run; report what changed"),
    "generate": ("generate", "continue a text prompt with a trained language model"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hipgrad", description="hipgrad: train and run small models")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(run=importlib.import_module(f"{__name__}.{module}").add_arguments(p))
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


__all__ = ["COMMANDS", "UsageError", "build_parser", "main"]
