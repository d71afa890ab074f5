"""Where the INT8 engine loses accuracy on ResNet-18 (issue 17): top-1 agreement with fp32 and
the logits' relative error for the engine's INT8 choices switched on one by one, then per
conv / linear step the logits' error with that step alone in int8 (every other step float32).

Same protocol and inputs as bench_onnx.py's INT8 row (seed 0, --batches 1,8): tests/engine/zoo_models.py's ResNet-18 (random
weights, torch's legacy ONNX export), calibrated on 4 random batches of 8, measured on 256
random inputs of --size. Prints a table; writes nothing (timings are bench_onnx.py's).

    PYTHONPATH=python python3 bench/bench_int8_layers.py [--seed 0] [--size 64] [--per-layer]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def choices(quantize, fp32_rule, correct_bias: bool):
    """The engine's INT8 choices for the engines built inside: `fp32_rule(plan)` marks the
    steps kept in float32 (quantize.mark_fp32 is the engine's own), bias correction on or off."""
    saved = quantize.mark_fp32, quantize._correct_bias
    quantize.mark_fp32 = fp32_rule
    if not correct_bias:
        quantize._correct_bias = lambda s, mean: None
    try:
        yield
    finally:
        quantize.mark_fp32, quantize._correct_bias = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="model weights and inputs")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--per-layer", action="store_true", help="also each step alone in int8")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(HERE))  # tests.engine.zoo_models
    import hipgrad as hg
    from hipgrad import InferenceEngine
    from hipgrad.engine import quantize

    from tests.engine import zoo_models

    hg.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    size = args.size
    model = zoo_models.build("resnet18", num_classes=1000, seed=args.seed, size=size)
    with tempfile.TemporaryDirectory(prefix="int8-layers-") as tmp:
        path = zoo_models.export(model, os.path.join(tmp, "resnet18.onnx"), "legacy", 17, size)
        for batch in (1, 8):  # the draws bench_onnx.py makes first (its timed fp32 inputs)
            rng.standard_normal((batch, 3, size, size))
        calib = [rng.standard_normal((8, 3, size, size)).astype(np.float32) for _ in range(4)]
        test = rng.standard_normal((256, 3, size, size)).astype(np.float32)
        want = InferenceEngine.load(path, device="cpu").forward(test)

        def measure(fp32_rule, correct_bias: bool) -> tuple[float, float, str]:
            with choices(quantize, fp32_rule, correct_bias):
                engine = InferenceEngine.load(path, device="cpu", precision="int8").calibrate(calib)
            got = engine.forward(test)
            kept = [s.attrs["fp32"] for s in engine._plan if s.attrs.get("fp32")]
            agree = float(np.mean(got.argmax(1) == want.argmax(1)))
            return agree, float(np.linalg.norm(got - want) / np.linalg.norm(want)), ", ".join(kept)

        engine_rule = quantize.mark_fp32

        def only(kind):  # the engine's marks of one kind
            def rule(plan):
                engine_rule(plan)
                for s in plan:
                    if s.attrs.get("fp32") not in (None, kind):
                        del s.attrs["fp32"]
            return rule

        rows = [("all int8, no bias correction", lambda p: None, False),
                ("bias correction", lambda p: None, True),
                ("head fp32", only("head"), False),
                ("head + shortcuts fp32", engine_rule, False),
                ("head fp32 + bias correction", only("head"), True),
                ("engine: head + shortcuts fp32 + bias correction", engine_rule, True)]
        print(f"ResNet-18, seed {args.seed}, {size}x{size}: top-1 agreement with fp32 on 256 inputs, "
              "logits' relative error")
        for label, rule, corr in rows:
            agree, err, kept = measure(rule, corr)
            print(f"  {label:48s} {agree:6.3f}  {err:.5f}  fp32: {kept or '-'}", flush=True)
        if not args.per_layer:
            return
        names = [s.name for s in InferenceEngine.load(path, device="cpu")._plan if s.kind in ("conv", "linear")]
        print("one step alone in int8 (bias corrected), the rest float32:")
        for name in names:
            def alone(plan, name=name):
                for s in plan:
                    if s.kind in ("conv", "linear") and s.name != name:
                        s.attrs["fp32"] = "bench"
            agree, err, _ = measure(alone, True)
            print(f"  {name:48s} {agree:6.3f}  {err:.5f}", flush=True)


if __name__ == "__main__":
    main()
