"""`hipgrad infer`: run a trained model forward only (fp32 or int8) and print predictions."""

from __future__ import annotations

import argparse

import numpy as np

from .common import Runner, UsageError, load_npy


def add_arguments(p: argparse.ArgumentParser) -> Runner:
    p.add_argument("model", help="checkpoint (file or run directory), saved engine, or .onnx file")
    p.add_argument("--input", default=None, help=".npy file of inputs (N, C, H, W), preprocessed as in training")
    p.add_argument("--labels", default=None, help=".npy file of labels: report accuracy")
    p.add_argument("--data", default=None, help="instead of --input: a data set's held-out split, e.g. digits")
    p.add_argument("--precision", choices=["fp32", "int8"], default=None,
                   help="default: the file's (fp32 for a checkpoint or ONNX file, int8 for a saved int8 engine)")
    p.add_argument("--calibrate", default=None, help="int8: .npy inputs for calibration (default: the first 256 inputs)")
    p.add_argument("--top", type=int, default=1, help="print the top-k classes per input (default 1)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--show", type=int, default=10, help="how many predictions to print (default 10)")
    return run


def run(args: argparse.Namespace) -> int:
    from ..engine.engine import InferenceEngine
    from ..training.checkpoint import CheckpointError

    if (args.input is None) == (args.data is None):
        raise UsageError("give exactly one of --input FILE.npy or --data NAME")
    if args.data is not None:
        from ..data import DataError, load_dataset

        try:
            _, val = load_dataset(args.data, 0.2, 0)
        except DataError as e:
            raise UsageError(str(e)) from None
        x, labels = val.images, val.labels
    else:
        x = load_npy(args.input, "--input")
        labels = load_npy(args.labels, "--labels") if args.labels else None
    if labels is not None:  # checked before any work: (N,) integer classes, one per input
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise UsageError(f"--labels must be a 1-D integer array of class indices (N,), got "
                             f"{labels.dtype} of shape {labels.shape}")
        if len(labels) != len(x):
            raise UsageError(f"--labels has {len(labels)} entries but there are {len(x)} inputs")
    try:
        engine = InferenceEngine.load(args.model, device=args.device, precision=args.precision,
                                      batch_size=args.batch_size)
        if engine.precision == "int8" and not engine.calibrated:
            calib = load_npy(args.calibrate, "--calibrate") if args.calibrate else x[:256]
            engine.calibrate(calib)  # the engine converts (float32, or int64 token ids)
        idx, probs = engine.topk(x, k=args.top)
    except (CheckpointError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    except (ValueError, TypeError, RuntimeError) as e:
        raise UsageError(str(e)) from None
    print(f"hipgrad infer: {len(x)} inputs, {engine.precision} on {engine.device}")
    for i in range(min(args.show, len(x))):
        ranked = ", ".join(f"{c} ({p:.3f})" for c, p in zip(idx[i], probs[i]))
        print(f"  [{i}] {ranked}")
    if labels is not None:
        acc = float(np.mean(idx[:, 0] == labels))
        print(f"accuracy: {100 * acc:.2f}% ({int(round(acc * len(x)))}/{len(x)})")
    return 0
