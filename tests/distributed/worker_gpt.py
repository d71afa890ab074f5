"""Trains a small GPT with the LM trainer for a few steps and saves the final weights; run alone
("ref") or under mpiexec ("dist"), the two must agree. argv: mode out.npz
A global batch of 5 windows (ranks take 2 and 3 rows), AdamW, gradient clipping that acts
(max norm 0.05), evaluations and checkpoints at steps 2 and 4; rank 1 starts from other weights
(the broadcast must replace them)."""

import os
import sys

import numpy as np

import hipgrad as hg
import hipgrad.distributed as dist
from hipgrad.data.text import ByteTokenizer
from hipgrad.data.windows import TokenWindows
from hipgrad.lm.train import LMTrainer

mode, out = sys.argv[1:3]
if mode == "dist":
    dist.init()
hg.set_num_threads(1)
rank = dist.rank()
rng = np.random.default_rng(11)
ids = rng.integers(0, 37, 3000).astype(np.int64)
train, val = TokenWindows(ids[:2500], 16), TokenWindows(ids[2500:], 16)
hg.manual_seed(100 + rank)
model = hg.build_model("gpt", vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=16)
trainer = LMTrainer(model, ByteTokenizer(), train, val, lr=3e-3, batch_size=5, warmup_steps=1,
                    grad_clip=0.05, weight_decay=0.1, eval_windows=7,
                    bucket_mb=900 * 4 / (1 << 20))   # a few buckets, one cut inside a tensor
run = os.path.splitext(out)[0] + "_run"
hist = trainer.fit(max_steps=4, eval_interval=2, out_dir=run, log=None, progress=False)
if rank == 0:
    np.savez(out, **{k: p.data.numpy() for k, p in model.named_parameters()},
             losses=np.array([[r["train_loss"], r["val_loss"]] for r in hist]))
