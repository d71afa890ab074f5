"""One training step (forward, loss, backward, SGD update) of LeNet-5 (1x28x28, batch 64) and an
MLP 784-256-10 (batch 64): hipgrad against PyTorch eager on the same device and thread count.

    PYTHONPATH=python python3 bench/bench_train.py [--threads 1,2] [--repeats 30] [--note "..."]

Both frameworks start from the same weights and batch; the first step's losses and updated
weights are compared before anything is timed. Each figure is the median of `--repeats` timed
steps after `--warmup` untimed ones. `speed vs torch` = torch ms / hipgrad ms (goals on the CPU:
>= 0.5 for LeNet, >= 1.0 for the MLP). Writes bench/results/train-<device>-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import numpy as np

import hipgrad as hg
from hipgrad import nn, optim
from hipgrad.profiling.compare import median_ms
from hipgrad.training.models import build_model

CASES = {  # name: (model name, options, input shape, batch, goal as a fraction of PyTorch's speed)
    "lenet5": ("lenet", {"dropout": 0.0}, (1, 28, 28), 64, 0.5),
    "mlp-784-256-10": ("mlp", {"hidden": [256]}, (1, 28, 28), 64, 1.0),
}
LR, MOMENTUM = 0.01, 0.9


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def torch_twin(model_name: str, in_shape: tuple, classes: int):
    """The same architecture in PyTorch, with the same state_dict keys."""
    import torch.nn as tnn
    if model_name == "mlp":
        features = int(np.prod(in_shape))
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(features, 256), tnn.ReLU(), tnn.Linear(256, classes))
    c, h, _ = in_shape
    pad2 = 0 if h // 2 >= 8 else 2
    side = ((h // 2) + 2 * pad2 - 4) // 2
    return tnn.Sequential(
        tnn.Conv2d(c, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5, padding=pad2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
        tnn.Linear(16 * side * side, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
        tnn.Linear(84, classes))


def bench_case(name: str, device: str, warmup: int, repeats: int, rng: np.random.Generator) -> dict:
    model_name, options, in_shape, batch, goal = CASES[name]
    hg.manual_seed(0)
    model = build_model(model_name, in_shape, 10, **options).to(device)
    # a first convolution reads the data: no dx (PyTorch skips it for an input without grad)
    first = next((m for m in model.modules() if not list(m.children())), None)
    if isinstance(first, nn.Conv2d):
        first.input_grad = False
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss = nn.CrossEntropyLoss()
    x_np = rng.standard_normal((batch, *in_shape)).astype(np.float32)
    y_np = rng.integers(0, 10, batch).astype(np.int64)
    x, y = hg.tensor(x_np, device=device), hg.tensor(y_np, device=device)
    start_weights = model.state_dict()

    def hg_step() -> float:
        value = loss(model(x), y)                 # forward + loss (a float: the step has finished)
        model.zero_grad()
        model.backward(loss.backward())
        opt.step()
        hg.synchronize(device)
        return value

    row = {"case": name, "batch": batch, "input": list(in_shape), "goal": goal}
    first_loss = hg_step()
    after_one = model.state_dict()
    row["hipgrad_ms"] = median_ms(hg_step, device, repeats, warmup=warmup)
    try:
        import torch
    except ImportError:
        return row
    tdev = "cpu" if device == "cpu" else "cuda"
    twin = torch_twin(model_name, in_shape, 10).to(tdev)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in start_weights.items()})
    topt = torch.optim.SGD(twin.parameters(), lr=LR, momentum=MOMENTUM)
    tloss = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x_np).to(tdev), torch.from_numpy(y_np).to(tdev)

    def torch_step() -> float:
        topt.zero_grad(set_to_none=True)
        value = tloss(twin(tx), ty)
        value.backward()
        topt.step()
        if tdev == "cuda":
            torch.cuda.synchronize()
        return float(value.detach())

    torch_first = torch_step()
    worst = max(float(np.max(np.abs(after_one[k] - v.detach().cpu().numpy())))
                for k, v in twin.state_dict().items())
    row["check"] = {"loss_hipgrad": first_loss, "loss_torch": torch_first,
                    "max_weight_diff_after_one_step": worst}
    if abs(first_loss - torch_first) > 1e-4 * max(1.0, abs(torch_first)) or worst > 1e-4:
        raise SystemExit(f"{name}: hipgrad and PyTorch disagree after one step "
                         f"(loss {first_loss} vs {torch_first}, weights differ by {worst})")
    row["torch_ms"] = median_ms(torch_step, device, repeats, warmup=warmup)
    row["speed_vs_torch"] = row["torch_ms"] / row["hipgrad_ms"]
    row["meets_goal"] = row["speed_vs_torch"] >= goal
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", default=str(hg.get_num_threads()),
                    help="thread counts to measure, comma-separated (default: all cores)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--note", default="", help="e.g. 'machine shared with other jobs'")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()

    thread_counts = [int(t) for t in args.threads.split(",")]
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch, torch_version = None, None
    load_before = os.getloadavg()
    rows = []
    for threads in thread_counts:
        hg.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        rng = np.random.default_rng(0)
        rows += [{"threads": threads, **bench_case(name, args.device, args.warmup, args.repeats, rng)}
                 for name in CASES]
    load_after = os.getloadavg()

    header = f"{'case':<16} {'threads':>7} {'batch':>5} {'hipgrad ms':>11} {'torch ms':>9} {'speed vs torch':>15} {'goal':>5}"
    lines = [header]
    for r in rows:
        lines.append(f"{r['case']:<16} {r['threads']:>7} {r['batch']:>5} {r['hipgrad_ms']:>11.3f} "
                     f"{r.get('torch_ms', float('nan')):>9.3f} {r.get('speed_vs_torch', float('nan')):>14.2f}x "
                     f"{r['goal']:>4.1f}x")
    print("\n".join(lines))

    date = datetime.date.today().isoformat()
    machine = {"cpu": cpu_name(), "logical_cpus": os.cpu_count(),
               "platform": platform.platform(), "python": platform.python_version(),
               "load_average_1min_before_after": [load_before[0], load_after[0]],
               "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}}
    result = {"bench": "train step", "date": date, "device": args.device, "threads": thread_counts,
              "warmup": args.warmup, "repeats": args.repeats, "statistic": "median",
              "optimizer": f"SGD lr={LR} momentum={MOMENTUM}", "machine": machine,
              "hipgrad_version": hg.__version__, "torch_version": torch_version,
              "note": args.note, "results": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"train-{args.device.split(':')[0]}-{date}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    md = [f"# Training step: hipgrad vs PyTorch eager ({args.device}, {date})", "",
          f"- machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs; {machine['platform']}",
          f"- 1-minute load average before / after: {load_before[0]:.1f} / {load_after[0]:.1f}; "
          f"OMP_WAIT_POLICY={machine['env']['OMP_WAIT_POLICY']}",
          f"- threads: {args.threads} (hg.set_num_threads == torch.set_num_threads in each row)",
          f"- hipgrad {hg.__version__}, torch {torch_version}; {result['optimizer']}",
          (f"- median of {args.repeats} steps after {args.warmup} warm-up steps; "
           "speed vs torch = torch ms / hipgrad ms"),
          *([f"- note: {args.note}"] if args.note else []), "", "```", *lines, "```", ""]
    stem.with_suffix(".md").write_text("\n".join(md))
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
