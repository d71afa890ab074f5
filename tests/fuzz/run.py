"""The fuzz campaign driver: runs generated cases through crash-isolating workers and prints a
reproducer for every failure.

    PYTHONPATH=python python3 -m tests.fuzz.run --cases 100000 --workers 2 --seed 7
    PYTHONPATH=python python3 -m tests.fuzz.run --case bad_op:max_pool2d:1234   # replay one

--cases is the total over all targets (spread evenly); --family / --target restrict them.
Exit status 1 when any case failed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter

from .runner import all_targets, describe, run_case
from .worker import Pool


def campaign(total: int, seed: int, workers: int = 2, families: list[str] | None = None,
             targets: list[str] | None = None, timeout: float = 30.0,
             limit: int = 50) -> tuple[int, list[tuple[tuple, str, str]], Counter]:
    """Runs `total` cases; returns (cases run, failures as (case, status, detail), statuses)."""
    chosen = [t for t in all_targets() if (not families or t[0] in families)
              and (not targets or t[1] in targets)]
    per = max(1, total // max(1, len(chosen)))
    todo = [(fam, tgt, seed * 1_000_003 + i) for i in range(per) for fam, tgt in chosen]
    failures: list[tuple[tuple, str, str]] = []
    stats: Counter = Counter()
    lock = threading.Lock()

    def work(part: list) -> None:
        pool = Pool("tests.fuzz.runner:run_case", timeout=timeout)
        try:
            for case in part:
                res = pool.run(case)
                with lock:
                    stats[res.status] += 1
                    if res.status != "ok" and len(failures) < limit:
                        failures.append((case, res.status, res.detail))
        finally:
            pool.close()

    threads = [threading.Thread(target=work, args=(todo[w::workers],)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(todo), failures, stats


def report(failures: list[tuple[tuple, str, str]]) -> str:
    lines = []
    for case, status, detail in failures:
        fam, tgt, seed = case
        lines.append(f"[{status}] {fam}:{tgt}:{seed}\n    call: {describe(case)}\n    "
                     f"replay: PYTHONPATH=python python3 -m tests.fuzz.run --case {fam}:{tgt}:{seed}\n"
                     f"    {detail.strip()[-1500:]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--family", action="append")
    ap.add_argument("--target", action="append")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--case", help="replay one case family:target:seed in this process")
    args = ap.parse_args(argv)
    if args.case:
        fam, tgt, seed = args.case.split(":")
        case = (fam, tgt, int(seed))
        print("call:", describe(case))
        problem = run_case(case)
        print("ok" if problem is None else f"FAIL: {problem}")
        return 0 if problem is None else 1
    t0 = time.time()
    n, failures, stats = campaign(args.cases, args.seed, args.workers, args.family, args.target,
                                  args.timeout, limit=200)
    print(f"{n} cases in {time.time() - t0:.0f} s: {dict(stats)}")
    if failures:
        print(report(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
