"""One table of op test cases: every op of hipgrad.ops, declared once.

For each op an `OpInfo` gives
- `family`: its suite tests/ops/test_<family>.py (edge cases, errors, alternates, PyTorch);
  the float64 references live in tests/reference/;
- the parameter lists the family suite parametrizes over (odd sizes, every parameter
  combination that matters), defined here and imported there;
- `samples(rng)`: a few odd-size inputs with their arguments, and `reference`, the float64
  result for them: tests/ops/test_op_table.py runs every sample on every device and impl
  against it, and bench/gpu_sanitize.py runs them on a GPU against the CPU;
- `grad_check`: the test of the family suite that checks this op's gradient (finite
  differences, or the float64 backward), or why none applies;
- `required`: a call with the op's required tensor arguments as parameters (the None checks
  of tests/test_registry.py);
- `out`: how the op writes into a caller's buffer (tests/test_out_arg.py), where it takes out=.

LAYER_CASES, at the end, are the nn layers' cases (tests/nn/test_layers.py): a layer and its
torch.nn twin, an input shape and the float64 forward; every layer of hipgrad.nn has one.

An op in hipgrad.ops without an entry here fails tests/test_registry.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hipgrad import nn, ops
from tests.engine.graph_reference import conv_transpose as conv_transpose_ref
from tests.nn import reference as ref
from tests.nn.cases import (Case, act_ref, attn_ref, block_ref, gpt_block_ref, ln_ref, make_block,
                            mlp_block_ref, mlp_ref, sub, torch_block, torch_transformer,
                            torch_residual, make_fire, torch_fire, fire_ref)
from tests.reference import activation as ref_act
from tests.reference import attention as ref_attn
from tests.reference import conv as ref_conv
from tests.reference import gemm as ref_gemm
from tests.reference import layers as ref_layers
from tests.reference import loss as ref_loss
from tests.reference import optim as ref_optim
from tests.reference import pool as ref_pool
from tests.reference import quant as ref_quant

F, I8, I64 = np.float32, np.int8, np.int64

# ---- the parameter lists of the family suites -------------------------------------------------
ACT_KINDS = ref_act.KINDS
ACT_SHAPES = [(1,), (3,), (7, 31), (129, 3, 7), (40003,)]  # the last one is threaded
FUSED_ACTS = [None, "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "elu", "relu6",
              "hardsigmoid", "hardswish"]
GEMM_SIZES = [(1, 1, 1), (3, 7, 31), (31, 129, 7), (129, 33, 65), (64, 64, 64), (257, 130, 300)]

# (N, C, H, W, K, R, S, stride, padding, dilation, groups, bias)
CONV_CASES = [
    (1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, False),
    (3, 3, 7, 7, 5, 3, 3, 1, 1, 1, 1, True),
    (3, 7, 31, 31, 4, 3, 3, 2, 1, 1, 1, True),
    (1, 3, 129, 31, 2, 5, 3, 3, 2, 1, 1, True),
    (3, 1, 9, 13, 3, 3, 3, (1, 2), (2, 0), 2, 1, False),
    (3, 3, 5, 5, 4, 5, 5, 1, 0, 1, 1, True),             # output 1x1
    (1, 2, 3, 3, 2, 1, 1, 1, 2, 1, 1, True),             # padding beyond the kernel
    (3, 3, 1, 31, 4, 1, 3, 1, (0, 1), 1, 1, True),       # one row
    (3, 7, 5, 6, 4, 1, 1, 1, 0, 1, 1, True),             # 1x1: col is x itself
    (1, 3, 7, 7, 2, 1, 1, 2, 0, 1, 1, False),            # 1x1 strided
    (3, 6, 5, 5, 9, 1, 1, 1, 0, 1, 3, False),            # 1x1 grouped
    (3, 4, 11, 10, 6, 3, 3, 1, 1, 1, 2, True),           # groups=2
    (1, 6, 17, 19, 4, 3, 2, 3, 2, 2, 2, False),          # groups=2, strided, dilated
    (1, 3, 9, 9, 6, 3, 3, 1, 1, 1, 3, True),             # groups=C, two filters per channel
    (3, 7, 15, 15, 7, 3, 3, 1, 1, 1, 7, True),           # depthwise
    (1, 3, 31, 29, 3, 5, 5, (2, 3), 2, 2, 3, True),      # depthwise, strided, dilated
    (3, 3, 8, 5, 3, 3, 1, (3, 2), (0, 1), (1, 2), 3, False),  # depthwise, pairs
    (3, 1, 12, 12, 1, 3, 3, 2, 1, 1, 1, True),           # C = K = 1: depthwise too
    (3, 4, 5, 6, 4, 3, 3, 1, 3, 1, 4, True),             # depthwise, padding > kernel
    (1, 2, 6, 40, 2, 3, 3, 1, 1, 1, 2, False),           # depthwise, wide rows
    (3, 3, 10, 21, 3, 3, 5, 1, (1, 4), (2, 2), 3, True),  # depthwise, dilated
    (2, 3, 9, 17, 3, 3, 3, 2, 0, 1, 3, False),           # depthwise, Q = 8 fills the buffer
    (3, 16, 24, 24, 32, 3, 3, 1, 1, 1, 1, True),         # big per image: threaded GEMM
    # narrow output planes (P*Q < 256): several images per GEMM, chunks with a short last one
    (37, 5, 4, 4, 7, 5, 5, 1, 2, 1, 1, True),            # LeNet's 4x4 planes, 17 images a GEMM
    (21, 3, 9, 7, 4, 3, 2, (2, 1), (1, 0), (1, 2), 1, False),  # strided (gather path), dilated
    (19, 6, 5, 6, 9, 3, 3, 1, 1, 1, 3, True),            # grouped
    (23, 4, 3, 3, 5, 1, 1, 1, 0, 1, 1, True),            # 1x1 (batched, col is a copy)
    (9, 2, 17, 2, 3, 2, 1, 1, (3, 0), 1, 1, True),       # Q = 2, padding taller than the kernel
]
FUSED_CONV_CASES = [
    (1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, False),
    (3, 3, 7, 7, 5, 3, 3, 1, 1, 1, 1, True),
    (3, 7, 31, 31, 4, 3, 3, 2, 1, 1, 1, True),
    (1, 3, 129, 31, 2, 5, 3, 3, 2, 1, 1, False),
    (3, 1, 9, 13, 3, 3, 3, (1, 2), (2, 0), 2, 1, True),
    (3, 7, 5, 6, 4, 1, 1, 1, 0, 1, 1, True),              # 1x1: col is x itself
    (3, 4, 11, 10, 6, 3, 3, 1, 1, 1, 2, True),            # groups=2
    (1, 6, 17, 19, 4, 3, 2, 3, 2, 2, 2, False),           # groups=2, strided, dilated
    (3, 7, 15, 15, 7, 3, 3, 1, 1, 1, 7, True),            # depthwise
    (1, 3, 31, 29, 3, 5, 5, (2, 3), 2, 2, 3, False),      # depthwise, strided, dilated
    (1, 3, 9, 9, 6, 3, 3, 1, 1, 1, 3, True),              # groups=C, two filters per channel
    (3, 16, 24, 24, 32, 3, 3, 1, 1, 1, 1, True),          # big per image: threaded GEMM
    (37, 5, 4, 4, 7, 5, 5, 1, 2, 1, 1, True),             # narrow planes: images batched per GEMM
    (19, 6, 5, 6, 9, 3, 3, (2, 1), 1, 1, 3, False),       # batched, grouped, strided
    (22, 3, 6, 6, 4, 3, 3, 1, 0, 1, 1, True),             # batched, no padding
]
LINEAR_SIZES = [(1, 1, 1), (3, 7, 31), (7, 31, 3), (31, 129, 7), (129, 31, 129), (5, 9, 0),
                (64, 1000, 300)]

# (x shape, kernel, stride (None: = kernel), padding): odd and non-square sizes, kernels 1-3,
# strides 1-3, padding 0-1, windows hanging over the edge, the last one large enough to thread.
POOL_CASES = [
    ((2, 3, 7, 9), 1, None, 0),
    ((2, 3, 7, 9), 2, None, 0),
    ((1, 3, 31, 33), 3, 2, 1),
    ((2, 1, 7, 13), (3, 2), (1, 3), (1, 0)),
    ((1, 2, 9, 8), (2, 3), (3, 1), (0, 1)),
    ((1, 2, 7, 7), 1, 3, 0),
    ((1, 2, 3, 129), 2, 2, 1),
    ((1, 1, 3, 3), 3, None, 1),
    ((1, 2, 1, 7), (2, 1), (1, 2), (1, 0)),
    ((1, 1, 1, 1), 3, 1, 1),
    ((4, 9, 31, 33), 2, None, 0),
]

LOSS_SIZES = [(1, 1), (1, 7), (3, 3), (7, 31), (31, 7), (129, 10), (5, 129), (300, 257)]
ELEMENTWISE_SHAPES = [(1,), (3,), (7, 31), (129, 3, 7), (40_000,)]
BN_SHAPES = [(3, 1), (7, 3), (129, 31), (2, 3, 1, 1), (3, 7, 5, 3), (4, 3, 31, 33),
             (1100, 31), (8, 5, 33, 31)]  # the last two run threaded
DROPOUT_PS = [0.0, 0.1, 0.5, 0.9]
DROPOUT_SHAPES = [(1,), (3,), (7, 31), (129, 5, 3)]
EMBEDDING_CASES = [(1, 1, (1,)), (3, 7, (5,)), (7, 3, (2, 3)), (31, 129, (4, 7)), (129, 31, (3, 2, 5)),
                   (50, 300, (200,)), (1000, 2, (3000,))]

OPTIM_SHAPES = [(1,), (3,), (7, 31), (129, 3), (33_001,)]  # the last one runs threaded
SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.05, "weight_decay": 0.01},
    {"lr": 0.05, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
    {"lr": 0.02, "momentum": 0.8, "nesterov": True},
    {"lr": 0.02, "momentum": 0.5, "weight_decay": 0.1, "nesterov": True},
]
ADAM_CASES = [
    {"lr": 1e-2},
    {"lr": 1e-3, "beta1": 0.5, "beta2": 0.9, "eps": 1e-6},
    {"lr": 1e-2, "weight_decay": 0.1},
    {"lr": 1e-2, "weight_decay": 0.1, "decoupled": True},
    {"lr": 3e-3, "beta1": 0.0, "beta2": 0.0, "weight_decay": 0.01, "decoupled": True},
]
QUANT_ACTS = FUSED_ACTS
# Odd K (byte-wise tails), K % 4 == 0 (word loads, and the vendor int8 GEMM where N % 4 == 0),
# several tiles with ragged edges, K = 0, and a shape large enough for the 128 x 128 GPU tiles.
QGEMM_SIZES = [(1, 1, 1), (3, 7, 31), (31, 5, 129), (67, 33, 300), (130, 68, 36), (5, 3, 0),
               (1500, 1500, 21)]


# ---- graph-plan ops (tests/ops/test_binary.py, tests/ops/test_shape.py) --------------------------
# (a shape, b shape): same shape, NCHW * NC11, NCHW * C11, a scalar either side, both sides
# broadcast, rank 6, a zero-size axis.
BINARY_SHAPES = [((7, 31), (7, 31)), ((3, 5, 7, 9), (3, 5, 1, 1)), ((2, 5, 7, 3), (5, 1, 1)),
                 ((3, 5, 7), ()), ((), (4, 3)), ((1, 5, 1, 9), (3, 1, 7, 1)), ((5, 1, 3), (7, 1)),
                 ((2, 1, 3, 1, 2, 3), (1, 3, 1, 2, 1, 3)), ((4, 129), (129,)), ((3, 1), (3, 0)),
                 ((2, 7, 33, 40), (2, 7, 33, 40)), ((1, 3, 1, 1), (2, 3, 5, 7))]
BINARY_KINDS = ("add", "sub", "mul", "div")


def _binary_operands(rng, sa, sb, kind):
    a = _normal(rng, *sa)
    b = _normal(rng, *sb)
    if kind == "div":  # |b| in [0.5, 2]: no quotient near a pole
        b = (np.sign(b) + (b == 0)) * rng.uniform(0.5, 2.0, sb)
    return np.asarray(a, F), np.asarray(b, F)  # 0-d arrays, not NumPy scalars


def _binary_samples(rng):
    return [Sample((*_binary_operands(rng, sa, sb, kind), kind), {}, f"{sa}-{sb}-{kind}")
            for (sa, sb), kind in zip(BINARY_SHAPES[:8], BINARY_KINDS * 2)]


def _binary_reference(a, b, kind):
    a, b = _f64(a), _f64(b)
    return {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b}[kind]


def _shape_samples(rng, which):
    if which == "concat":
        return [Sample(([_normal(rng, 2, c, 5) for c in (3, 1, 4)], 1), {}, "axis1"),
                Sample(([_normal(rng, 7, 3), _normal(rng, 2, 3)], 0), {}, "axis0"),
                Sample(([_normal(rng, 2, 3, 5, 1), _normal(rng, 2, 3, 5, 2)], -1), {}, "axis-1"),
                Sample(([_normal(rng, 3, 0, 2), _normal(rng, 3, 4, 2)], 1), {}, "empty-part")]
    if which == "split":
        return [Sample((_normal(rng, 2, 8, 5), 1, [3, 1, 4]), {}, "axis1"),
                Sample((_normal(rng, 9, 3), 0, [2, 0, 7]), {}, "axis0-empty-part"),
                Sample((_normal(rng, 2, 3, 7), -1, [7]), {}, "whole")]
    if which == "transpose":
        return [Sample((_normal(rng, 2, 3, 5, 7), [0, 2, 3, 1]), {}, "nchw-nhwc"),
                Sample((_normal(rng, 31, 17), [1, 0]), {}, "2d"),
                Sample((_normal(rng, 2, 3, 4, 5, 3), [0, 2, 1, 3, 4]), {}, "heads"),
                Sample((_normal(rng, 3, 1, 5), [1, 2, 0]), {}, "size-1")]
    if which == "reduce_mean":
        return [Sample((_normal(rng, 2, 3, 5, 7), [2, 3]), {"keepdims": True}, "spatial"),
                Sample((_normal(rng, 3, 129), [-1]), {"keepdims": False}, "rows"),
                Sample((_normal(rng, 4, 5, 6), [0, 2]), {"keepdims": False}, "outer-inner"),
                Sample((_normal(rng, 3, 70, 2), [1]), {"keepdims": True}, "middle")]
    return [Sample((_normal(rng, 2, 3, 5, 7), [1, 0, 2, 3]), {"value": 0.0}, "asym"),
            Sample((_normal(rng, 1, 2, 3, 3), [0, 0, 0, 0]), {"value": 1.5}, "none"),
            Sample((_normal(rng, 1, 1, 4, 9), [2, 2, 2, 2]), {"value": -np.inf}, "-inf")]


def _pad_reference(x, pads, *, value):
    t, l, b, r = pads
    return np.pad(_f64(x), ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


_GRAPH_OPS_NO_GRAD = "none: an inference op of graph plans (no backward op)"


# ---- the table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """Positional and keyword arguments of one call (NumPy arrays become tensors on the device
    under test; anything else is passed as it is)."""

    args: tuple
    kwargs: dict = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True)
class OutCase:
    """The op writing into `out`: inputs {name: (shape, dtype)}, call(tensors, out) -> result,
    the output's shape and dtype, and a float input that out may be made to overlap (or None)."""

    inputs: dict
    call: Callable[[dict, Any], Any]
    shape: tuple
    dtype: Any
    overlap: str | None


@dataclass(frozen=True)
class Gradient:
    """How the op's backward ops give the gradient of L = sum(w * output0) with respect to the
    float inputs at positions `wrt`: backward(args, outputs, w, **kwargs) -> one tensor per
    `wrt` entry (args and outputs as tensors on the device under test, kwargs the sample's; w
    is 1 where output0 is a scalar). tests/ops/test_op_table.py checks it
    against central differences of L (step `eps`) on the sample `sample(rng)`, built so that no
    step crosses a kink, a tie or a rounding boundary of the op."""

    wrt: tuple[int, ...]
    backward: Callable[[tuple, tuple, Any], tuple]
    sample: Callable[[np.random.Generator], Sample]
    eps: float = 1e-2
    tol: tuple[float, float] = (1e-2, 1e-3)


@dataclass(frozen=True)
class OpInfo:
    name: str
    family: str
    samples: Callable[[np.random.Generator], list[Sample]]
    reference: Callable[..., Any]        # float64 outputs for a sample's args and kwargs
    grad_check: str                      # test in the family suite, "gradient" or "none: <why>"
    required: Callable[..., Any]
    params: dict[str, Sequence] = field(default_factory=dict)
    out: OutCase | None = None
    tol: tuple[float, float] = (1e-4, 1e-4)  # rtol, atol of the float64 comparison
    result: Callable[[Any, tuple], Any] | None = None  # outputs from (return value, args)
    uses_outputs: bool = False           # reference(*args, got=outputs, **kwargs): random ops
    devices: tuple[str, ...] = ("cpu", "gpu")  # the backends that run the op
    gradient: Gradient | None = None     # the gradient check of an op with backward ops

    def outputs(self, returned: Any, args: tuple) -> tuple:
        got = returned if self.result is None else self.result(returned, args)
        return got if isinstance(got, tuple) else (got,)


def _normal(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(F)


def _conv_sample(rng, case, scaled=False):
    N, C, H, W, K, R, S, st, pd, dl, g, b = case
    x = _normal(rng, N, C, H, W)
    w = _normal(rng, K, C // g, R, S)
    if scaled:
        w = (w / np.sqrt(C // g * R * S)).astype(F)
    bias = _normal(rng, K) if b else None
    return x, w, bias, {"stride": st, "padding": pd, "dilation": dl, "groups": g}


def _conv_out_shape(x, w, hyper):
    (sh, sw), (ph, pw), (dh, dw) = (ref_conv.pair(hyper[k]) for k in ("stride", "padding", "dilation"))
    return (x.shape[0], w.shape[0], ref_conv.out_size(x.shape[2], w.shape[2], sh, ph, dh),
            ref_conv.out_size(x.shape[3], w.shape[3], sw, pw, dw))


def _activation_samples(rng):
    return [Sample((_normal(rng, *shape, scale=3.0), kind),
                   {"alpha": 0.3 if kind in ("leaky_relu", "elu") else 0.01}, f"{kind}-{shape}")
            for kind, shape in zip(ACT_KINDS, [(1,), (3,), (7, 31), (129, 3, 7), (5,), (3, 5),
                                               (11,), (7, 3), (13,), (5, 9)])]


def _activation_backward_samples(rng):
    out = []
    for s in _activation_samples(rng):
        x, kind = s.args
        y = ref_act.activation(x, kind, s.kwargs["alpha"]).astype(F)
        out.append(Sample((_normal(rng, *x.shape), x, y, kind), s.kwargs, s.id))
    return out


def _pool_samples(rng, backward=None):
    out = []
    for shape, k, st, pd in POOL_CASES[:5]:
        x = ((rng.permutation(int(np.prod(shape))) - 7) * 0.25).reshape(shape).astype(F)  # no ties
        kw = {"stride": st, "padding": pd}
        if backward is None:
            out.append(Sample((x, k), kw, f"{shape}-k{k}"))
            continue
        y, argmax = ref_pool.max_pool2d(x, *_geometry(k, st, pd))
        dy = _normal(rng, *y.shape)
        out.append(Sample((dy, argmax.astype(I64), shape) if backward == "max" else (dy, shape, k),
                          {} if backward == "max" else kw, f"{shape}-k{k}"))
    return out


def _geometry(kernel, stride, padding):
    k = ref_conv.pair(kernel)
    return k, k if stride is None else ref_conv.pair(stride), ref_conv.pair(padding)


def _bn_samples(rng, backward=False):
    out = []
    for shape, training in [((3, 1), True), ((7, 3), False), ((3, 7, 5, 3), True), ((2, 3, 1, 1), False)]:
        C = shape[1]
        x = _normal(rng, *shape)
        gamma, beta = _normal(rng, C), _normal(rng, C)
        rm, rv = _normal(rng, C), rng.uniform(0.5, 2.0, C).astype(F)
        if not backward:
            out.append(Sample((x, gamma, beta, rm, rv), {"training": training}, f"{shape}-{training}"))
            continue
        _, mean, invstd, _, _ = ref_layers.batch_norm(x, gamma, beta, rm, rv, training)
        out.append(Sample((_normal(rng, *shape), x, gamma, mean.astype(F), invstd.astype(F)),
                          {"training": training}, f"{shape}-{training}"))
    return out


def _bn_reference(x, gamma, beta, rm, rv, *, training):
    y, mean, invstd, _, _ = ref_layers.batch_norm(x, gamma, beta, rm, rv, training)
    return (y, mean, invstd) if training else (y, None, None)


def _gemm_samples(rng):
    out = []
    for (M, N, K), (ta, tb) in zip(GEMM_SIZES[:4], [(False, False), (True, False), (False, True), (True, True)]):
        a = _normal(rng, *((K, M) if ta else (M, K)))
        b = _normal(rng, *((N, K) if tb else (K, N)))
        out.append(Sample((a, b, _normal(rng, M, N)), {"trans_a": ta, "trans_b": tb, "alpha": 0.7,
                                                        "beta": -1.3}, f"{M}x{N}x{K}-{ta}{tb}"))
    return out


def _linear_samples(rng):
    out = []
    for (M, N, K), act in zip(LINEAR_SIZES[:5], FUSED_ACTS[1:6]):
        out.append(Sample((_normal(rng, M, K), _normal(rng, N, K, scale=0.3), _normal(rng, N)),
                          {"activation": act, "alpha": 0.2}, f"{M}x{N}x{K}-{act}"))
    return out


def _linear_reference(x, w, bias, *, activation, alpha):
    z = ref_gemm.gemm(x, w, None, False, True) + np.asarray(bias, np.float64)
    return z if activation is None else ref_act.activation(z, activation, alpha)


def _packed_samples(rng):
    return [Sample((x, ops.pack_linear_weight(w), b), dict(kw, n=w.shape[0]), s.id)
            for s in _linear_samples(rng) for (x, w, b), kw in [(s.args, s.kwargs)]]


def _unpack(packed, n):
    p = packed.numpy()  # (panels, K, NR): w[q * NR + j][k] at [q][k][j]
    return np.ascontiguousarray(p.transpose(0, 2, 1).reshape(-1, p.shape[1])[:n])


def _fused_conv_samples(rng):
    out = []
    for case, act in zip(FUSED_CONV_CASES[:6], FUSED_ACTS[:6]):
        x, w, bias, hyper = _conv_sample(rng, case, scaled=True)
        out.append(Sample((x, w, bias), dict(hyper, activation=act, alpha=0.2), f"{case[:7]}-{act}"))
    # with a residual: per-image GEMM, 1x1, depthwise, narrow planes batched per GEMM
    for case, act in zip([FUSED_CONV_CASES[i] for i in (2, 5, 8, 12)], FUSED_ACTS[1:5]):
        x, w, bias, hyper = _conv_sample(rng, case, scaled=True)
        res = _normal(rng, *_conv_out_shape(x, w, hyper))
        out.append(Sample((x, w, bias), dict(hyper, activation=act, alpha=0.2, residual=res),
                          f"{case[:7]}-{act}-residual"))
    return out


def _fused_conv_reference(x, w, bias, *, activation, alpha, residual=None, **hyper):
    z = ref_conv.conv2d(x, w, bias, **hyper)
    if residual is not None:
        z = z + np.asarray(residual, np.float64)
    return z if activation is None else ref_act.activation(z, activation, alpha)


def _packed_conv_samples(rng):
    """The groups-1 fused conv samples with w packed (conv2d_bias_act_packed)."""
    out = []
    for s in _fused_conv_samples(rng):
        (x, w, bias), kw = s.args, dict(s.kwargs)
        if kw.pop("groups") != 1:
            continue
        packed = ops.pack_linear_weight(np.ascontiguousarray(w.reshape(w.shape[0], -1)))
        out.append(Sample((x, packed, w.shape, bias), kw, s.id))
    return out


def _packed_conv_reference(x, packed, w_shape, bias, **kw):
    w = _unpack(packed, w_shape[0]).reshape(w_shape)
    return _fused_conv_reference(x, w, bias, groups=1, **kw)


def _conv_samples(rng, which):
    out = []
    for case in CONV_CASES[:6] + CONV_CASES[11:15]:
        x, w, bias, hyper = _conv_sample(rng, case)
        y_shape = _conv_out_shape(x, w, hyper)
        dy = _normal(rng, *y_shape)
        args = {"fwd": (x, w, bias), "data": (dy, w, x.shape), "weight": (dy, x, w.shape)}[which]
        out.append(Sample(args, hyper, str(case[:7])))
    return out


def _qgemm_samples(rng):
    out = []
    for (M, N, K), act in zip(QGEMM_SIZES[:6], QUANT_ACTS):
        xq = rng.integers(-127, 128, (M, K)).astype(I8)
        wq = rng.integers(-127, 128, (N, K)).astype(I8)
        out.append(Sample((xq, wq, 0.01, rng.uniform(0.001, 0.01, N).astype(F), _normal(rng, N)),
                          {"activation": act, "alpha": 0.2}, f"{M}x{N}x{K}-{act}"))
    return out


def _qconv_samples(rng):
    out = []
    for cfg in [dict(x=(1, 1, 5, 5), w=(1, 1, 3, 3)),
                dict(x=(3, 3, 9, 7), w=(5, 3, 3, 3), stride=(2, 1), padding=(1, 2)),
                dict(x=(2, 4, 11, 11), w=(6, 2, 3, 3), groups=2, dilation=2, padding=1)]:
        cfg = dict(cfg)
        xs, ws = cfg.pop("x"), cfg.pop("w")
        xq = rng.integers(-127, 128, xs).astype(I8)
        wq = rng.integers(-127, 128, ws).astype(I8)
        out.append(Sample((xq, wq, 0.02, rng.uniform(0.001, 0.01, ws[0]).astype(F), _normal(rng, ws[0])),
                          dict(cfg, activation="relu"), str(xs)))
    return out


def _qunpack(packed, rows):
    """wq (rows, K) from qpack_weight's buffer: header {tag, rows, K, groups, group}, then rows
    of groups words holding 4 int8 or 2 int16 each."""
    p = packed.numpy()
    K, groups, group = int(p[2]), int(p[3]), int(p[4])
    body = np.ascontiguousarray(p[5:5 + rows * groups]).view(np.int8 if group == 4 else np.int16)
    return body.reshape(rows, groups * group)[:, :K].astype(np.float64)


def _qconv_reference(xq, wq, x_scale, w_scale, bias, *, activation, stride=1, padding=0,
                     dilation=1, groups=1):
    return ref_quant.qconv2d(xq, wq, x_scale, w_scale, bias, ref_conv.pair(stride),
                             ref_conv.pair(padding), ref_conv.pair(dilation), groups, activation)


def _sgd_samples(rng):
    return [Sample((_normal(rng, *shape), _normal(rng, *shape),
                    _normal(rng, *shape) if case.get("momentum") else None), case, f"{shape}-{i}")
            for i, (shape, case) in enumerate(zip(OPTIM_SHAPES[:4] + OPTIM_SHAPES[:2], SGD_CASES))]


def _adam_samples(rng):
    return [Sample((_normal(rng, *shape), _normal(rng, *shape), _normal(rng, *shape, scale=0.1),
                    rng.uniform(0.0, 0.1, shape).astype(F)), dict(case, step=3), f"{shape}-{i}")
            for i, (shape, case) in enumerate(zip(OPTIM_SHAPES[:4] + OPTIM_SHAPES[:1], ADAM_CASES))]


def _sce_samples(rng, backward=False):
    out = []
    for N, C in LOSS_SIZES[:6]:
        logits = _normal(rng, N, C, scale=3.0)
        labels = rng.integers(0, C, N).astype(I64 if C % 2 else np.int32)
        if backward:
            logits = ref_loss.softmax(logits).astype(F)
        out.append(Sample((logits, labels), {}, f"{N}x{C}"))
    return out


def _embedding_samples(rng, backward=False):
    out = []
    for num, dim, idx_shape in EMBEDDING_CASES[:5]:
        idx = rng.integers(0, num, idx_shape).astype(I64)
        args = (_normal(rng, *idx_shape, dim), idx, num) if backward else (_normal(rng, num, dim), idx)
        out.append(Sample(args, {}, f"{num}x{dim}-{idx_shape}"))
    return out


def _elementwise(rng, n_inputs, extra=()):
    return [Sample(tuple(_normal(rng, *shape) for _ in range(n_inputs)) + tuple(extra), {}, str(shape))
            for shape in ELEMENTWISE_SHAPES[:4]]


def _dropout_samples(rng):
    return [Sample((_normal(rng, *shape), p, int(rng.integers(0, 2**62))), {}, f"{shape}-{p}")
            for shape, p in zip(DROPOUT_SHAPES, DROPOUT_PS)]


def _dropout_backward_samples(rng):
    return [Sample((_normal(rng, *shape), (rng.random(shape) >= p).astype(np.uint8), p), {},
                   f"{shape}-{p}") for shape, p in zip(DROPOUT_SHAPES, DROPOUT_PS)]


def _mse_samples(rng):
    return _elementwise(rng, 2)


def _f64(a):
    return np.asarray(a, np.float64)


def _op(name: str) -> Callable[..., Any]:
    return getattr(ops, name)


def _away_from_zero(rng, *shape):
    """Values 0.1 .. 4 in magnitude, multiples of 2^-7, none within 0.1 of +-3: no kink of relu /
    leaky_relu / elu / relu6 / hardsigmoid / hardswish within a step of 2^-7, and x +- 2^-7 exact
    in float32."""
    x = rng.choice([-1, 1], shape) * rng.uniform(0.1, 4.0, shape)
    x = np.where(np.abs(np.abs(x) - 3.0) < 0.1, np.sign(x) * 2.5, x)
    return (np.round(x * 128) / 128).astype(F)


def _distinct(rng, *shape):
    """Distinct values 0.25 apart: a step of 1e-2 changes no max-pool choice."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n // 2) * 0.25).reshape(shape).astype(F)


_ACT_GRAD = Gradient(
    (0,), lambda a, out, w, **_: (ops.activation_backward(w, a[0], out[0], a[1]),),
    lambda rng: Sample((_away_from_zero(rng, 5, 7), str(rng.choice(ACT_KINDS))), {}),
    eps=2.0**-7, tol=(1e-3, 2e-4))


# ---- language-model ops: layer norm, attention, bmm, gradient-norm helpers --------------------
LN_SHAPES = [(1, 8), (3, 7, 31), (2, 129, 64), (5, 128)]
ATTN_SHAPES = [(1, 1, 1, 1, 8), (2, 3, 7, 7, 16), (1, 2, 5, 9, 32), (1, 1, 129, 129, 64)]  # B H Tq Tk D


def _ln_samples(rng, backward=False):
    out = []
    for shape, affine in zip(LN_SHAPES, [True, False, True, True]):
        x = _normal(rng, *shape, scale=2.0)
        w, b = (_normal(rng, shape[-1]), _normal(rng, shape[-1])) if affine else (None, None)
        if not backward:
            out.append(Sample((x, w, b), {"eps": 1e-5}, f"{shape}-{affine}"))
            continue
        _, mean, rstd = ref_attn.layer_norm(x)
        out.append(Sample((_normal(rng, *shape), x, w, mean.astype(F), rstd.astype(F)), {},
                          f"{shape}-{affine}"))
    return out


def _attn_samples(rng, backward=False):
    out = []
    for (B, H, Tq, Tk, D), causal in zip(ATTN_SHAPES, [False, True, True, False]):
        q, k, v = _normal(rng, B, H, Tq, D), _normal(rng, B, H, Tk, D), _normal(rng, B, H, Tk, D)
        kw = {"causal": causal, "scale": None if causal else 0.3}
        if not backward:
            out.append(Sample((q, k, v), kw, f"{(B, H, Tq, Tk, D)}-{causal}"))
            continue
        o, lse, _ = ref_attn.attention(q, k, v, causal, kw["scale"])
        out.append(Sample((_normal(rng, B, H, Tq, D), q, k, v, o.astype(F), lse.astype(F)), kw,
                          f"{(B, H, Tq, Tk, D)}-{causal}"))
    return out


def _bmm_samples(rng):
    out = []
    for (Bt, M, N, K), (ta, tb) in zip([(1, 1, 1, 1), (3, 7, 5, 31), (2, 33, 9, 17), (5, 4, 129, 8)],
                                       [(False, False), (True, False), (False, True), (True, True)]):
        a = _normal(rng, *((Bt, K, M) if ta else (Bt, M, K)))
        b = _normal(rng, *((Bt, N, K) if tb else (Bt, K, N)))
        out.append(Sample((a, b), {"trans_a": ta, "trans_b": tb, "alpha": 0.7}, f"{Bt}x{M}x{N}x{K}"))
    return out


_TABLE = [
    # ---- activation ----
    OpInfo("activation", "activation", _activation_samples,
           lambda x, kind, *, alpha: ref_act.activation(x, kind, alpha),
           "test_activation_backward_matches_finite_differences",
           lambda x: ops.activation(x, "relu"), gradient=_ACT_GRAD,
           params={"kinds": ACT_KINDS, "shapes": ACT_SHAPES}, tol=(2e-6, 1e-6),
           out=OutCase({"x": ((4, 6), F)}, lambda t, out: ops.activation(t["x"], "relu", out=out),
                       (4, 6), F, "x")),
    OpInfo("activation_backward", "activation", _activation_backward_samples,
           lambda dy, x, y, kind, *, alpha: ref_act.activation_backward(dy, x, kind, alpha),
           "test_activation_backward_matches_finite_differences",
           lambda dy, x, y: ops.activation_backward(dy, x, y, "relu"),
           params={"kinds": ACT_KINDS, "shapes": ACT_SHAPES}, tol=(1e-5, 1e-5)),
    # ---- gemm ----
    OpInfo("gemm", "gemm", _gemm_samples,
           lambda a, b, c, *, trans_a, trans_b, alpha, beta: ref_gemm.gemm(a, b, c, trans_a, trans_b,
                                                                           alpha, beta),
           "none: linear in each input; test_gemm_matches_float64 covers every transpose, which "
           "is how the backward uses it",
           lambda a, b: ops.gemm(a, b), params={"sizes": GEMM_SIZES}, tol=(1e-4, 2e-3),
           out=OutCase({"a": ((5, 3), F), "b": ((7, 3), F)},
                       lambda t, out: ops.gemm(t["a"], t["b"], trans_b=True, out=out), (5, 7), F, "a")),
    # ---- conv ----
    OpInfo("conv2d", "conv", lambda rng: _conv_samples(rng, "fwd"), ref_conv.conv2d,
           "test_conv2d_backward_matches_finite_differences",
           gradient=Gradient(
               (0, 1, 2), lambda a, out, w, **hy: (
                   ops.conv2d_backward_data(w, a[1], a[0].shape, **hy),
                   ops.conv2d_backward_weight(w, a[0], a[1].shape, **hy), ops.bias_backward(w)),
               lambda rng: Sample(_conv_sample(rng, (2, 4, 6, 5, 4, 3, 2, (2, 1), 1, (1, 2), 2, True))[:3],
                                  {"stride": (2, 1), "padding": 1, "dilation": (1, 2), "groups": 2}),
               eps=0.5, tol=(1e-4, 1e-4)),
           required=lambda x, w: ops.conv2d(x, w), params={"cases": CONV_CASES}, tol=(1e-4, 2e-3),
           out=OutCase({"x": ((2, 3, 7, 7), F), "w": ((4, 3, 3, 3), F), "bias": ((4,), F)},
                       lambda t, out: ops.conv2d(t["x"], t["w"], t["bias"], padding=1, out=out),
                       (2, 4, 7, 7), F, "x")),
    OpInfo("conv2d_backward_data", "conv", lambda rng: _conv_samples(rng, "data"),
           ref_conv.conv2d_backward_data, "test_conv2d_backward_matches_finite_differences",
           lambda dy, w: ops.conv2d_backward_data(dy, w, (1, 1, 2, 2)),
           params={"cases": CONV_CASES}, tol=(1e-4, 5e-3)),
    OpInfo("conv2d_backward_weight", "conv", lambda rng: _conv_samples(rng, "weight"),
           ref_conv.conv2d_backward_weight, "test_conv2d_backward_matches_finite_differences",
           lambda dy, x: ops.conv2d_backward_weight(dy, x, (1, 1, 1, 1)),
           params={"cases": CONV_CASES}, tol=(1e-4, 5e-3)),
    OpInfo("bias_add", "conv", lambda rng: [
               Sample((_normal(rng, *s), _normal(rng, s[1])), {}, str(s))
               for s in [(1, 1), (3, 7), (3, 7, 31), (1, 3, 1, 1), (2, 5, 3, 4)]],
           ref_conv.bias_add, "gradient",
           gradient=Gradient((0, 1), lambda a, out, w, **_: (w, ops.bias_backward(w)),
                             lambda rng: Sample((_normal(rng, 3, 4, 5), _normal(rng, 4))), eps=0.5,
                             tol=(1e-4, 1e-4)),
           required=lambda x, bias: ops.bias_add(x, bias), tol=(1e-6, 1e-6),
           out=OutCase({"x": ((5, 7), F), "bias": ((7,), F)},
                       lambda t, out: ops.bias_add(t["x"], t["bias"], out=out), (5, 7), F, "x")),
    OpInfo("bias_backward", "conv", lambda rng: [Sample((_normal(rng, *s),), {}, str(s))
                                                for s in [(1, 1), (3, 7), (129, 300), (3, 7, 31)]],
           ref_conv.bias_backward, "test_bias_add_and_backward_match_float64",
           lambda dy: ops.bias_backward(dy), tol=(1e-5, 1e-4)),
    # ---- fused ----
    OpInfo("conv2d_bias_act", "fused", _fused_conv_samples, _fused_conv_reference,
           "none: an inference op (no backward); test_conv2d_bias_act_matches_float64_and_unfused",
           lambda x, w: ops.conv2d_bias_act(x, w),
           params={"cases": FUSED_CONV_CASES, "acts": FUSED_ACTS}, tol=(1e-4, 1e-3)),
    OpInfo("linear_bias_act", "fused", _linear_samples, _linear_reference,
           "none: an inference op (no backward); test_linear_bias_act_matches_float64_and_unfused",
           lambda x, w: ops.linear_bias_act(x, w),
           params={"sizes": LINEAR_SIZES, "acts": FUSED_ACTS}, tol=(1e-4, 1e-3)),
    OpInfo("linear_bias_act_packed", "fused", _packed_samples,
           lambda x, packed, bias, *, n, activation, alpha: _linear_reference(
               x, _unpack(packed, n), bias, activation=activation, alpha=alpha),
           "none: an inference op (no backward)",
           lambda x, packed: ops.linear_bias_act_packed(x, packed, n=2), tol=(1e-4, 1e-3),
           devices=("cpu",)),
    OpInfo("conv2d_bias_act_packed", "fused", _packed_conv_samples, _packed_conv_reference,
           "none: an inference op (no backward); tests/ops/test_conv_packed.py",
           lambda x, packed: ops.conv2d_bias_act_packed(x, packed, (2, 1, 1, 1)), tol=(1e-4, 1e-3),
           devices=("cpu",)),
    OpInfo("pack_linear_weight", "fused",
           lambda rng: [Sample((_normal(rng, n, k),), {}, f"{n}x{k}") for n, k in [(1, 1), (7, 31), (65, 9)]],
           lambda w: _f64(w), "none: a layout change (no gradient)",
           lambda w: ops.pack_linear_weight(w), tol=(0, 0),
           result=lambda packed, args: _unpack(packed, args[0].shape[0]), devices=("cpu",)),
    # ---- pool ----
    OpInfo("max_pool2d", "pool", _pool_samples,
           lambda x, k, *, stride, padding: ref_pool.max_pool2d(x, *_geometry(k, stride, padding)),
           "test_pool_backward_matches_finite_differences",
           gradient=Gradient((0,), lambda a, out, w, **_: (ops.max_pool2d_backward(w, out[1], a[0].shape),),
                             lambda rng: Sample((_distinct(rng, 2, 3, 7, 6), 3), {"stride": 2, "padding": 1})),
           required=lambda x: ops.max_pool2d(x, 2), params={"cases": POOL_CASES}, tol=(0, 0),
           out=OutCase({"x": ((2, 3, 7, 7), F)},
                       lambda t, out: ops.max_pool2d(t["x"], 2, out=out, with_argmax=False)[0],
                       (2, 3, 3, 3), F, "x")),
    OpInfo("max_pool2d_backward", "pool", lambda rng: _pool_samples(rng, "max"),
           ref_pool.max_pool2d_backward, "test_pool_backward_matches_finite_differences",
           lambda dy, argmax: ops.max_pool2d_backward(dy, argmax, (1, 1, 2, 2)),
           params={"cases": POOL_CASES}, tol=(1e-6, 1e-6)),
    OpInfo("avg_pool2d", "pool", _pool_samples,
           lambda x, k, *, stride, padding: ref_pool.avg_pool2d(x, *_geometry(k, stride, padding)),
           "test_pool_backward_matches_finite_differences",
           gradient=Gradient((0,), lambda a, out, w, **_: (ops.avg_pool2d_backward(
                                 w, a[0].shape, (2, 3), stride=(1, 2), padding=(1, 0)),),
                             lambda rng: Sample((_normal(rng, 2, 3, 5, 7), (2, 3)),
                                                {"stride": (1, 2), "padding": (1, 0)}),
                             eps=0.5, tol=(1e-4, 1e-4)),
           required=lambda x: ops.avg_pool2d(x, 2), params={"cases": POOL_CASES}, tol=(1e-5, 1e-5),
           out=OutCase({"x": ((2, 3, 7, 7), F)},
                       lambda t, out: ops.avg_pool2d(t["x"], 3, stride=2, padding=1, out=out),
                       (2, 3, 4, 4), F, "x")),
    OpInfo("avg_pool2d_backward", "pool", lambda rng: _pool_samples(rng, "avg"),
           lambda dy, shape, k, *, stride, padding: ref_pool.avg_pool2d_backward(
               dy, shape, *_geometry(k, stride, padding)),
           "test_pool_backward_matches_finite_differences",
           lambda dy: ops.avg_pool2d_backward(dy, (1, 1, 2, 2), 2),
           params={"cases": POOL_CASES}, tol=(1e-5, 1e-5)),
    # ---- layers ----
    OpInfo("add", "layers", lambda rng: _elementwise(rng, 2), lambda a, b: _f64(a) + _f64(b),
           "gradient", lambda a, b: ops.add(a, b),
           gradient=Gradient((0, 1), lambda a, out, w, **_: (w, w),
                             lambda rng: Sample((_normal(rng, 3, 5), _normal(rng, 3, 5))), eps=0.5,
                             tol=(1e-4, 1e-4)),
           params={"shapes": ELEMENTWISE_SHAPES}, tol=(1e-6, 1e-6),
           out=OutCase({"a": ((5, 7), F), "b": ((5, 7), F)},
                       lambda t, out: ops.add(t["a"], t["b"], out=out), (5, 7), F, "b")),
    OpInfo("add_", "layers", lambda rng: _elementwise(rng, 2), lambda a, b: _f64(a) + _f64(b),
           "none: the gradient of a sum is dy itself", lambda a, b: ops.add_(a, b),
           params={"shapes": ELEMENTWISE_SHAPES}, tol=(1e-6, 1e-6)),
    OpInfo("fill_", "layers", lambda rng: _elementwise(rng, 1, (2.5,)),
           lambda t, value: np.full(np.shape(t), value), "none: a constant has no gradient",
           lambda t: ops.fill_(t, 1.0), params={"shapes": ELEMENTWISE_SHAPES}, tol=(0, 0)),
    OpInfo("batch_norm", "layers", _bn_samples, _bn_reference,
           "test_batch_norm_backward_matches_finite_differences",
           gradient=Gradient((0, 1, 2), lambda a, out, w, *, training: ops.batch_norm_backward(
                                 w, a[0], a[1], out[1], out[2], training=training),
                             lambda rng: Sample((_normal(rng, 3, 3, 2, 2), _normal(rng, 3), _normal(rng, 3),
                                                 np.zeros(3, F), np.ones(3, F)), {"training": True}),
                             eps=1e-2, tol=(2e-2, 2e-3)),
           required=lambda x, gamma, beta, running_mean, running_var: ops.batch_norm(
               x, gamma, beta, running_mean, running_var, training=True),
           params={"shapes": BN_SHAPES}, tol=(1e-4, 1e-4),
           out=OutCase({"x": ((3, 4, 5, 5), F), "gamma": ((4,), F), "beta": ((4,), F),
                        "mean": ((4,), F), "var": ((4,), F)},
                       lambda t, out: ops.batch_norm(t["x"], t["gamma"], t["beta"], t["mean"], t["var"],
                                                     training=False, out=out)[0],
                       (3, 4, 5, 5), F, "x")),
    OpInfo("batch_norm_backward", "layers", lambda rng: _bn_samples(rng, backward=True),
           lambda dy, x, gamma, mean, invstd, *, training: ref_layers.batch_norm_backward(
               dy, x, gamma, mean, invstd, training),
           "test_batch_norm_backward_matches_finite_differences",
           lambda dy, x, gamma, save_mean, save_invstd: ops.batch_norm_backward(
               dy, x, gamma, save_mean, save_invstd),
           params={"shapes": BN_SHAPES}, tol=(1e-4, 1e-4)),
    OpInfo("dropout", "layers", _dropout_samples,
           lambda x, p, seed, *, got: (ref_layers.dropout_apply(x, got[1], np.float32(p)), None),
           "test_dropout_backward_matches_finite_differences", lambda x: ops.dropout(x, 0.5, 1),
           gradient=Gradient((0,), lambda a, out, w, **_: (ops.dropout_backward(w, out[1], a[1]),),
                             lambda rng: Sample((_normal(rng, 3, 7), 0.4, 77)), eps=0.5,
                             tol=(1e-4, 1e-4)),
           params={"ps": DROPOUT_PS, "shapes": DROPOUT_SHAPES}, tol=(1e-6, 0), uses_outputs=True),
    OpInfo("dropout_backward", "layers", _dropout_backward_samples,
           lambda dy, mask, p: ref_layers.dropout_apply(dy, mask, np.float32(p)),
           "test_dropout_backward_matches_finite_differences",
           lambda dy, mask: ops.dropout_backward(dy, mask, 0.5),
           params={"ps": DROPOUT_PS, "shapes": DROPOUT_SHAPES}, tol=(1e-6, 0)),
    OpInfo("embedding", "layers", _embedding_samples, ref_layers.embedding,
           "test_embedding_backward_matches_finite_differences",
           gradient=Gradient((0,), lambda a, out, w, **_: (ops.embedding_backward(w, a[1], a[0].shape[0]),),
                             lambda rng: Sample((_normal(rng, 5, 3), np.array([[1, 4], [1, 0], [3, 1]], I64))),
                             eps=0.5, tol=(1e-4, 1e-4)),
           required=lambda weight, idx: ops.embedding(weight, idx),
           params={"cases": EMBEDDING_CASES}, tol=(0, 0),
           out=OutCase({"weight": ((11, 6), F), "idx": ((3, 5), I64)},
                       lambda t, out: ops.embedding(t["weight"], t["idx"], out=out), (3, 5, 6), F,
                       "weight")),
    OpInfo("embedding_backward", "layers", lambda rng: _embedding_samples(rng, backward=True),
           ref_layers.embedding_backward, "test_embedding_backward_matches_finite_differences",
           lambda dy, idx: ops.embedding_backward(dy, idx, 3),
           params={"cases": EMBEDDING_CASES}, tol=(1e-5, 1e-5)),
    # ---- loss ----
    OpInfo("softmax", "loss", lambda rng: [Sample((_normal(rng, *s, scale=3.0),), {}, str(s))
                                          for s in [(1,), (7,), (3, 31), (2, 3, 129), (5, 1, 1, 7)]],
           ref_loss.softmax, "test_softmax_cross_entropy_backward_matches_finite_differences",
           lambda x: ops.softmax(x), tol=(1e-5, 1e-6),
           out=OutCase({"x": ((5, 7), F)}, lambda t, out: ops.softmax(t["x"], out=out), (5, 7), F, "x")),
    OpInfo("softmax_cross_entropy", "loss", _sce_samples, ref_loss.softmax_cross_entropy,
           "test_softmax_cross_entropy_backward_matches_finite_differences",
           gradient=Gradient((0,), lambda a, out, w, **_: (ops.softmax_cross_entropy_backward(out[1], a[1]),),
                             lambda rng: Sample((_normal(rng, 3, 7), np.array([6, 0, 2], I64))),
                             tol=(1e-2, 5e-4)),
           required=lambda logits, labels: ops.softmax_cross_entropy(logits, labels),
           params={"sizes": LOSS_SIZES}, tol=(1e-5, 1e-5)),
    OpInfo("softmax_cross_entropy_backward", "loss", lambda rng: _sce_samples(rng, backward=True),
           ref_loss.softmax_cross_entropy_backward,
           "test_softmax_cross_entropy_backward_matches_finite_differences",
           lambda probs, labels: ops.softmax_cross_entropy_backward(probs, labels),
           params={"sizes": LOSS_SIZES}, tol=(1e-5, 1e-6)),
    OpInfo("mse_loss", "loss", _mse_samples, ref_loss.mse_loss,
           "test_mse_loss_backward_matches_finite_differences", lambda pred, target: ops.mse_loss(pred, target),
           gradient=Gradient((0, 1), lambda a, out, w, **_: (ops.mse_loss_backward(a[0], a[1]),
                                                        ops.mse_loss_backward(a[1], a[0])),
                             lambda rng: Sample((_normal(rng, 4, 5), _normal(rng, 4, 5))), tol=(1e-2, 1e-4)),
           tol=(1e-5, 1e-6)),
    OpInfo("mse_loss_backward", "loss", _mse_samples, ref_loss.mse_loss_backward,
           "test_mse_loss_backward_matches_finite_differences",
           lambda pred, target: ops.mse_loss_backward(pred, target), tol=(1e-5, 1e-6)),
    # ---- optim ----
    OpInfo("sgd_step", "optim", _sgd_samples, ref_optim.sgd_step,
           "none: an update rule; test_sgd_steps_match_the_pytorch_algorithm runs several steps",
           lambda param, grad: ops.sgd_step(param, grad, None, lr=0.1),
           params={"shapes": OPTIM_SHAPES, "cases": SGD_CASES}, tol=(1e-5, 1e-6),
           result=lambda _, args: (args[0], args[2])),
    OpInfo("adam_step", "optim", _adam_samples, ref_optim.adam_step,
           "none: an update rule; test_adam_steps_match_the_pytorch_algorithm runs several steps",
           lambda param, grad, m, v: ops.adam_step(param, grad, m, v, step=1, lr=0.1),
           params={"shapes": OPTIM_SHAPES, "cases": ADAM_CASES}, tol=(1e-5, 1e-6),
           result=lambda _, args: (args[0], args[2], args[3])),
    # ---- quant ----
    OpInfo("quantize", "quant",
           lambda rng: [Sample((_normal(rng, n, scale=3.0), 0.5), {}, str(n)) for n in [1, 7, 129]],
           ref_quant.quantize, "none: INT8 inference only", lambda x: ops.quantize(x, 1.0), tol=(0, 0),
           out=OutCase({"x": ((5, 7), F)}, lambda t, out: ops.quantize(t["x"], 0.02, out=out), (5, 7),
                       I8, None)),
    OpInfo("qgemm", "quant", _qgemm_samples,
           lambda xq, wq, xs, ws, b, *, activation, alpha: ref_quant.qgemm(xq, wq, xs, ws, b, activation, alpha),
           "none: INT8 inference only", lambda xq, wq, w_scale: ops.qgemm(xq, wq, 1.0, w_scale),
           params={"sizes": QGEMM_SIZES, "acts": QUANT_ACTS}, tol=(1e-5, 1e-5),
           out=OutCase({"xq": ((5, 9), I8), "wq": ((7, 9), I8), "w_scale": ((7,), F), "bias": ((7,), F)},
                       lambda t, out: ops.qgemm(t["xq"], t["wq"], 0.1, t["w_scale"], t["bias"],
                                                activation="relu", out=out), (5, 7), F, "bias")),
    OpInfo("qconv2d", "quant", _qconv_samples, _qconv_reference, "none: INT8 inference only",
           lambda xq, wq, w_scale: ops.qconv2d(xq, wq, 1.0, w_scale), tol=(1e-5, 1e-5),
           out=OutCase({"xq": ((2, 3, 6, 6), I8), "wq": ((4, 3, 3, 3), I8), "w_scale": ((4,), F),
                        "bias": ((4,), F)},
                       lambda t, out: ops.qconv2d(t["xq"], t["wq"], 0.1, t["w_scale"], t["bias"],
                                                  padding=1, out=out), (2, 4, 6, 6), F, "bias")),
    OpInfo("qpack_weight", "quant",
           lambda rng: [Sample((rng.integers(-127, 128, shape).astype(I8),), {}, str(shape))
                        for shape in [(1, 1), (7, 3, 3, 3), (65, 13)]],
           lambda wq: _f64(wq).reshape(wq.shape[0], -1), "none: a layout change (INT8 inference only)",
           lambda wq: ops.qpack_weight(wq), tol=(0, 0),
           result=lambda packed, args: _qunpack(packed, args[0].shape[0]), devices=("cpu",)),
    # ---- graph-plan ops ----
    OpInfo("binary", "binary", _binary_samples, _binary_reference, _GRAPH_OPS_NO_GRAD,
           lambda a, b: ops.binary(a, b, "add"),
           params={"shapes": BINARY_SHAPES, "kinds": BINARY_KINDS}, tol=(1e-6, 1e-6),
           out=OutCase({"a": ((5, 7), F), "b": ((7,), F)},
                       lambda t, out: ops.binary(t["a"], t["b"], "mul", out=out), (5, 7), F, "b")),
    OpInfo("concat", "shape", lambda rng: _shape_samples(rng, "concat"),
           lambda tensors, axis: np.concatenate([_f64(t) for t in tensors], axis),
           _GRAPH_OPS_NO_GRAD, lambda tensors: ops.concat(tensors, 1), tol=(0, 0),
           out=OutCase({"a": ((2, 3, 4), F), "b": ((2, 5, 4), F)},
                       lambda t, out: ops.concat([t["a"], t["b"]], 1, out=out), (2, 8, 4), F,
                       None)),  # its inputs are tensors[i]: test_shape.py checks the overlap
    OpInfo("split", "shape", lambda rng: _shape_samples(rng, "split"),
           lambda x, axis, sizes: tuple(np.split(_f64(x), np.cumsum(sizes)[:-1], axis)),
           _GRAPH_OPS_NO_GRAD, lambda x: ops.split(x, 0, [1, 1]), tol=(0, 0),
           result=lambda parts, args: tuple(parts)),
    OpInfo("transpose", "shape", lambda rng: _shape_samples(rng, "transpose"),
           lambda x, perm: np.transpose(_f64(x), perm), _GRAPH_OPS_NO_GRAD,
           lambda x: ops.transpose(x, [1, 0]), tol=(0, 0),
           out=OutCase({"x": ((3, 4, 5), F)},
                       lambda t, out: ops.transpose(t["x"], [2, 0, 1], out=out), (5, 3, 4), F,
                       "x")),
    OpInfo("reduce_mean", "shape", lambda rng: _shape_samples(rng, "reduce_mean"),
           lambda x, axes, *, keepdims: np.mean(_f64(x), axis=tuple(axes), keepdims=keepdims),
           _GRAPH_OPS_NO_GRAD, lambda x: ops.reduce_mean(x, [1]), tol=(1e-5, 1e-6),
           out=OutCase({"x": ((3, 4, 5, 6), F)},
                       lambda t, out: ops.reduce_mean(t["x"], [2, 3], keepdims=True, out=out),
                       (3, 4, 1, 1), F, "x")),
    OpInfo("pad2d", "shape", lambda rng: _shape_samples(rng, "pad2d"), _pad_reference,
           _GRAPH_OPS_NO_GRAD, lambda x: ops.pad2d(x, [1, 1, 1, 1]), tol=(0, 0),
           out=OutCase({"x": ((2, 3, 4, 5), F)},
                       lambda t, out: ops.pad2d(t["x"], [1, 0, 2, 3], value=-1.0, out=out),
                       (2, 3, 7, 8), F, "x")),
    # ---- language-model ops ----
    OpInfo("layer_norm", "layer_norm", _ln_samples,
           lambda x, w, b, *, eps: ref_attn.layer_norm(x, w, b, eps),
           "test_layer_norm_backward_matches_finite_differences",
           lambda x: ops.layer_norm(x),
           gradient=Gradient((0, 1, 2), lambda a, out, w, **_: ops.layer_norm_backward(
                                 w, a[0], a[1], out[1], out[2]),
                             lambda rng: Sample((_normal(rng, 3, 7), _normal(rng, 7), _normal(rng, 7)), {}),
                             eps=1e-2, tol=(2e-2, 2e-3)),
           params={"shapes": LN_SHAPES}, tol=(1e-4, 1e-4)),
    OpInfo("layer_norm_backward", "layer_norm", lambda rng: _ln_samples(rng, backward=True),
           lambda dy, x, w, mean, rstd: ref_attn.layer_norm_backward(dy, x, w),
           "test_layer_norm_backward_matches_finite_differences",
           lambda dy, x, mean, rstd: ops.layer_norm_backward(dy, x, None, mean, rstd),
           params={"shapes": LN_SHAPES}, tol=(1e-3, 1e-3)),
    OpInfo("attention", "attention", _attn_samples,
           lambda q, k, v, *, causal, scale: ref_attn.attention(q, k, v, causal, scale)[:2],
           "test_attention_backward_matches_finite_differences",
           lambda q, k, v: ops.attention(q, k, v),
           gradient=Gradient((0, 1, 2), lambda a, out, w, *, causal, scale: ops.attention_backward(
                                 w, a[0], a[1], a[2], out[0], out[1], causal=causal, scale=scale),
                             lambda rng: Sample((_normal(rng, 1, 2, 3, 4), _normal(rng, 1, 2, 5, 4),
                                                 _normal(rng, 1, 2, 5, 4)), {"causal": True, "scale": None}),
                             eps=1e-2, tol=(2e-2, 2e-3)),
           params={"shapes": ATTN_SHAPES}, tol=(1e-4, 1e-4),
           out=OutCase({"q": ((2, 3, 1, 8), F), "k": ((6, 2, 3, 8), F), "v": ((6, 2, 3, 8), F)},
                       lambda t, out: ops.attention(t["q"], t["k"], t["v"], causal=True, kv_len=5,
                                                    kv_layout="tbhd", out=out)[0],
                       (2, 3, 1, 8), F, "q")),
    OpInfo("attention_backward", "attention", lambda rng: _attn_samples(rng, backward=True),
           lambda dout, q, k, v, o, lse, *, causal, scale: ref_attn.attention_backward(
               dout, q, k, v, causal, scale),
           "test_attention_backward_matches_finite_differences",
           lambda dout, q, k, v, out, lse: ops.attention_backward(dout, q, k, v, out, lse),
           params={"shapes": ATTN_SHAPES}, tol=(1e-3, 1e-3)),
    OpInfo("bmm", "bmm", _bmm_samples,
           lambda a, b, *, trans_a, trans_b, alpha: ref_attn.bmm(a, b, trans_a, trans_b, alpha),
           "none: linear in each input; test_bmm_matches_float64 covers every transpose, which "
           "is how the backward uses it",
           lambda a, b: ops.bmm(a, b), tol=(1e-4, 2e-3),
           out=OutCase({"a": ((2, 5, 3), F), "b": ((2, 3, 4), F)},
                       lambda t, out: ops.bmm(t["a"], t["b"], out=out), (2, 5, 4), F, "a")),
    OpInfo("sum_squares", "bmm",
           lambda rng: [Sample(([_normal(rng, *s) for s in shapes],), {}, str(shapes))
                        for shapes in [[(1,)], [(3, 7), (129,)], [(5, 5, 5), (1,), (40_001,)]]],
           lambda tensors: np.array([np.sum(_f64(t) ** 2) for t in tensors]),
           "none: a reduction for gradient clipping, not differentiated",
           lambda tensors: ops.sum_squares(tensors), tol=(1e-5, 1e-5), devices=("cpu",)),
    OpInfo("scale_", "bmm",
           lambda rng: [Sample((_normal(rng, *s), -0.7), {}, str(s)) for s in ELEMENTWISE_SHAPES],
           lambda x, alpha: _f64(x) * alpha, "none: linear, dx = alpha * dy",
           lambda x: ops.scale_(x, 2.0), params={"shapes": ELEMENTWISE_SHAPES}, tol=(1e-6, 1e-7)),
    OpInfo("clip_grad_norm_", "bmm",
           lambda rng: [Sample(([_normal(rng, 3, 7), _normal(rng, 129)], 1.5), {}, "two")],
           lambda grads, max_norm: np.sqrt(sum(np.sum(_f64(g) ** 2) for g in grads)),
           "none: an update rule; test_clip_grad_norm_matches_torch checks the scaled gradients",
           lambda grads: ops.clip_grad_norm_(grads, 1.0), tol=(1e-5, 1e-5), devices=("cpu",),
           result=lambda norm, _: (np.float64(norm),)),
]

# ---- nn layers: the cases every generic layer test runs (tests/nn/test_layers.py) ----------------
LAYER_CASES = [
    Case("linear", lambda: nn.Linear(7, 3), lambda t: t.Linear(7, 3), (5, 7), ref.linear),
    Case("linear_1x1_nobias", lambda: nn.Linear(1, 1, bias=False),
         lambda t: t.Linear(1, 1, bias=False),
         (1, 1), ref.linear),
    Case("linear_3d_input", lambda: nn.Linear(4, 5), lambda t: t.Linear(4, 5), (2, 3, 4),
         ref.linear),
    Case("conv_3x3_pad", lambda: nn.Conv2d(3, 5, 3, padding=1),
         lambda t: t.Conv2d(3, 5, 3, padding=1),
         (2, 3, 7, 6), lambda x, p: ref.conv2d(x, p, padding=(1, 1))),
    Case("conv_grouped_strided_dilated",
         lambda: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
         lambda t: t.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
         (1, 4, 9, 7), lambda x, p: ref.conv2d(x, p, (2, 1), (1, 0), (1, 2), 2)),
    Case("conv_depthwise_1x1_nobias", lambda: nn.Conv2d(3, 3, 1, groups=3, bias=False),
         lambda t: t.Conv2d(3, 3, 1, groups=3, bias=False), (3, 3, 5, 5),
         lambda x, p: ref.conv2d(x, p, groups=3)),
    Case("conv_transpose_s2_p1_outpad1", lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
         lambda t: t.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), (2, 3, 5, 4),
         lambda x, p: conv_transpose_ref(x, p["weight"], p["bias"], (2, 2), (1, 1), (1, 1), 1, (1, 1))),
    Case("conv_transpose_grouped_dilated_nobias",
         lambda: nn.ConvTranspose2d(4, 6, (3, 2), stride=(1, 3), padding=(2, 0), output_padding=(0, 2),
                                    groups=2, bias=False, dilation=(2, 1)),
         lambda t: t.ConvTranspose2d(4, 6, (3, 2), stride=(1, 3), padding=(2, 0), output_padding=(0, 2),
                                     groups=2, bias=False, dilation=(2, 1)), (1, 4, 6, 3),
         lambda x, p: conv_transpose_ref(x, p["weight"], None, (1, 3), (2, 0), (2, 1), 2, (0, 2))),
    Case("relu", nn.ReLU, lambda t: t.ReLU(), (3, 5, 7), act_ref("relu")),
    Case("leaky_relu", lambda: nn.LeakyReLU(0.2), lambda t: t.LeakyReLU(0.2), (3, 31),
         act_ref("leaky_relu", 0.2)),
    Case("sigmoid", nn.Sigmoid, lambda t: t.Sigmoid(), (4, 7), act_ref("sigmoid")),
    Case("tanh", nn.Tanh, lambda t: t.Tanh(), (4, 7), act_ref("tanh")),
    Case("gelu", nn.GELU, lambda t: t.GELU(), (4, 7), act_ref("gelu")),
    Case("gelu_tanh", lambda: nn.GELU("tanh"), lambda t: t.GELU(approximate="tanh"), (4, 7),
         act_ref("gelu_tanh")),
    Case("elu", lambda: nn.ELU(0.7), lambda t: t.ELU(0.7), (2, 3, 5), act_ref("elu", 0.7)),
    Case("relu6", nn.ReLU6, lambda t: t.ReLU6(), (3, 5, 7), act_ref("relu6")),
    Case("hardsigmoid", nn.Hardsigmoid, lambda t: t.Hardsigmoid(), (4, 9), act_ref("hardsigmoid")),
    Case("hardswish", nn.Hardswish, lambda t: t.Hardswish(), (2, 3, 7), act_ref("hardswish")),
    Case("maxpool_2", lambda: nn.MaxPool2d(2), lambda t: t.MaxPool2d(2), (2, 3, 7, 7),
         lambda x, p: ref.max_pool2d(x, (2, 2), (2, 2), (0, 0)), distinct=True),
    Case("maxpool_3_s2_p1", lambda: nn.MaxPool2d(3, stride=2, padding=1),
         lambda t: t.MaxPool2d(3, stride=2, padding=1), (1, 2, 9, 8),
         lambda x, p: ref.max_pool2d(x, (3, 3), (2, 2), (1, 1)), distinct=True),
    Case("avgpool_2", lambda: nn.AvgPool2d(2), lambda t: t.AvgPool2d(2), (2, 3, 7, 7),
         lambda x, p: ref.avg_pool2d(x, (2, 2), (2, 2), (0, 0))),
    Case("maxpool_3_s2_ceil", lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True),
         lambda t: t.MaxPool2d(3, stride=2, ceil_mode=True), (1, 2, 8, 10),
         lambda x, p: ref_pool.max_pool2d(x, (3, 3), (2, 2), (0, 0), ceil_mode=True)[0],
         distinct=True),
    Case("avgpool_3_s2_p1_ceil_exclude_pad",
         lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
         lambda t: t.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
         (2, 1, 6, 9),
         lambda x, p: ref_pool.avg_pool2d(x, (3, 3), (2, 2), (1, 1), True, False)),
    Case("avgpool_3x2_s2_p1", lambda: nn.AvgPool2d((3, 2), stride=2, padding=1),
         lambda t: t.AvgPool2d((3, 2), stride=2, padding=1), (2, 1, 7, 5),
         lambda x, p: ref.avg_pool2d(x, (3, 2), (2, 2), (1, 1))),
    Case("flatten", nn.Flatten, lambda t: t.Flatten(), (2, 3, 4, 5), lambda x, p: x.reshape(2, -1)),
    Case("flatten_1_2", lambda: nn.Flatten(1, 2), lambda t: t.Flatten(1, 2), (2, 3, 4, 5),
         lambda x, p: x.reshape(2, 12, 5)),
    Case("batchnorm2d", lambda: nn.BatchNorm2d(3), lambda t: t.BatchNorm2d(3), (4, 3, 5, 5),
         lambda x, p: ref.batch_norm_train(x, p, 1e-5)),
    Case("batchnorm2d_2d_input", lambda: nn.BatchNorm2d(5, eps=1e-3, momentum=0.3),
         lambda t: t.BatchNorm1d(5, eps=1e-3, momentum=0.3), (7, 5),
         lambda x, p: ref.batch_norm_train(x, p, 1e-3)),
    Case("batchnorm1d_3d_input", lambda: nn.BatchNorm1d(3), lambda t: t.BatchNorm1d(3), (4, 3, 6),
         lambda x, p: ref.batch_norm_train(x, p, 1e-5)),
    Case("embedding", lambda: nn.Embedding(11, 4), lambda t: t.Embedding(11, 4), (3, 5),
         lambda idx, p: p["weight"][idx], int_input=11),
    Case("identity", nn.Identity, lambda t: t.Identity(), (3, 4), lambda x, p: x),
    Case("dropout_p0", lambda: nn.Dropout(0.0), lambda t: t.Dropout(0.0), (3, 5), lambda x, p: x),
    Case("residual_identity", lambda: nn.Residual(nn.Sequential(nn.Linear(4, 4), nn.Tanh())),
         lambda t: torch_residual(t, t.Sequential(t.Linear(4, 4), t.Tanh())), (3, 4),
         lambda x, p: np.tanh(ref.linear(x, sub(p, "body.0."))) + x),
    Case("resnet_block", make_block, torch_block, (2, 3, 7, 7), block_ref),
    Case("concat_fire", make_fire, torch_fire, (2, 3, 5, 4), fire_ref),
    Case("layer_norm", lambda: nn.LayerNorm(8), lambda t: torch_transformer(t, "layer_norm"),
         (2, 5, 8), ln_ref),
    Case("gpt_mlp", lambda: nn.MLP(8), lambda t: torch_transformer(t, "mlp"), (2, 5, 8),
         mlp_block_ref),
    Case("causal_self_attention", lambda: nn.CausalSelfAttention(8, 2),
         lambda t: torch_transformer(t, "attention"), (2, 5, 8), attn_ref),
    Case("gpt_block", lambda: nn.Block(8, 2), lambda t: torch_transformer(t, "block"), (2, 5, 8),
         gpt_block_ref),
    Case("sequential_cnn",
         lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
                               nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 5), nn.Tanh(),
                               nn.Linear(5, 3)),
         lambda t: t.Sequential(t.Conv2d(2, 3, 3, padding=1), t.LeakyReLU(0.1), t.MaxPool2d(2),
                                t.BatchNorm2d(3), t.Flatten(), t.Linear(12, 5), t.Tanh(),
                                t.Linear(5, 3)),
         (3, 2, 5, 4), mlp_ref),
]


OPS: dict[str, OpInfo] = {info.name: info for info in _TABLE}
assert len(OPS) == len(_TABLE), "an op is declared twice"
REQUIRED_TENSORS = {name: info.required for name, info in OPS.items()}
OUT_CASES = {name: info.out for name, info in OPS.items() if info.out is not None}


def run(info: OpInfo, sample: Sample, device: str, impl: str = "auto") -> tuple:
    """Call the op on `device` with the sample's arrays as tensors; its outputs as a tuple."""
    import hipgrad as hg

    def dev(a):
        if isinstance(a, list) and a and all(isinstance(v, np.ndarray) for v in a):
            return [dev(v) for v in a]  # a tensor list (concat)
        return hg.tensor(a, device=device, dtype=a.dtype) if isinstance(a, np.ndarray) else a

    args = tuple(dev(a) for a in sample.args)
    kwargs = {k: dev(v) for k, v in sample.kwargs.items()}
    return info.outputs(_op(info.name)(*args, **kwargs, impl=impl), args)


def expected(info: OpInfo, sample: Sample, got: tuple) -> tuple:
    """The float64 reference outputs for `sample` (None where an output is not compared)."""
    extra = {}
    if info.uses_outputs:
        extra["got"] = tuple(g if g is None or isinstance(g, np.ndarray) else g.numpy() for g in got)
    ref = info.reference(*sample.args, **sample.kwargs, **extra)
    return tuple(None if r is None else np.asarray(r, np.float64)
                 for r in (ref if isinstance(ref, tuple) else (ref,)))
