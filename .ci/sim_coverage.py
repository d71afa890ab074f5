"""Kernel coverage of the simulated-device CI run (.ci/test_sim.sh).

As a pytest plugin (`-p sim_coverage`, with .ci on PYTHONPATH and HIPGRAD_SIM_RAN=<file>): every
test runs inside hg.trace(), and the (op, impl) of each GPU op call is appended to <file>.

As a script: `python3 .ci/sim_coverage.py check <launch_sites.txt> <ran files...>` fails (exit 1)
listing every GPU kernel of build_info()["kernels"] (default, alternates, vendor fallbacks) that
no test ran, and every kernel launch site of csrc/hip that never launched (the simulator writes
the sites it launched to HIPGRAD_SIM_COVERAGE; v0 reference kernels and every template launch
site are launch sites).
"""

from __future__ import annotations

import json
import os
import sys

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    import hipgrad as hg

    path = os.environ.get("HIPGRAD_SIM_RAN")
    if not path:
        yield
        return
    with hg.trace() as t:
        yield
    rows = {(r["op"], r["impl"]) for r in t.ops if str(r.get("device", "")).startswith("gpu")}
    if rows:
        with open(path, "a") as f:
            for op, impl in sorted(rows):
                f.write(json.dumps([op, impl]) + "\n")


def _covered(row: dict, ran: dict[str, set[str]]) -> bool:
    impls = ran.get(row["op"], set())
    if "fallback" in row["note"]:
        return any("vendor fallback" in i for i in impls)
    kernel = row["kernel"].split(" (")[0]  # "(one input channel per group: ...)" notes off
    first, *rest = kernel.split("|")
    names = {kernel, first} | {"gpu." + r if not r.startswith("gpu.") else r for r in rest}
    return any(i.split(" (")[0] in names for i in impls)


# Launch sites reached only after a vendor library call, which the sim flavour (like the AMD CI
# flavour) does not have: the composed attention's mask and row log-sum-exp after the vendor's
# batched GEMM, and the bias + activation passes after a cuBLAS/rocBLAS (int8) GEMM.
VENDOR_ONLY = ("attention_causal_mask", "attention_rows_lse", "epilogue_pass_kernel",
               "qgemm_epilogue_kernel")


def check(sites_file: str, ran_files: list[str]) -> int:
    import hipgrad as hg

    ran: dict[str, set[str]] = {}
    launched: set[str] = set()
    for name in ran_files:
        if not os.path.exists(name):
            continue
        with open(name) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                if line.startswith("["):
                    op, impl = json.loads(line)
                    ran.setdefault(op, set()).add(impl)
                else:
                    launched.add(line)
    rows = [r for r in hg.build_info()["kernels"] if r["backend"] == "gpu"]
    missing = sorted({(r["op"], r["variant"], r["kernel"]) for r in rows if not _covered(r, ran)})
    with open(sites_file) as f:
        sites = [s.strip() for s in f if s.strip()]
    vendor_only = [s for s in sites if any(s.split(" ", 1)[-1].startswith(v) for v in VENDOR_ONLY)]
    unlaunched = [s for s in sites if s not in launched and s not in vendor_only]
    print(f"sim coverage: {len(rows)} GPU kernel rows, {len(rows) - len(missing)} ran; "
          f"{len(sites)} launch sites, {len([s for s in sites if s in launched])} launched, "
          f"{len(vendor_only)} reached only after a vendor library call (not in this flavour)")
    for op, variant, kernel in missing:
        print(f"  NOT RUN: op {op}, {variant} kernel {kernel}")
    for s in unlaunched:
        print(f"  NOT LAUNCHED: {s}")
    return 1 if missing or unlaunched else 0


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == "check":
    sys.exit(check(sys.argv[2], sys.argv[3:]))
