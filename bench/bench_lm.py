"""The language model side by side with PyTorch eager, in one process, same threads, same weights:

- a training step (forward, cross-entropy, backward, grad-norm clip 1.0, AdamW) of a 4-layer,
  4-head, 128-wide, block-128, batch-16 byte-level GPT: tokens/s (goal >= 1.0x PyTorch, 1.5x);
- generation, greedy, with the KV cache (hipgrad's engine against a PyTorch loop with its own
  preallocated KV cache) at batch 1 and 8 (goal >= 1.5x), and without a cache (both recompute
  the whole context every token).

    PYTHONPATH=python python3 bench/bench_lm.py [--device cpu] [--steps 30] [--new-tokens 64]

The first training step's losses and the greedy tokens are compared before anything is timed.
Figures are medians of repeats; the machine's load (os.getloadavg, `uptime`) before and after is
recorded with them. Writes bench/results/lm-<device>-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hipgrad as hg  # noqa: E402
from hipgrad.lm.engine import GPTEngine  # noqa: E402
from hipgrad.lm.train import LMTrainer  # noqa: E402
from hipgrad.data.windows import TokenWindows  # noqa: E402
from hipgrad.data.text import ByteTokenizer, load_corpus  # noqa: E402

CFG = dict(vocab_size=256, block_size=128, n_layer=4, n_head=4, n_embd=128)
BATCH = 16


def torch_kv_generate(torch, tm, ids: np.ndarray, new: int, use_cache: bool) -> np.ndarray:
    """Greedy decoding with nanoGPT's modules in PyTorch; with use_cache, a KV cache per layer
    preallocated for the whole length, filled by the prefill and one position per step."""
    F = torch.nn.functional
    tr = tm.transformer
    b, t0 = ids.shape
    h, c = CFG["n_head"], CFG["n_embd"]
    hd = c // h
    out = torch.from_numpy(ids.copy())
    with torch.no_grad():
        if not use_cache:
            for _ in range(new):
                logits = tm(out[:, -CFG["block_size"]:])[:, -1]
                out = torch.cat([out, logits.argmax(-1, keepdim=True)], 1)
            return out.numpy()
        total = t0 + new
        ks = [torch.empty(b, h, total, hd) for _ in tr.h]
        vs = [torch.empty(b, h, total, hd) for _ in tr.h]
        pos, x_ids = 0, out
        for _ in range(new):
            t = x_ids.shape[1]
            x = tr.wte(x_ids) + tr.wpe(torch.arange(pos, pos + t))
            for blk, kc, vc in zip(tr.h, ks, vs):
                q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(c, dim=2)
                q, k, v = (z.view(b, t, h, hd).transpose(1, 2) for z in (q, k, v))
                kc[:, :, pos:pos + t] = k
                vc[:, :, pos:pos + t] = v
                y = F.scaled_dot_product_attention(q, kc[:, :, :pos + t], vc[:, :, :pos + t],
                                                   is_causal=t > 1)
                x = x + blk.attn.c_proj(y.transpose(1, 2).reshape(b, t, c))
                x = x + blk.mlp(blk.ln_2(x))
            logits = tm.lm_head(tr.ln_f(x[:, -1]))
            nxt = logits.argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], 1)
            pos += t
            x_ids = nxt
    return out.numpy()


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_training(torch, tm_factory, steps: int) -> dict:
    corpus = load_corpus("pydoc")
    tok = ByteTokenizer()
    train = TokenWindows(tok.encode(corpus.train), CFG["block_size"])
    hg.manual_seed(0)
    model = hg.build_model("gpt", **CFG)
    tm = tm_factory()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    trainer = LMTrainer(model, tok, train, None, lr=1e-3, batch_size=BATCH, warmup_steps=1)
    topt = torch.optim.AdamW(tm.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.0)

    def torch_step(x, y):
        logits = tm(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, CFG["vocab_size"]),
                                                 torch.from_numpy(y).reshape(-1))
        topt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
        topt.step()
        return loss.item()

    x, y = train.random_batch(BATCH, 0, 0)
    trainer.optimizer.lr = 1e-3
    l_hg, l_t = trainer.train_step(x, y), torch_step(x, y)
    batches = [train.random_batch(BATCH, 0, i) for i in range(1, steps + 2)]
    trainer.train_step(*batches[0])
    torch_step(*batches[0])
    it_hg, it_t = iter(batches[1:]), iter(batches[1:])
    s_hg = median_time(lambda: trainer.train_step(*next(it_hg)), steps)
    s_t = median_time(lambda: torch_step(*next(it_t)), steps)
    tokens = BATCH * CFG["block_size"]
    return {"case": "train step 4L-4H-128W block 128 batch 16", "first_loss_hipgrad": l_hg,
            "first_loss_torch": l_t, "hipgrad_ms": 1e3 * s_hg, "torch_ms": 1e3 * s_t,
            "hipgrad_tokens_per_s": tokens / s_hg, "torch_tokens_per_s": tokens / s_t,
            "speed_vs_torch": s_t / s_hg, "floor": 1.0, "goal": 1.5}


def bench_generation(torch, tm_factory, new: int, repeats: int) -> list[dict]:
    hg.manual_seed(1)
    model = hg.build_model("gpt", **CFG)
    tm = tm_factory()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    tm.eval()
    engine = GPTEngine.from_model(model)
    rows = []
    corpus = load_corpus("pydoc").val
    for b in (1, 8):
        prompts = np.stack([ByteTokenizer().encode(corpus[i * 97:i * 97 + 16]) for i in range(b)])
        for cache in (True, False):
            ours = engine.generate(prompts, new, temperature=0, use_cache=cache)
            theirs = torch_kv_generate(torch, tm, prompts, new, cache)
            same = float((ours[:, 16:] == theirs[:, 16:]).mean())
            s_hg = median_time(lambda: engine.generate(prompts, new, temperature=0, use_cache=cache), repeats)
            s_t = median_time(lambda: torch_kv_generate(torch, tm, prompts, new, cache), repeats)
            rows.append({"case": f"generate batch {b}, {new} new tokens, "
                                 f"{'KV cache' if cache else 'no cache'}",
                         "hipgrad_tokens_per_s": b * new / s_hg, "torch_tokens_per_s": b * new / s_t,
                         "speed_vs_torch": s_t / s_hg, "same_tokens": same,
                         "floor": 1.5 if cache else None, "goal": None})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30, help="timed training steps (median)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed generations (median)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    import torch
    from tests.lm import torch_gpt
    if args.threads:
        hg.set_num_threads(args.threads)
    torch.set_num_threads(hg.get_num_threads())
    factory = lambda: torch_gpt.build(torch, **CFG)  # noqa: E731
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    load_before = os.getloadavg()
    rows = [bench_training(torch, factory, args.steps)]
    rows += bench_generation(torch, factory, args.new_tokens, args.repeats)
    load_after = os.getloadavg()
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    date = datetime.date.today().isoformat()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    report = {"date": date, "machine": f"{cpu}, {os.cpu_count()} logical CPUs", "device": "cpu",
              "threads": hg.get_num_threads(), "torch": torch.__version__,
              "load_before": load_before, "load_after": load_after, "uptime_before": uptime_before,
              "uptime_after": uptime_after, "note": args.note, "results": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"lm-cpu-{date}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Language model vs PyTorch eager (CPU), {date}", "",
             f"{report['machine']}; {report['threads']} threads both sides; torch {torch.__version__}.",
             f"Load: `{uptime_before}` before, `{uptime_after}` after. {args.note}", "",
             "| case | hipgrad tokens/s | PyTorch tokens/s | speed vs torch | floor | check |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        check = (f"first loss {r['first_loss_hipgrad']:.4f} vs {r['first_loss_torch']:.4f}"
                 if "first_loss_hipgrad" in r else f"same greedy tokens {100 * r['same_tokens']:.0f}%")
        lines.append(f"| {r['case']} | {r['hipgrad_tokens_per_s']:,.0f} | {r['torch_tokens_per_s']:,.0f} "
                     f"| {r['speed_vs_torch']:.2f}x | {r['floor'] or '-'} | {check} |")
    (out / f"lm-cpu-{date}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
