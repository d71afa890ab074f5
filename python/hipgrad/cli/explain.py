"""`hipgrad explain`: one training step and one inference pass, traced, told in plain words.

    hipgrad explain --model lenet --data digits --device auto --batch 64 [--trace-json t.json]

For a newcomer: the five steps of training (data, forward, loss, backward, update) with the ops
and kernels that ran in each, their time and share; then the inference pass (forward only,
frozen weights, no caches); then the two side by side, time and memory (the memory figures come
from hipgrad.profiling.compare). Every line fits a 100-column terminal.
"""

from __future__ import annotations

import argparse

from ..profiling.machine_load import LoadMonitor
from ..profiling.tracing import PHASES, Trace
from .common import Runner, add_model_arguments, output_path, prepare
from .narrate import calls as _calls
from .narrate import ms as _ms
from .narrate import ran as _ran
from .narrate import say as _say
from .narrate import wrap as _wrap

WHAT = {
    "data": "Copy the batch ({batch} inputs and their labels) from host memory to the device "
            "the model lives on.",
    "forward": "The model computes its prediction, {classes} scores per input, layer after layer. "
               "Each layer keeps what its backward step will need (its input, the positions "
               "pooling picked, dropout masks): these are the activations training holds on to.",
    "loss": "One number says how wrong the prediction is: cross-entropy, the softmax of the scores "
            "against the right label. Its gradient with respect to the scores starts backward.",
    "backward": "The chain rule, from the output back to the input: each layer turns the gradient "
                "of its output into the gradient of its weights (kept for the update) and of its "
                "input (handed to the layer before it).",
    "update": "The optimizer (Adam) moves every weight a small step against its gradient, using "
              "two running averages it keeps per weight (its state).",
}

INFERENCE = ("Inference runs the same model forward only, through hipgrad.InferenceEngine: the "
             "engine copies the weights once and freezes them, drops Dropout, folds any "
             "BatchNorm into the convolution before it, keeps no activation caches (a layer's input "
             "is freed as soon as its output exists), computes no gradients and has no "
             "optimizer.")


def add_arguments(p: argparse.ArgumentParser) -> Runner:
    add_model_arguments(p, batch=64)
    p.add_argument("--trace-json", default=None, metavar="FILE",
                   help="also write the training step and the inference pass, one timeline, as "
                        "Chrome trace JSON (Perfetto, chrome://tracing)")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="also draw time per phase, training beside inference")
    p.add_argument("--run", dest="checkpoint", metavar="RUN", default=None,
                   help="--model gpt: a language-model checkpoint (default: a fresh small GPT)")
    return run


def explain_training(t: Trace, batch: int, classes: int) -> tuple[list[str], float]:
    """The five steps of one traced training step; returns the lines and the step's total ms."""
    totals = t.phase_totals()
    step_ms = sum(totals.get(ph, {}).get("ms", 0.0) for ph in PHASES) or 1e-9
    lines: list[str] = []
    for i, ph in enumerate(PHASES, start=1):
        row = totals.get(ph, {"ms": 0.0, "op_ms": 0.0, "ops": 0})
        lines.append(f"{i}. {ph:<9} {_ms(row['ms']):>11} {100 * row['ms'] / step_ms:>5.1f}% of the "
                     f"step, {_calls(row['ops'])}")
        lines += _wrap(WHAT[ph].format(batch=batch, classes=classes))
        lines += _ran([r for r in t.ops if not r["tuning"] and r["phase"] == ph])
    op_ms = sum(totals.get(ph, {}).get("op_ms", 0.0) for ph in PHASES)
    lines += _wrap(f"The whole step took {_ms(step_ms)}: {_ms(op_ms)} in kernels, the rest in "
                   "Python and bookkeeping between them.", indent="", first="")
    return lines, step_ms


def explain_inference(t: Trace, weight_bytes: int) -> tuple[list[str], float]:
    ms = t.phase_totals().get("forward", {}).get("ms", 0.0)
    records = [r for r in t.ops if not r["tuning"]]
    lines = _wrap(INFERENCE, indent="", first="")
    lines.append(f"   forward   {_ms(ms):>11}, {_calls(len(records))}, weights "
                 f"{weight_bytes / 1024:.1f} KiB")
    return lines + _ran(records), ms


def compare_lines(train_mem: dict, infer_mem: dict, train_ms: float, infer_ms: float,
                  train_fwd_ms: float) -> list[str]:
    kib = 1024.0
    head = (f"{'':<16}{'time':>11}{'peak':>12}{'weights':>12}{'gradients':>12}{'optimizer':>12}"
            f"{'activations':>13}")
    lines = ["Training step vs inference pass (memory in KiB; activations: kept for backward)",
             head]
    for name, ms, m in (("training step", train_ms, train_mem), ("inference pass", infer_ms, infer_mem)):
        lines.append(f"{name:<16}{_ms(ms):>11}{m['peak_bytes'] / kib:>12.1f}"
                     f"{m['weights_bytes'] / kib:>12.1f}{m['gradients_bytes'] / kib:>12.1f}"
                     f"{m['optimizer_state_bytes'] / kib:>12.1f}"
                     f"{m['activations_kept_bytes'] / kib:>13.1f}")
    speed = train_ms / max(infer_ms, 1e-9)
    peak = train_mem["peak_bytes"] / max(infer_mem["peak_bytes"], 1)
    kept_t = sum(train_mem[k] for k in ("weights_bytes", "gradients_bytes", "optimizer_state_bytes",
                                        "activations_kept_bytes"))
    kept_i = infer_mem["weights_bytes"]
    lines += _wrap(
        f"A training step took {speed:.1f}x the time of an inference pass on the same batch (its "
        f"forward step alone took {train_fwd_ms / max(infer_ms, 1e-9):.1f}x the inference pass) "
        f"and peaked at {peak:.1f}x the memory. Training holds "
        f"{kept_t / kib:.1f} KiB (weights, gradients, optimizer state, activations), inference "
        f"{kept_i / kib:.1f} KiB (weights only), {kept_t / max(kept_i, 1):.1f}x less than "
        "training. One pass "
        "each, so the times are noisy: `hipgrad compare` gives medians over repeats.",
        indent="", first="")
    return lines


def run(args: argparse.Namespace) -> int:
    import hipgrad as hg

    from ..profiling.compare import inference_memory, training_memory
    from ..profiling.tracing import trace
    from ..tensor import tensor

    if args.model == "gpt":
        from .explain_gpt import run_explain_gpt
        return run_explain_gpt(args)
    output_path(args.trace_json, "--trace-json")
    output_path(args.plot, "--plot")
    prep = prepare(args)
    n_params = sum(int(p.data.size) for p in prep.net.parameters())
    shape = "x".join(str(s) for s in prep.in_shape)
    print(*_wrap(f"hipgrad explain: {prep.name} ({n_params:,} weights) on {prep.data} ({shape} "
                 f"inputs, {prep.num_classes} classes), batch {prep.batch}, device {prep.device}, "
                 f"{hg.get_num_threads()} threads", indent="", first=""), sep="\n")
    x = tensor(prep.x_np, device=prep.device)
    load = LoadMonitor().start()
    prep.train_step()              # warm-up: impl="auto" timing and first allocations
    engine = prep.engine("fp32")
    engine.forward(x)
    hg.synchronize(prep.device)
    with trace() as train_t:
        prep.train_step()
        hg.synchronize(prep.device)
    with trace() as infer_t, hg.phase("forward"):
        engine.forward(x)
        hg.synchronize(prep.device)

    print()
    print(*_wrap("Training repeats five steps for every batch of examples. Here is one step, "
                 "traced op by op after an untraced warm-up step (so the one-time timing of "
                 "candidate kernels for impl=\"auto\" is not counted). [brackets]: the kernel or "
                 "library call that ran.", indent="", first=""), sep="\n")
    print()
    train_lines, train_ms = explain_training(train_t, prep.batch, prep.num_classes)
    print("\n".join(train_lines))
    print()
    infer_lines, infer_ms = explain_inference(infer_t, engine.weight_bytes())
    print("\n".join(infer_lines))
    print()
    train_mem = training_memory(prep.net, prep.trainer.optimizer, prep.train_step, x, prep.device)
    infer_mem = inference_memory(engine, x, prep.device)
    fwd_ms = train_t.phase_totals().get("forward", {}).get("ms", 0.0)
    print("\n".join(compare_lines(train_mem, infer_mem, train_ms, infer_ms, fwd_ms)))
    for text in [load.summary(), load.warning()]:
        if text:
            print(*_wrap(text, indent="  ", first=""), sep="\n")
    _write_outputs(args, train_t, infer_t)
    return 0


def _write_outputs(args: argparse.Namespace, train_t: Trace, infer_t: Trace) -> None:
    if args.trace_json:
        both = Trace(ops=train_t.ops + infer_t.ops, spans=train_t.spans + infer_t.spans,
                     start_us=train_t.start_us, end_us=infer_t.end_us)
        both.save(args.trace_json)
        _say(f"wrote {args.trace_json} (the training step, then the inference pass)")
    if args.plot:
        try:
            train_t.plot(args.plot, other=infer_t)
            _say(f"wrote {args.plot}")
        except ImportError:
            _say(f"{args.plot} not written: matplotlib is not installed")


__all__ = ["add_arguments", "explain_inference", "explain_training", "run"]
