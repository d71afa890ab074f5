"""Trains a small model for 2 epochs and saves the final weights; run alone ("ref") or under
mpiexec ("dist"), the two must agree. argv: mode model optimizer clip out.npz [fault]
fault: "kill" (rank 1 dies at epoch 2) or "hang" (rank 1 stops answering at epoch 2).
Environment: WORKER_EPOCHS (default 2), WORKER_RESUME (a run directory to continue)."""

import os
import signal
import sys
import time

import numpy as np

import hipgrad as hg
import hipgrad.distributed as dist
from hipgrad import nn, optim
from hipgrad.data import DataLoader, Dataset

mode, model_name, opt_name, clip, out = sys.argv[1:6]
fault = sys.argv[6] if len(sys.argv) > 6 else ""
if mode == "dist":
    dist.init()
hg.set_num_threads(1)
rank = dist.rank()

rng = np.random.default_rng(7)
shape = (1, 8, 8) if model_name == "lenet" else (3, 2, 5)
data = Dataset(rng.standard_normal((23,) + shape).astype(np.float32),
               rng.integers(0, 4, 23).astype(np.int64))
hg.manual_seed(rank)           # rank 1 starts from other weights: the broadcast must fix them
model = (hg.build_model("lenet", shape, 4, dropout=0.0) if model_name == "lenet"
         else hg.build_model("mlp", shape, 4, hidden=(13,)))
opt = (optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if opt_name == "sgd"
       else optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1))


class Loss(nn.CrossEntropyLoss):
    calls = 0

    def __call__(self, pred, y):
        Loss.calls += 1
        if fault and rank == 1 and Loss.calls == 5:     # epoch 2 (3 batches per epoch)
            if fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)
        return super().__call__(pred, y)


trainer = hg.Trainer(model, Loss(), opt, "cpu", max_grad_norm=float(clip) if float(clip) else None,
                     bucket_mb=600 * 4 / (1 << 20))      # a few buckets even for these models
loader = DataLoader(data, 9, shuffle=True, seed=3)       # 9 + 9 + 5 rows: unequal rank shares
out_dir = os.path.splitext(out)[0] + "_run"
hist = trainer.fit(loader, epochs=int(os.environ.get("WORKER_EPOCHS", "2")), val=data,
                   out_dir=out_dir, resume=os.environ.get("WORKER_RESUME"), progress=False)
if rank == 0:
    np.savez(out, **{k: p.data.numpy() for k, p in model.named_parameters()},
             losses=np.array([[r["train_loss"], r["val_loss"], r["val_acc"]] for r in hist]))
