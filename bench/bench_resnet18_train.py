"""One training step (forward, cross-entropy, backward, SGD momentum update) of ResNet-18 in
torchvision's layout (7x7/2 stem + BatchNorm + ReLU + 3x3/2 max pool, four stages of two basic
blocks, 64-128-256-512 channels, global average pool, linear), batch 8 at 112x112, hipgrad against
PyTorch eager on the CPU at the same thread count. Both start from the same weights and batch;
the first step's losses are compared before anything is timed.

    PYTHONPATH=python python3 bench/bench_resnet18_train.py [--threads 2] [--repeats 7]

Prints the median step of each (after warm-up steps, which include hipgrad's kernel tuning) and
torch ms / hipgrad ms; writes bench/results/resnet18-train-cpu-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
from pathlib import Path

import numpy as np

import hipgrad as hg
from hipgrad import nn, optim
from hipgrad.profiling.compare import median_ms

WIDTHS = (64, 128, 256, 512)


def hg_resnet18(classes: int, side: int) -> nn.Module:
    def block(cin, cout, stride):
        body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        short = None
        if stride != 1 or cin != cout:
            short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                  nn.BatchNorm2d(cout))
        return [nn.Residual(body, short), nn.ReLU()]

    layers = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, stride=2, padding=1)]
    cin = 64
    for i, width in enumerate(WIDTHS):
        for j in range(2):
            layers += block(cin, width, 2 if i > 0 and j == 0 else 1)
            cin = width
    s = side // 4
    for _ in range(3):
        s = (s + 2 - 3) // 2 + 1
    layers += [nn.AvgPool2d(s), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


def torch_resnet18(classes: int, side: int):
    import torch.nn as tnn

    class Residual(tnn.Module):  # the same state_dict keys as hipgrad's nn.Residual
        def __init__(self, body, shortcut=None):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    def block(cin, cout, stride):
        body = tnn.Sequential(
            tnn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), tnn.BatchNorm2d(cout),
            tnn.ReLU(), tnn.Conv2d(cout, cout, 3, padding=1, bias=False), tnn.BatchNorm2d(cout))
        short = None
        if stride != 1 or cin != cout:
            short = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                   tnn.BatchNorm2d(cout))
        return [Residual(body, short), tnn.ReLU()]

    layers = [tnn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), tnn.BatchNorm2d(64),
              tnn.ReLU(), tnn.MaxPool2d(3, stride=2, padding=1)]
    cin = 64
    for i, width in enumerate(WIDTHS):
        for j in range(2):
            layers += block(cin, width, 2 if i > 0 and j == 0 else 1)
            cin = width
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(512, classes)]
    return tnn.Sequential(*layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--side", type=int, default=112)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    import torch

    hg.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((args.batch, 3, args.side, args.side)).astype(np.float32)
    y_np = rng.integers(0, 10, args.batch).astype(np.int64)

    hg.manual_seed(0)
    model = hg_resnet18(10, args.side)
    # the stem reads the data: no dx (PyTorch skips it for an input without grad)
    next(m for m in model.modules() if isinstance(m, nn.Conv2d)).input_grad = False
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    x, y = hg.tensor(x_np), hg.tensor(y_np)
    twin = torch_resnet18(10, args.side)
    state = {k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}
    missing = twin.load_state_dict(state, strict=False)
    topt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
    tloss = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x_np), torch.from_numpy(y_np)

    def hg_step() -> float:
        value = loss(model(x), y)
        model.zero_grad()
        model.backward(loss.backward())
        opt.step()
        return float(value)

    def torch_step() -> float:
        topt.zero_grad(set_to_none=True)
        value = tloss(twin(tx), ty)
        value.backward()
        topt.step()
        return float(value.detach())

    first = (hg_step(), torch_step())
    load0 = os.getloadavg()
    rounds = []
    for _ in range(3):  # alternate, so that a burst of load hits both
        rounds.append((median_ms(hg_step, "cpu", args.repeats, warmup=args.warmup),
                       median_ms(torch_step, "cpu", args.repeats, warmup=args.warmup)))
    ratios = [t / h for h, t in rounds]
    result = {"bench": "resnet18 train step", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "threads": args.threads, "batch": args.batch, "side": args.side,
              "first_loss": {"hipgrad": first[0], "torch": first[1]},
              "unmatched_keys": {"missing": list(missing.missing_keys),
                                 "unexpected": list(missing.unexpected_keys)},
              "rounds_ms": [{"hipgrad": h, "torch": t} for h, t in rounds],
              "speed_vs_torch": {"median": statistics.median(ratios), "min": min(ratios),
                                 "max": max(ratios)},
              "loadavg_before": load0, "loadavg_after": os.getloadavg()}
    for h, t in rounds:
        print(f"resnet18 b{args.batch} {args.side}x{args.side} threads {args.threads}: hipgrad {h:.1f} ms, "
              f"torch {t:.1f} ms, speed vs torch {t / h:.2f}x")
    print(f"first-step loss hipgrad {first[0]:.5f} torch {first[1]:.5f}; load {load0} -> {os.getloadavg()}")
    os.makedirs(args.out, exist_ok=True)
    path = Path(args.out) / f"resnet18-train-cpu-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
