"""Telling a trace in plain words within WIDTH columns: times, op calls, the kernels that ran
and the slowest layers (shared by the explain commands)."""

from __future__ import annotations

import textwrap
from collections import OrderedDict

from .common import WIDTH


def ms(v: float) -> str:
    return f"{v:.3g} ms" if v < 100 else f"{v:.0f} ms"


def calls(n: int) -> str:
    return f"{n} op call" + ("" if n == 1 else "s")


def wrap(text: str, indent: str = "   ", first: str | None = None) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent if first is None else first,
                         subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)


def say(text: str) -> None:
    print(*wrap(text, indent="  ", first=""), sep="\n")


def grouped(records: list[dict], field: str) -> OrderedDict[str, tuple[int, float]]:
    """records grouped by `field` ("op [impl]" for "op"), slowest first: name -> (count, ms)."""
    groups: dict[str, list[float]] = {}
    for r in records:
        name = f"{r['op']} [{r['impl']}]" if field == "op" else r[field]
        if name:
            groups.setdefault(name, []).append(r["ms"])
    ordered = sorted(groups.items(), key=lambda kv: -sum(kv[1]))
    return OrderedDict((k, (len(v), sum(v))) for k, v in ordered)


def pack(label: str, items: list[str]) -> list[str]:
    """`label` then the items, comma-separated, filling lines of WIDTH; an item is never split
    (one longer than a line, e.g. a GPU kernel's name with its notes, is shortened with "...")."""
    lines, line = [], f"   {label}: "
    room = WIDTH - 10  # the continuation indent, the comma and the space
    for i, item in enumerate(items):
        if len(item) > room:
            item = item[: room - 3] + "..."
        text = item + ("," if i < len(items) - 1 else "")
        if len(line) + len(text) > WIDTH and line.strip():
            lines.append(line.rstrip())
            line = "        "
        line += text + " "
    return lines + [line.rstrip()]


def ran(records: list[dict], top_layers: int = 8) -> list[str]:
    if not records:
        return wrap("ran: no kernels (only copies and Python bookkeeping)")
    ops = grouped(records, "op")
    lines = pack("ran", [f"{n}x {name} {ms(t)}" if n > 1 else f"{name} {ms(t)}"
                         for name, (n, t) in ops.items()])
    layers = list(grouped(records, "layer").items())
    if layers:
        items = [f"{name} {ms(t)}" for name, (_, t) in layers[:top_layers]]
        rest = layers[top_layers:]
        if rest:
            items.append(f"{len(rest)} more {ms(sum(t for _, (_, t) in rest))}")
        lines += pack("slowest layers" if rest else "by layer", items)
    return lines
