"""`hipgrad compare`: one training step against one inference pass: time, peak memory, bytes
kept (hipgrad.profiling.compare does the measuring)."""

from __future__ import annotations

import argparse

from .common import Runner, UsageError, output_path


def add_arguments(p: argparse.ArgumentParser) -> Runner:
    p.add_argument("--model", default="lenet", help="mlp | lenet | resnet")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--input-shape", default="1,28,28", help="C,H,W (default 1,28,28)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default="runs/compare", help="where compare.json and compare.png go")
    return run


def run(args: argparse.Namespace) -> int:
    from ..profiling.compare import compare, format_compare

    output_path(args.out, "--out", directory=True)

    try:
        shape = tuple(int(s) for s in args.input_shape.split(","))
    except ValueError:
        raise UsageError(f"--input-shape must be C,H,W integers, got {args.input_shape!r}") from None
    try:
        result = compare(args.model, args.batch, args.device, shape, repeats=args.repeats,
                         out_dir=args.out)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(format_compare(result))
    print(f"wrote {args.out}/compare.json and compare.png")
    return 0

