"""`hipgrad explain --model gpt`: the two halves of a language model's life, made visible.

1. Training: one step of a small GPT on windows of the Python reference (pydoc), traced:
   the five steps (data, forward, loss, backward, update) and the kernels that ran in each.
2. Generation: the frozen engine reads a prompt and produces tokens one by one with its KV
   cache; the prefill and the decoding steps are traced.
3. Context is not learning: two prompts give two continuations while the weights digest stays
   identical; one fine-tuning step (a gradient update) changes the digest.

    hipgrad explain --model gpt [--run RUN] [--batch 8] [--trace-json t.json]
"""

from __future__ import annotations

import argparse

from ..profiling.tracing import PHASES, Trace
from .common import output_path, pick_device
from .narrate import calls, ms, ran, wrap

WHAT = {
    "data": "Copy {batch} windows of {block} token ids, and the same windows shifted by one "
            "token (the targets), to the device.",
    "forward": "Token and position embeddings, then each block: LayerNorm, causal self-attention "
               "(every position looks at itself and the positions before it), LayerNorm, the MLP, "
               "each added to its input; a last LayerNorm and the output layer give {vocab} scores "
               "for the next token at every position. Layers keep what backward needs.",
    "loss": "Cross-entropy of those scores against the actual next tokens, averaged over all "
            "{tokens} positions: nats per token.",
    "backward": "The chain rule from the loss back through every block to the embeddings; the "
                "tied output layer and token embedding add up their two gradients.",
    "update": "Clip the gradients to a global norm of 1, then AdamW moves every weight a small "
              "step against its gradient.",
}


def _five_steps(t: Trace, batch: int, block: int, vocab: int) -> list[str]:
    totals = t.phase_totals()
    step_ms = sum(totals.get(ph, {}).get("ms", 0.0) for ph in PHASES) or 1e-9
    lines: list[str] = []
    for i, ph in enumerate(PHASES, start=1):
        row = totals.get(ph, {"ms": 0.0, "ops": 0})
        lines.append(f"{i}. {ph:<9} {ms(row['ms']):>11} {100 * row['ms'] / step_ms:>5.1f}% of the "
                     f"step, {calls(row['ops'])}")
        lines += wrap(WHAT[ph].format(batch=batch, block=block, vocab=vocab, tokens=batch * block))
        lines += ran([r for r in t.ops if not r["tuning"] and r["phase"] == ph])
    return lines


def _print(text: str) -> None:
    print(*wrap(text, indent="", first=""), sep="\n")


def _model_and_data(args: argparse.Namespace, device: str):
    import hipgrad as hg

    from ..data.text import ByteTokenizer
    from ..training.models import build_model
    from .generate import lm_data, load_lm
    if getattr(args, "checkpoint", None):
        engine, tok = load_lm(args.checkpoint, device)
        model = engine.model.train()
        name = f"the GPT in {args.checkpoint}"
    else:
        hg.manual_seed(args.seed)
        tok = ByteTokenizer()
        model = build_model("gpt", vocab_size=256, block_size=64, n_layer=2, n_head=4, n_embd=64)
        name = "a fresh 2-layer, 4-head, 64-wide byte-level GPT (block 64)"
    data = "pydoc" if args.data == "digits" else args.data
    train, _, _ = lm_data(data, tok, model.config["block_size"])
    return model.to(device), tok, train, name, data


def run_explain_gpt(args: argparse.Namespace) -> int:
    import hipgrad as hg

    from ..lm.engine import GPTEngine
    from ..lm.train import LMTrainer
    from ..profiling.tracing import trace

    output_path(args.trace_json, "--trace-json")
    device = pick_device(args.device)
    model, tok, train, name, data = _model_and_data(args, device)
    trainer = LMTrainer(model, tok, train, None, lr=1e-3, batch_size=args.batch, device=device,
                        warmup_steps=1)
    n_params = sum(int(p.data.size) for p in model.parameters())
    _print(f"hipgrad explain: {name}, {n_params:,} weights, on {data} ({tok.kind} tokens), batch "
           f"{args.batch} windows of {model.config['block_size']} tokens, device {device}, "
           f"{hg.get_num_threads()} threads")
    x, y = train.random_batch(args.batch, args.seed, 0)
    trainer.train_step(x, y)                      # warm-up: kernel choices, first allocations
    print()
    _print("TRAINING (pretraining or fine-tuning: the same loop). A language model learns to "
           "predict every next token of its text: each window's tokens are the inputs and the same "
           "tokens shifted by one are the targets. One step, traced:")
    with trace() as train_t:
        trainer.train_step(*train.random_batch(args.batch, args.seed, 1))
        hg.synchronize(device)
    print("\n".join(_five_steps(train_t, args.batch, model.config["block_size"], tok.vocab_size)))

    print()
    engine = GPTEngine.from_model(model, device=device, tokenizer=tok)
    digest0 = engine.weights_digest()
    prompts = ["The import statement", "A class definition"]
    ids = [tok.encode(p)[None, :] for p in prompts]
    engine.generate(ids[0], 4, temperature=0)   # warm-up
    with trace() as gen_t:
        with hg.phase("forward"):
            outs = [engine.generate(i, 24, temperature=0) for i in ids]
    _print("GENERATION (inference): the engine copies the weights once and freezes them. It reads "
           "the prompt in one pass (the prefill), keeping every layer's keys and values in a KV "
           "cache it allocated once; then each new token is one pass over one position that "
           "appends to the cache and attends over everything before it. The most likely token "
           "is picked (temperature 0) and fed back in. Two prompts, 24 new tokens each:")
    records = [r for r in gen_t.ops if not r["tuning"]]
    print(f"   generation {ms(sum(r['ms'] for r in records)):>11} in kernels, "
          f"{len(records)} op calls")
    print("\n".join(ran(records)))
    for p, o in zip(prompts, outs):
        print(f"   {p!r} -> {tok.decode(o[0])!r}")
    digest1 = engine.weights_digest()
    print()
    _print(f"CONTEXT IS NOT LEARNING: the two prompts changed the output, and the weights digest is "
           f"{digest0[:16]} before and {digest1[:16]} after "
           f"({'identical' if digest0 == digest1 else 'CHANGED: a bug'}). What the model was told "
           "lives only in the context window and the cache, and is gone with them.")
    trainer.train_step(*train.random_batch(args.batch, args.seed, 2))
    digest2 = GPTEngine.from_model(model, device=device).weights_digest()
    _print(f"LEARNING IS A WEIGHT UPDATE: one fine-tuning step (forward, loss, backward, AdamW) "
           f"on one batch moves the weights: digest {digest0[:16]} -> {digest2[:16]} "
           f"({'changed' if digest2 != digest0 else 'unchanged: a bug'}).")
    if args.trace_json:
        both = Trace(ops=train_t.ops + gen_t.ops, spans=train_t.spans + gen_t.spans,
                     start_us=train_t.start_us, end_us=gen_t.end_us)
        both.save(args.trace_json)
        _print(f"wrote {args.trace_json} (the training step, then generation)")
    return 0 if digest0 == digest1 and digest2 != digest0 else 1
