"""`hipgrad tune`: time every (op, shape) a model uses once, ahead of time, and keep the choices.

    hipgrad tune --model lenet --batch 256 --data digits --precision both

impl="auto" picks between kernel variants by timing each the first time it meets a shape (see
hipgrad.profiling.tuning). This command meets all of a model's shapes at once: one training
step (forward, loss, backward, update, as `Trainer` runs it) and one inference pass through `InferenceEngine`
(fp32, int8 or both), then writes the tuning cache and prints the choices. A later process
loads the cache at import and times nothing; a second `hipgrad tune` shows that ("0 timed").

`prepare()` (common.py) is shared with `hipgrad explain`: argument checks, data, model.
"""

from __future__ import annotations

import argparse
import os
import re
import textwrap

import hipgrad as hg

from .common import WIDTH, Runner, UsageError, add_model_arguments, prepare


def add_arguments(p: argparse.ArgumentParser) -> Runner:
    add_model_arguments(p, batch=256)
    p.add_argument("--precision", choices=["fp32", "int8", "both"], default="both",
                   help="which inference pass to tune besides the training step (default both)")
    return run


def _device_key(r: dict) -> str:
    """A trace record's (device, shape key) as the tuning report spells it: CPU choices are kept
    per thread count (the traced code ran with this process's count)."""
    dev = r["device"]
    threads = f"threads={hg.get_num_threads()}," if dev.startswith("cpu") else ""
    return f"{dev}|{threads}{r['key']}"


def shapes_used(ops: list[dict], report: list[dict]) -> tuple[list[dict], set[tuple[str, str]]]:
    """From a trace's records and the tuning report: the report rows for the (op, shape) pairs
    the traced code ran with impl="auto" choices, and the pairs it timed (tuning runs)."""
    ran = {(r["op"], _device_key(r)) for r in ops if not r["tuning"]}
    timed = {(r["op"], _device_key(r)) for r in ops if r["tuning"]}
    rows = [r for r in report if (r["op"], r["key"]) in ran | timed]
    return rows, timed


def _candidate_times(row: dict) -> list[tuple[str, float]]:
    """Every candidate's time in a report row, whatever form the row gives them in: a
    `candidates` field (a mapping name -> ms, or a list of dicts) and `<name>_ms` fields."""
    out: dict[str, float] = {}
    cands = row.get("candidates")
    if isinstance(cands, dict):
        items = [(str(k), v.get("ms") if isinstance(v, dict) else v) for k, v in cands.items()]
    elif isinstance(cands, (list, tuple)):
        items = [(str(c.get("name") or c.get("impl") or c.get("variant") or i),
                  c.get("ms", c.get("time_ms"))) if isinstance(c, dict) else (str(c), None)
                 for i, c in enumerate(cands)]
    else:
        items = []
    for name, ms in items:
        out[name] = float("nan") if ms is None else float(ms)
    if not out:  # only the per-variant fields (handwritten_ms, vendor_ms): those, by variant
        for k, v in row.items():
            if k.endswith("_ms") and isinstance(v, (int, float)):
                out[k[:-3]] = float(v)
    return list(out.items())


def format_report(rows: list[dict], timed: set[tuple[str, str]] | None = None,
                  width: int = WIDTH) -> str:
    """The choices as a table grouped by op: shape key, chosen variant, each candidate's ms
    (* marks the chosen kernel, or the chosen variant where a row names no kernel), and whether
    this run timed it or the cache supplied it."""
    known = {"op", "key", "chosen", "candidates"}
    lines = [f"{'op / shape key':<{width - 22}}{'chosen':>12}{'source':>10}", "-" * width]
    for op in sorted({r["op"] for r in rows}):
        lines.append(op)
        for r in sorted((r for r in rows if r["op"] == op), key=lambda r: r["key"]):
            shape = re.sub(r"^threads=\d+,", "", r["key"].split("|", 1)[-1])  # in the header
            source = "" if timed is None else ("timed" if (r["op"], r["key"]) in timed else "cache")
            head = textwrap.wrap(shape, width - 24, break_on_hyphens=False) or [""]
            lines.append(f"  {head[0]:<{width - 24}}{r.get('chosen', '?'):>12}{source:>10}")
            lines += [f"    {h}" for h in head[1:]]
            winner = r.get("kernel", r.get("chosen"))
            times = ", ".join(f"{n}{'*' if n == winner else ''} {ms:.3f} ms"
                              for n, ms in _candidate_times(r))
            extra = ", ".join(f"{k}={v}" for k, v in r.items()
                              if k not in known and not k.endswith("_ms"))
            text = "; ".join(s for s in (times, extra) if s)
            if text:
                lines += textwrap.wrap(text, width, initial_indent="      ",
                                       subsequent_indent="        ")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..profiling import tuning

    if os.environ.get("HIPGRAD_NO_TUNING_CACHE") == "1":
        raise UsageError("HIPGRAD_NO_TUNING_CACHE=1 turns the tuning cache off; unset it to tune")
    if os.environ.get("HIPGRAD_IMPL", "auto") not in ("", "auto"):
        raise UsageError(f"HIPGRAD_IMPL={os.environ['HIPGRAD_IMPL']} pins every op to one variant, "
                         "so there is nothing to tune; unset it")
    prep = prepare(args)
    precisions = ["fp32", "int8"] if args.precision == "both" else [args.precision]
    print(f"hipgrad tune: {prep.name} for {args.data} {prep.in_shape}, batch {prep.batch}, "
          f"device {prep.device}, {hg.get_num_threads()} threads; inference {', '.join(precisions)}")
    with hg.trace() as t:
        prep.train_step()
        for precision in precisions:
            engine = prep.engine(precision)
            with hg.phase("forward"):
                engine.forward(prep.x_np)
    hg.synchronize(prep.device)
    rows, timed = shapes_used(t.ops, hg.tuning_report())
    path = tuning.save(prep.device)
    print()
    print(format_report(rows, timed))
    print()
    timed_now = sum((r["op"], r["key"]) in timed for r in rows)
    print(f"{len(rows)} shapes with a choice for impl=\"auto\": {len(rows) - timed_now} already "
          f"tuned (from the cache), {timed_now} timed now")
    single = sorted({r["op"] for r in t.ops} - {r["op"] for r in rows})
    if single:
        print(*textwrap.wrap("ran with one variant only (nothing to choose): " + ", ".join(single),
                             WIDTH, subsequent_indent="  "), sep="\n")
    if path is None:
        print("nothing to save: no op here has more than one variant to choose from")
    else:
        held = sum(r["key"].split("|", 1)[0] == prep.device for r in hg.tuning_report())
        print(f"tuning cache ({held} choices for {prep.device} in all):\n  {path}")
    return 0


__all__ = ["add_arguments", "format_report", "run", "shapes_used"]
