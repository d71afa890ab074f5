"""The language-model commands: `hipgrad train --model gpt`, `hipgrad generate`.

    hipgrad train --model gpt --data pydoc --max-minutes 10 --out runs/pydoc-gpt
    hipgrad generate runs/pydoc-gpt --prompt "The with statement" --max-new-tokens 200 --top-k 40

Errors a user can fix print one line naming the flag and exit with 2 (cli.UsageError).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

from .common import Runner, UsageError, pick_device

GPT_DEFAULTS = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128}


def add_lm_train_arguments(p: argparse.ArgumentParser) -> None:
    """The flags `train --model gpt` adds to `hipgrad train`."""
    g = p.add_argument_group("language model (--model gpt; --data pydoc | text:PATH)")
    for name, default in GPT_DEFAULTS.items():
        g.add_argument(f"--{name.replace('_', '-')}", type=int, default=default,
                       help=f"default {default}")
    g.add_argument("--dropout", type=float, default=0.0, help="default 0")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    g.add_argument("--max-minutes", type=float, default=None, help="stop after this much time")
    g.add_argument("--eval-interval", type=int, default=100,
                   help="steps between validation, log rows and checkpoints (default 100)")
    g.add_argument("--tokenizer", default="byte",
                   help="byte (256 tokens, default) | bpe:<vocab size> (needs pip install tokenizers)")


def _positive(args: argparse.Namespace, *names: str) -> None:
    for n in names:
        v = getattr(args, n)
        if v is not None and not v > 0:
            raise UsageError(f"--{n.replace('_', '-')} must be positive, got {v}")


def lm_data(spec: str, tok, block_size: int):
    """(train, val) TokenWindows for a corpus spec, encoded with `tok`; usage errors named."""
    from ..data import DataError
    from ..data.text import load_corpus
    from ..data.windows import TokenWindows
    try:
        corpus = load_corpus(spec)
        return (TokenWindows(tok.encode(corpus.train), block_size, f"{spec} (train)"),
                TokenWindows(tok.encode(corpus.val), block_size, f"{spec} (val)"), corpus)
    except DataError as e:
        raise UsageError(f"--data: {e}") from None


def run_train_gpt(args: argparse.Namespace, mpi: tuple[int, bool] = (1, True)) -> int:
    """`mpi`: (ranks, whether this rank logs and writes), as hipgrad train joined the MPI job."""
    import hipgrad as hg

    from ..data import DataError
    from ..data.text import load_corpus, make_tokenizer, tokenizer_from_meta
    from ..lm.train import LMTrainer
    from ..training.checkpoint import CheckpointError, load_checkpoint
    from ..training.models import build_model

    if args.data == "digits":
        args.data = "pydoc"
    _positive(args, "n_layer", "n_head", "n_embd", "block_size", "max_steps", "max_minutes",
              "eval_interval", "batch_size", "threads")
    if args.max_steps is None and args.max_minutes is None:
        args.max_steps = 500
    device = pick_device(args.device)
    if args.threads is not None:
        hg.set_num_threads(args.threads)
    if args.resume is not None:  # the resumed run's tokenizer, not a new one
        try:
            tok = tokenizer_from_meta(load_checkpoint(args.resume).extra.get("tokenizer"), args.resume)
        except (CheckpointError, ValueError) as e:
            raise UsageError(f"--resume: {e}") from None
    else:
        try:
            text = load_corpus(args.data).train if args.tokenizer != "byte" else ""
            tok = make_tokenizer(args.tokenizer, text)
        except DataError as e:
            raise UsageError(f"--data: {e}") from None
        except (ValueError, ImportError) as e:
            raise UsageError(str(e)) from None
    train, val, _ = lm_data(args.data, tok, args.block_size)
    hg.manual_seed(args.seed)
    try:
        model = build_model("gpt", vocab_size=tok.vocab_size, block_size=args.block_size,
                            n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                            dropout=args.dropout)
    except ValueError as e:
        raise UsageError(str(e)) from None
    model.set_impl(args.impl)
    batch = args.batch_size or 16
    ranks, lead = mpi
    if ranks > 1 and batch < ranks:
        raise UsageError(f"--batch-size {batch} is the global batch: it must be at least the number "
                         f"of ranks ({ranks})")
    say = print if lead else (lambda *a, **k: None)
    trainer = LMTrainer(model, tok, train, val, lr=args.lr or 1e-3, batch_size=batch,
                        weight_decay=args.weight_decay, seed=args.seed, device=device,
                        extra={"data": {"name": args.data}})
    out = Path(args.out or f"runs/{args.data.partition(':')[0]}-gpt")
    n_params = sum(int(p.data.size) for p in model.parameters())
    budget = (f"{args.max_steps} steps" if args.max_steps else "") + \
             (" or " if args.max_steps and args.max_minutes else "") + \
             (f"{args.max_minutes:g} minutes" if args.max_minutes else "")
    say(f"hipgrad train: gpt ({n_params:,} parameters: {args.n_layer} layers, {args.n_head} heads, "
        f"{args.n_embd} wide, block {args.block_size}) on {args.data} ({len(train):,} train / "
        f"{len(val):,} val {tok.kind} tokens, vocab {tok.vocab_size}), device {device}, "
        f"{hg.get_num_threads()} threads, AdamW lr {trainer.base_lr:g}, batch {batch}, {budget}"
        + (f", {ranks} ranks (data-parallel)" if ranks > 1 else ""))
    start = time.perf_counter()
    try:
        history = trainer.fit(max_steps=args.max_steps, max_minutes=args.max_minutes,
                              eval_interval=args.eval_interval, out_dir=out, resume=args.resume,
                              progress=not args.no_progress)
    except CheckpointError as e:
        raise UsageError(f"--resume: {e}") from None
    except FloatingPointError as e:
        say(f"hipgrad train: {e}", file=sys.stderr)
        return 1
    if not lead:
        return 0
    seconds = time.perf_counter() - start
    last = history[-1] if history else {}
    sample = sample_text(model, tok, device)
    (out / "sample.txt").write_text(sample + "\n")
    summary = {"data": args.data, "model": "gpt", "spec": model.spec, "device": device,
               "parameters": n_params, "tokenizer": tok.kind, "batch_size": batch,
               "seed": args.seed, "ranks": ranks, "steps": trainer.step, "seconds": seconds,
               "threads": hg.get_num_threads(), "peak_flops": trainer.peak_flops, "final": last,
               "hipgrad_version": hg.__version__, "sample": sample}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(f"done in {seconds:.1f} s: {trainer.step} steps, val loss {last.get('val_loss', math.nan):.4f} "
          f"nats/token; wrote {out}/")
    print(f"sample (temperature 0.8, top-k 40, seed 0):\n{sample}")
    return 0


def sample_text(model, tok, device: str, prompt: str = "The ", n: int = 200) -> str:
    from ..lm.engine import GPTEngine
    engine = GPTEngine.from_model(model, device=device, tokenizer=tok)
    ids = tok.encode(prompt)[None, :]
    out = engine.generate(ids, n, temperature=0.8, top_k=min(40, tok.vocab_size), seed=0)
    return tok.decode(out[0])


# --- hipgrad generate -------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> Runner:
    p.add_argument("checkpoint", metavar="RUN", help="a language-model checkpoint (run directory or .safetensors)")
    p.add_argument("--prompt", required=True, help="the text the model continues")
    p.add_argument("--max-new-tokens", type=int, default=200, help="default 200")
    p.add_argument("--temperature", type=float, default=1.0, help=">= 0; 0 is greedy (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: fresh)")
    p.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole context each step")
    p.add_argument("--device", default="auto", help="auto | cpu | gpu:0 (default auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    return run


def load_lm(run: str, device: str, precision: str = "fp32"):
    """(engine, tokenizer) for a language-model checkpoint; usage errors name RUN."""
    from ..data.text import tokenizer_from_meta
    from ..lm.engine import GPTEngine
    from ..training.checkpoint import CheckpointError, load_checkpoint
    try:
        c = load_checkpoint(run)
    except CheckpointError as e:
        raise UsageError(f"RUN {run}: {e}") from None
    if not (c.spec or {}).get("name") == "gpt":
        raise UsageError(f"RUN {run}: not a language-model checkpoint (model {(c.spec or {}).get('name')!r})")
    try:
        tok = tokenizer_from_meta(c.extra.get("tokenizer"), f"RUN {run}")
    except ValueError as e:
        raise UsageError(str(e)) from None
    except ImportError as e:
        raise UsageError(f"RUN {run}: {e}") from None
    return GPTEngine(c.build_model(), device=device, precision=precision, source=run, tokenizer=tok), tok


def run(args: argparse.Namespace) -> int:
    import hipgrad as hg

    from ..lm.engine import _check_sampling

    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be a positive int, got {args.threads}")
        hg.set_num_threads(args.threads)
    if args.max_new_tokens < 0:
        raise UsageError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    device = pick_device(args.device)
    engine, tok = load_lm(args.checkpoint, device, args.precision)
    for flag, check in (("--temperature", lambda: _check_sampling(args.temperature, None, tok.vocab_size)),
                        ("--top-k", lambda: _check_sampling(1.0, args.top_k, tok.vocab_size))):
        try:
            check()
        except (TypeError, ValueError) as e:
            raise UsageError(f"{flag}: {e}") from None
    if args.prompt == "":
        raise UsageError("--prompt is empty: give at least one character of text to continue")
    ids = tok.encode(args.prompt)
    if len(ids) == 0:
        raise UsageError(f"--prompt {args.prompt!r} encodes to no tokens")
    block = engine.config["block_size"]
    if len(ids) > block:
        print(f"note: --prompt is {len(ids)} tokens, more than block_size {block}: the model sees "
              f"its last {block}", file=sys.stderr)
    if args.precision == "int8":  # activation scales from the prompt, before the digest
        engine.calibrate(ids[None, -block:])
    digest = engine.weights_digest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the crop is said once, above
        out = engine.generate(ids[None, :], args.max_new_tokens, temperature=args.temperature,
                              top_k=args.top_k, seed=args.seed, use_cache=not args.no_cache)
    print(tok.decode(out[0]))
    s = engine.last_stats
    print(f"\n[{s['new_tokens']} new tokens in {s['seconds']:.2f} s: {s['tokens_per_s']:.1f} tokens/s, "
          f"{args.precision}, {'KV cache' if not args.no_cache else 'no cache'}, {device}; weights "
          f"digest {digest[:16]} before, {engine.weights_digest()[:16]} after]", file=sys.stderr)
    return 0


__all__ = ["add_arguments", "run", "add_lm_train_arguments", "run_train_gpt", "load_lm", "lm_data"]
