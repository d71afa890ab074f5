"""Drive every GPU kernel once on small, odd shapes -- for compute-sanitizer (memcheck, racecheck,
initcheck) on a machine with a GPU: `compute-sanitizer --tool memcheck python3 bench/gpu_sanitize.py`.

Every op of the op table (tests/op_cases.py) runs its samples with impl="handwritten" and
impl="vendor" against their float64 references, every registered GPU kernel of the GEMM /
convolution families is forced once by name (checked loosely against the CPU backend), and one
training step plus fp32 and int8 inference passes run for each model of the zoo
(hipgrad.profiling.compare), so a kernel that ran but wrote garbage is reported too. Prints one
line per case and exits 1 when a case raised or disagreed.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import hipgrad as hg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.op_cases
from tests.op_cases import OPS, expected  # noqa: E402
from tests.op_cases import run as run_case  # noqa: E402

DEV = os.environ.get("HIPGRAD_SANITIZE_DEVICE", "gpu:0")  # "cpu": a dry run here
rng = np.random.default_rng(1234)
failures: list[str] = []


def t(shape, dtype=np.float32, device=DEV):
    return hg.tensor(rng.standard_normal(shape).astype(dtype), device=device)


def same(name: str, fn, tol: float = 2e-3) -> None:
    """fn(device) -> tensor or tuple; run on the GPU and the CPU with the same inputs."""
    try:
        got = fn(DEV)
        ref = fn("cpu")
        got = got if isinstance(got, tuple) else (got,)
        ref = ref if isinstance(ref, tuple) else (ref,)
        for g, r in zip(got, ref):
            if g is None:
                continue
            g, r = g.numpy().astype(np.float64), r.numpy().astype(np.float64)
            err = np.linalg.norm(g - r) / max(np.linalg.norm(r), 1e-30)
            if not np.isfinite(g).all() or err > tol:
                raise AssertionError(f"relative error {err:.2e} (finite: {np.isfinite(g).all()})")
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 -- every case is reported, then the next runs
        failures.append(name)
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        traceback.print_exc(limit=3)


def table_case(name: str, info, sample, impl: str) -> None:
    """One sample of the op table on the GPU against its float64 reference, at the table's
    tolerance (a random op, dropout, is checked against its own mask)."""
    try:
        got = run_case(info, sample, DEV, impl)
        want = expected(info, sample, got)
        rtol, atol = info.tol
        for g, w in zip(got, want):
            if w is None:
                continue
            g = g.numpy() if isinstance(g, hg.Tensor) else np.asarray(g)
            np.testing.assert_allclose(g.astype(np.float64), w, rtol=rtol, atol=atol)
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 -- every case is reported, then the next runs
        failures.append(name)
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        traceback.print_exc(limit=3)


def inputs(*shapes, dtype=np.float32):
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return lambda dev: [hg.tensor(a, device=dev) for a in arrays]


def main() -> int:
    if DEV not in hg.devices():
        print(f"no GPU: {hg.gpu_unavailable_reason()}")
        return 2
    ops = hg.ops
    for name, info in sorted(OPS.items()):  # every op's samples from the op table
        if "gpu" not in info.devices:
            continue
        for sample in info.samples(rng):
            for impl in ("handwritten", "vendor"):
                table_case(f"{name} {sample.id} {impl}", info, sample, impl)

    # every registered GPU kernel of the GEMM and convolution families, forced by name
    for row in hg.build_info()["kernels"]:
        if row["backend"] != "gpu" or row["op"] not in ("gemm", "conv2d_forward", "linear_bias_act",
                                                        "conv2d_bias_act"):
            continue
        k = row["kernel"]
        try:
            with ops.force_kernel(row["op"], k):
                if row["op"] == "gemm":
                    a = inputs((67, 45), (45, 70))
                    same(f"forced {k}", lambda d: ops.gemm(*a(d)))
                elif row["op"] == "linear_bias_act":
                    lin = inputs((19, 33), (21, 33), (21,))
                    same(f"forced {k}", lambda d: ops.linear_bias_act(*lin(d)))
                else:
                    c = inputs((3, 5, 17, 19), (7, 5, 3, 3), (7,))
                    fn = ops.conv2d if row["op"] == "conv2d_forward" else ops.conv2d_bias_act
                    same(f"forced {k}", lambda d: fn(*c(d), padding=1))
        except ValueError as e:
            print(f"skip forced {k}: {e}")

    for model, shape in (("mlp", (1, 28, 28)), ("lenet", (1, 28, 28)), ("resnet", (3, 32, 32))):
        try:
            r = hg.compare(model=model, batch=6, device=DEV, input_shape=shape, repeats=1)
            print(f"ok   compare {model}: {r['ratios']}")
        except Exception as e:  # noqa: BLE001
            failures.append(f"compare {model}")
            print(f"FAIL compare {model}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=4)
    print(f"{len(failures)} failures: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
