"""Drive every GPU kernel once on small, odd shapes -- for compute-sanitizer (memcheck, racecheck,
initcheck) on a machine with a GPU: `compute-sanitizer --tool memcheck python3 bench/gpu_sanitize.py`.

Each op runs with impl="handwritten" and impl="vendor", every registered GPU kernel of the
GEMM / convolution families is forced once by name, and one training step plus fp32 and int8
inference passes run for each model of the zoo (hipgrad.profiling.compare). Results are checked loosely
against the CPU backend so a kernel that ran but wrote garbage is reported too. Prints one line
per case and exits 1 when a case raised or disagreed.
"""

from __future__ import annotations

import os
import sys
import traceback

import hipgrad as hg
import numpy as np

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


def inputs(*shapes, dtype=np.float32):
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return lambda dev: [hg.tensor(a, device=dev) for a in arrays]


def main() -> int:
    if DEV not in hg.devices():
        print(f"no GPU: {hg.gpu_unavailable_reason()}")
        return 2
    ops = hg.ops
    for impl in ("handwritten", "vendor"):
        a = inputs((37, 53), (53, 29), (37, 29))
        same(f"gemm {impl}", lambda d: ops.gemm(*a(d)[:2], impl=impl))
        at = inputs((53, 37), (29, 53), (37, 29))
        same(f"gemm tA tB beta {impl}", lambda d: ops.gemm(
            *at(d), trans_a=True, trans_b=True, alpha=0.5, beta=0.7, impl=impl))
        c = inputs((3, 5, 17, 19), (7, 5, 3, 3), (7,))
        same(f"conv2d {impl}", lambda d: ops.conv2d(*c(d), stride=2, padding=1, impl=impl))
        same(f"conv2d dilated {impl}", lambda d: ops.conv2d(*c(d), padding=2, dilation=2, impl=impl))
        g = inputs((2, 6, 11, 13), (6, 2, 3, 3), (2, 6, 11, 13))
        same(f"conv2d grouped {impl}", lambda d: ops.conv2d(*g(d)[:2], padding=1, groups=3, impl=impl))
        dw = inputs((2, 8, 15, 9), (8, 1, 3, 3))
        same(f"conv2d depthwise {impl}", lambda d: ops.conv2d(*dw(d), padding=1, groups=8, impl=impl))
        same(f"conv2d_backward_data {impl}", lambda d: ops.conv2d_backward_data(
            g(d)[2], g(d)[1], (2, 6, 11, 13), padding=1, groups=3, impl=impl))
        same(f"conv2d_backward_weight {impl}", lambda d: ops.conv2d_backward_weight(
            g(d)[2], g(d)[0], (6, 2, 3, 3), padding=1, groups=3, impl=impl), tol=5e-3)
        same(f"conv2d_bias_act {impl}", lambda d: ops.conv2d_bias_act(
            *c(d), stride=2, padding=1, activation="relu", impl=impl))
        lin = inputs((19, 33), (21, 33), (21,))
        same(f"linear_bias_act {impl}", lambda d: ops.linear_bias_act(*lin(d), activation="gelu", impl=impl))
        x = inputs((5, 7, 9, 11))
        for kind in ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "elu"):
            same(f"activation {kind} {impl}", lambda d: ops.activation(x(d)[0], kind, impl=impl))
            same(f"activation_backward {kind} {impl}", lambda d: ops.activation_backward(
                x(d)[0], x(d)[0], ops.activation(x(d)[0], kind), kind, impl=impl))
        same(f"max_pool2d {impl}", lambda d: ops.max_pool2d(x(d)[0], 3, stride=2, padding=1, impl=impl))
        same(f"avg_pool2d {impl}", lambda d: ops.avg_pool2d(x(d)[0], 2, impl=impl))
        dyp = inputs((5, 7, 5, 6))
        same(f"max_pool2d_backward {impl}", lambda d: ops.max_pool2d_backward(
            dyp(d)[0], ops.max_pool2d(x(d)[0], 3, stride=2, padding=1)[1], (5, 7, 9, 11), impl=impl))
        dya = inputs((5, 7, 4, 5))
        same(f"avg_pool2d_backward {impl}", lambda d: ops.avg_pool2d_backward(
            dya(d)[0], (5, 7, 9, 11), 2, impl=impl))
        b7 = inputs((7,))
        same(f"bias_add {impl}", lambda d: ops.bias_add(x(d)[0], b7(d)[0], impl=impl))
        same(f"bias_backward {impl}", lambda d: ops.bias_backward(x(d)[0], impl=impl))
        lg = inputs((13, 10))
        labels = rng.integers(0, 10, 13)
        same(f"softmax {impl}", lambda d: ops.softmax(lg(d)[0], impl=impl))
        same(f"softmax_cross_entropy {impl}", lambda d: ops.softmax_cross_entropy(
            lg(d)[0], hg.tensor(labels, device=d), impl=impl))
        ms = inputs((13, 10), (13, 10))
        same(f"mse_loss {impl}", lambda d: ops.mse_loss(*ms(d), impl=impl))
        bn = inputs((4, 6, 5, 7), (6,), (6,))
        same(f"batch_norm {impl}", lambda d: ops.batch_norm(
            *bn(d), hg.tensor(np.zeros(6, np.float32), device=d),
            hg.tensor(np.ones(6, np.float32), device=d), training=True, impl=impl)[0])
        xq = rng.integers(-127, 128, (23, 41)).astype(np.int8)
        wq = rng.integers(-127, 128, (17, 41)).astype(np.int8)
        ws = rng.uniform(0.01, 0.02, 17).astype(np.float32)
        same(f"qgemm {impl}", lambda d: ops.qgemm(
            hg.tensor(xq, device=d), hg.tensor(wq, device=d), 0.03, hg.tensor(ws, device=d), impl=impl))
        xc = rng.integers(-127, 128, (2, 5, 9, 11)).astype(np.int8)
        wc = rng.integers(-127, 128, (7, 5, 3, 3)).astype(np.int8)
        wcs = rng.uniform(0.01, 0.02, 7).astype(np.float32)
        same(f"qconv2d {impl}", lambda d: ops.qconv2d(
            hg.tensor(xc, device=d), hg.tensor(wc, device=d), 0.03, hg.tensor(wcs, device=d),
            padding=1, impl=impl))
        same(f"quantize {impl}", lambda d: ops.quantize(x(d)[0], 0.02, impl=impl))

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
