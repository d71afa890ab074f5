"""The language model's quality run: `hipgrad train --model gpt --data pydoc --max-minutes M`
with the defaults (4 layers, 4 heads, 128 wide, block 128, batch 16, byte tokens, AdamW 1e-3),
then the checks: validation loss <= 1.6 nats per byte, and the generated sample made of words
of the corpus (the share of its words of 3+ letters that occur in the training text).

    PYTHONPATH=python python3 bench/bench_lm_quality.py [--minutes 10] [--out runs/quality]

Writes bench/results/lm-quality-<device>-<date>.json and .md with the machine's load (`uptime`)
before and after: on a shared machine the steps done in the budget, and so the loss, depend on it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hipgrad.cli import main as hipgrad_main  # noqa: E402
from hipgrad.data.text import load_corpus  # noqa: E402

GOAL = 1.6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--out", default="runs/lm-quality")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    code = hipgrad_main(["train", "--model", "gpt", "--data", "pydoc", "--max-minutes",
                         str(args.minutes), "--out", args.out, "--device", args.device,
                         "--no-progress"])
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if code != 0:
        sys.exit(code)
    summary = json.loads((Path(args.out) / "summary.json").read_text())
    words = set(re.findall(r"[A-Za-z]{3,}", load_corpus("pydoc").train))
    sample_words = re.findall(r"[A-Za-z]{3,}", summary["sample"])
    known = [w for w in sample_words if w in words]
    val = summary["final"]["val_loss"]
    report = {"date": datetime.date.today().isoformat(), "device": summary["device"],
              "minutes": args.minutes, "steps": summary["steps"], "threads": summary["threads"],
              "val_loss": val, "goal": GOAL, "met": val <= GOAL,
              "sample_words": len(sample_words), "sample_words_in_corpus": len(known),
              "sample": summary["sample"], "uptime_before": uptime_before,
              "uptime_after": uptime_after, "history": json.loads((Path(args.out) / "history.json").read_text())}
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"lm-quality-{summary['device'].replace(':', '')}-{report['date']}"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    share = len(known) / max(len(sample_words), 1)
    md = [f"# GPT quality run on pydoc ({args.minutes:g} minutes, {summary['device']}), {report['date']}", "",
          f"Load: `{uptime_before}` before, `{uptime_after}` after; {summary['threads']} threads.", "",
          f"- steps: {summary['steps']}; final validation loss {val:.4f} nats/byte "
          f"(goal <= {GOAL}: {'met' if val <= GOAL else 'NOT met'})",
          f"- sample: {len(known)} of its {len(sample_words)} words (3+ letters) occur in the corpus "
          f"({100 * share:.0f}%)", "", "```", summary["sample"], "```"]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
