"""The generated cases of the fuzz suite. A case is (family, target, seed): everything else is
derived from the seed, so a case is its own reproducer (`python -m tests.fuzz.run --case
family:target:seed` replays it and prints the call).

Families
- bad_op: a valid call of a public op with one argument replaced by a hostile value (wrong
  type, None, a string, a bool, NaN/inf, a huge or negative int, a float-as-int, a wrong dtype
  or rank, an empty or zero-stride or misaligned or non-contiguous array, ...).
- valid_op: a valid call with random odd sizes and hyper-parameters, compared with the float64
  references in tests/reference.
- bad_layer / bad_optim: nn layers, optimizers and schedulers built or called with one hostile
  value.

The rule checked (runner): a call returns, or raises TypeError / ValueError / MemoryError /
IndexError / NotImplementedError (hipgrad's BackendError for device failures) whose message
names the op, layer or argument. Any other exception is a failure (AttributeError, KeyError,
ZeroDivisionError, SystemError ...), as is a crash or a hang (the worker process).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

ACCEPTED = (TypeError, ValueError, MemoryError, IndexError, NotImplementedError)


# ---- hostile values ------------------------------------------------------------------------------
def hostile_scalar(rng: np.random.Generator) -> Any:
    pool: list[Any] = [None, "2", "False", "abc", True, False, np.bool_(True), 1.7, -1, 0, -0.0,
                       2**31, 2**62, 2**63 - 1, 2**63, -2**63, 2**64 + 3, 10**400, math.nan, math.inf,
                       -math.inf, 1e40, -1e40, 1e-300, complex(1, 1), [1, 2], (1,), (2**62, 1),
                       (1, 2, 3), (0, 0), (-1, 2), np.array([1.0, 2.0]), np.float32("nan"),
                       np.int64(2**62), np.uint64(2**64 - 1), object(), {}, b"1", (1.5, 2)]
    return pool[int(rng.integers(len(pool)))]


def hostile_array(rng: np.random.Generator, like: np.ndarray | None) -> Any:
    """An array that is wrong for the argument `like` is a valid value of."""
    choice = int(rng.integers(14))
    shape = like.shape if like is not None else (3,)
    if choice == 0:
        return np.zeros((0,) + shape[1:], like.dtype if like is not None else np.float32)
    if choice == 1:  # another dtype
        dt = [np.float64, np.int64, np.int8, np.uint8, np.int32, np.float16, np.bool_,
              np.complex64][int(rng.integers(8))]
        return (np.ones(shape) * 3).astype(dt)
    if choice == 2:  # another rank
        nd = int(rng.integers(0, 6))
        return np.ones(tuple(int(v) for v in rng.integers(1, 4, nd)), np.float32)
    if choice == 3:  # a huge broadcast view
        return np.broadcast_to(np.float32(0), (2**40,) + shape[1:])
    if choice == 4:  # a large broadcast view that fits a plausible shape
        return np.broadcast_to(np.zeros((1,) + shape[1:], like.dtype if like is not None else np.float32),
                               (2**16,) + shape[1:])
    if choice == 5 and like is not None:  # misaligned copy of the right values
        buf = np.zeros(like.nbytes + like.itemsize + 1, np.uint8)
        v = np.ndarray(like.shape, like.dtype, buf.data, 1)
        v[...] = like
        return v
    if choice == 6 and like is not None and like.ndim >= 1:  # non-contiguous
        big = np.repeat(like, 2, axis=-1)
        return big[..., ::2]
    if choice == 7 and like is not None and like.dtype.kind == "f":
        v = like.copy()
        v.flat[int(rng.integers(v.size))] = [np.nan, np.inf, -np.inf][int(rng.integers(3))] if v.size else 0
        return v
    if choice == 8 and like is not None and like.dtype.kind in "iu":
        v = like.copy()
        if v.size:
            info = np.iinfo(like.dtype)
            v.flat[int(rng.integers(v.size))] = [-1 if info.min < 0 else 0, info.max // 2, info.max,
                                                 info.min][int(rng.integers(4))]
        return v
    if choice == 9 and like is not None:  # a shape off by one in one axis
        shp = list(like.shape)
        if shp:
            ax = int(rng.integers(len(shp)))
            shp[ax] = max(0, shp[ax] + int(rng.choice([-1, 1, 5])))
        return np.ones(shp, like.dtype)
    if choice == 10:
        return [[1, 2], [3]]  # ragged
    if choice == 11:
        return np.array(["a", "b"])
    if choice == 12 and like is not None:
        return np.ascontiguousarray(like.T) if like.ndim >= 2 else like.reshape(1, -1)
    return hostile_scalar(rng)


# ---- valid calls of each op ------------------------------------------------------------------------
def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _conv_geometry(rng, quant=False):
    groups = int(rng.choice([1, 1, 2, 3]))
    C = groups * int(rng.integers(1, 4))
    K = groups * int(rng.integers(1, 4))
    R, S = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    st = (int(rng.integers(1, 4)), int(rng.choice([1, 2, 3, 50])))
    dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pad = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    H = max(1, dil[0] * (R - 1) + 1 - 2 * pad[0]) + int(rng.integers(0, 7))
    W = max(1, dil[1] * (S - 1) + 1 - 2 * pad[1]) + int(rng.integers(0, 7))
    N = int(rng.integers(1, 4))
    return dict(N=N, C=C, K=K, R=R, S=S, H=H, W=W, stride=st, padding=pad, dilation=dil,
                groups=groups)


def _conv_out(g):
    P = (g["H"] + 2 * g["padding"][0] - g["dilation"][0] * (g["R"] - 1) - 1) // g["stride"][0] + 1
    Q = (g["W"] + 2 * g["padding"][1] - g["dilation"][1] * (g["S"] - 1) - 1) // g["stride"][1] + 1
    return P, Q


def _hyper(g):
    return dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"], groups=g["groups"])


def valid_call(op: str, rng: np.random.Generator) -> tuple[list, dict]:
    """Positional and keyword arguments of a valid call of ops.<op>."""
    import hipgrad as hg
    M, N, K = (int(v) for v in rng.integers(1, 40, 3))
    if op == "gemm":
        ta, tb = bool(rng.integers(2)), bool(rng.integers(2))
        a = _f32(rng, K, M) if ta else _f32(rng, M, K)
        b = _f32(rng, N, K) if tb else _f32(rng, K, N)
        c = _f32(rng, M, N) if rng.integers(2) else None
        return [a, b, c], dict(trans_a=ta, trans_b=tb, alpha=float(rng.uniform(-2, 2)),
                               beta=float(rng.uniform(-2, 2)))
    if op in ("conv2d", "conv2d_bias_act"):
        g = _conv_geometry(rng)
        x = _f32(rng, g["N"], g["C"], g["H"], g["W"])
        w = _f32(rng, g["K"], g["C"] // g["groups"], g["R"], g["S"])
        b = _f32(rng, g["K"]) if rng.integers(2) else None
        kw = _hyper(g)
        if op == "conv2d_bias_act":
            kw.update(activation=str(rng.choice(["relu", "leaky_relu", "tanh", "none"])), alpha=0.1)
        return [x, w, b], kw
    if op == "conv2d_backward_data":
        g = _conv_geometry(rng)
        P, Q = _conv_out(g)
        dy = _f32(rng, g["N"], g["K"], P, Q)
        w = _f32(rng, g["K"], g["C"] // g["groups"], g["R"], g["S"])
        return [dy, w, (g["N"], g["C"], g["H"], g["W"])], _hyper(g)
    if op == "conv2d_backward_weight":
        g = _conv_geometry(rng)
        P, Q = _conv_out(g)
        dy = _f32(rng, g["N"], g["K"], P, Q)
        x = _f32(rng, g["N"], g["C"], g["H"], g["W"])
        return [dy, x, (g["K"], g["C"] // g["groups"], g["R"], g["S"])], _hyper(g)
    if op in ("max_pool2d", "avg_pool2d", "avg_pool2d_backward"):
        k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        s = (int(rng.integers(1, 4)), int(rng.choice([1, 2, 99])))
        p = (int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1)))
        H = max(1, k[0] - 2 * p[0]) + int(rng.integers(0, 6))
        W = max(1, k[1] - 2 * p[1]) + int(rng.integers(0, 6))
        x = _f32(rng, int(rng.integers(1, 3)), int(rng.integers(1, 4)), H, W)
        if op == "avg_pool2d_backward":
            P, Q = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
            return [_f32(rng, x.shape[0], x.shape[1], P, Q), x.shape, k], dict(stride=s, padding=p)
        return [x, k], dict(stride=s, padding=p)
    if op == "activation":
        return [_f32(rng, M, N) * 4, str(rng.choice(["relu", "leaky_relu", "sigmoid", "tanh", "gelu",
                                                     "gelu_tanh", "elu"]))], dict(alpha=0.2)
    if op == "softmax_cross_entropy":
        return [_f32(rng, M, N) * 3, rng.integers(0, N, M)], {}
    if op == "mse_loss":
        return [_f32(rng, M, N), _f32(rng, M, N)], {}
    if op == "batch_norm":
        C = int(rng.integers(1, 5))
        x = _f32(rng, int(rng.integers(2, 5)), C, int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        rv = hg.tensor(rng.uniform(0.5, 2, C).astype(np.float32))
        return [x, _f32(rng, C), _f32(rng, C), hg.tensor(_f32(rng, C)), rv], dict(
            training=bool(rng.integers(2)), momentum=float(rng.uniform(0, 1)), eps=1e-5)
    if op == "qgemm":
        xq = rng.integers(-127, 128, (M, K)).astype(np.int8)
        wq = rng.integers(-127, 128, (N, K)).astype(np.int8)
        return [xq, wq, float(rng.uniform(0.01, 1)), rng.uniform(0.01, 1, N).astype(np.float32),
                _f32(rng, N) if rng.integers(2) else None], dict(
            activation=[None, "relu", "leaky_relu"][int(rng.integers(3))], alpha=0.1)
    if op == "qconv2d":
        g = _conv_geometry(rng)
        xq = rng.integers(-127, 128, (g["N"], g["C"], g["H"], g["W"])).astype(np.int8)
        wq = rng.integers(-127, 128, (g["K"], g["C"] // g["groups"], g["R"], g["S"])).astype(np.int8)
        return [xq, wq, 0.05, rng.uniform(0.01, 1, g["K"]).astype(np.float32), None], dict(
            **_hyper(g), activation=[None, "relu"][int(rng.integers(2))])
    if op == "linear_bias_act":
        return [_f32(rng, M, K), _f32(rng, N, K), _f32(rng, N)], dict(activation="relu")
    if op == "embedding":
        return [_f32(rng, N, K), rng.integers(0, N, (M, 2))], {}
    if op == "add":
        return [_f32(rng, M, N), _f32(rng, M, N)], dict(alpha=float(rng.uniform(-2, 2)))
    if op == "dropout":
        return [_f32(rng, M, N), float(rng.uniform(0, 0.9)), int(rng.integers(2**63))], {}
    if op == "quantize":
        return [_f32(rng, M, N), float(rng.uniform(0.01, 1))], {}
    if op == "softmax":
        return [_f32(rng, M, N) * 5], {}
    if op == "bias_add":
        return [_f32(rng, M, N, 3), _f32(rng, N)], {}
    if op == "sgd_step":
        return [hg.tensor(_f32(rng, M, N)), _f32(rng, M, N), hg.zeros((M, N))], dict(
            lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=bool(rng.integers(2)))
    if op == "adam_step":
        return [hg.tensor(_f32(rng, M, N)), _f32(rng, M, N), hg.zeros((M, N)), hg.zeros((M, N))], dict(
            step=int(rng.integers(1, 5)), lr=0.01, weight_decay=0.01, decoupled=bool(rng.integers(2)))
    if op == "fill_":
        return [hg.tensor(_f32(rng, M)), float(rng.standard_normal())], {}
    if op == "linear_bias_act_packed":
        from hipgrad import ops
        w = _f32(rng, N, K)
        return [_f32(rng, M, K), ops.pack_linear_weight(w), _f32(rng, N)], dict(n=N, activation="relu")
    raise KeyError(op)


OPS = ["gemm", "conv2d", "conv2d_bias_act", "conv2d_backward_data", "conv2d_backward_weight",
       "max_pool2d", "avg_pool2d", "avg_pool2d_backward", "activation", "softmax_cross_entropy",
       "mse_loss", "batch_norm", "qgemm", "qconv2d", "linear_bias_act", "embedding", "add",
       "dropout", "quantize", "softmax", "bias_add", "sgd_step", "adam_step", "fill_",
       "linear_bias_act_packed"]


# ---- float64 references for the valid calls --------------------------------------------------------
def _np(v):
    import hipgrad as hg
    return v.numpy() if isinstance(v, hg.Tensor) else v


def reference(op: str, args: list, kw: dict) -> Any:
    """The float64 answer for valid_call(op)'s arguments, or None where the op has none here."""
    from tests.reference import (activation as ra, conv as rc, gemm as rg, layers as rl,
                                 loss as rloss, pool as rp, quant as rq)
    a = [_np(v) for v in args]
    if op == "gemm":
        return rg.gemm(a[0], a[1], a[2], kw["trans_a"], kw["trans_b"], kw["alpha"], kw["beta"])
    if op == "conv2d":
        return rc.conv2d(a[0], a[1], a[2], kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    if op == "conv2d_bias_act":
        y = rc.conv2d(a[0], a[1], a[2], kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
        act = kw["activation"]
        return y if act == "none" else ra.activation(y, act, kw["alpha"])
    if op == "conv2d_backward_data":
        return rc.conv2d_backward_data(a[0], a[1], a[2], kw["stride"], kw["padding"],
                                       kw["dilation"], kw["groups"])
    if op == "conv2d_backward_weight":
        return rc.conv2d_backward_weight(a[0], a[1], a[2], kw["stride"], kw["padding"],
                                         kw["dilation"], kw["groups"])
    if op == "max_pool2d":
        return rp.max_pool2d(a[0], a[1], kw["stride"], kw["padding"])[0]
    if op == "avg_pool2d":
        return rp.avg_pool2d(a[0], a[1], kw["stride"], kw["padding"])
    if op == "avg_pool2d_backward":
        return rp.avg_pool2d_backward(a[0], a[1], a[2], kw["stride"], kw["padding"])
    if op == "activation":
        return ra.activation(a[0], a[1], kw["alpha"])
    if op == "softmax_cross_entropy":
        return rloss.softmax_cross_entropy(a[0], a[1])[0]
    if op == "mse_loss":
        return rloss.mse_loss(a[0], a[1])
    if op == "batch_norm":
        return rl.batch_norm(a[0], a[1], a[2], a[3], a[4], kw["training"], kw["momentum"], kw["eps"])[0]
    if op == "qgemm":
        return rq.qgemm(a[0], a[1], a[2], a[3], a[4], kw["activation"], kw["alpha"])
    if op == "qconv2d":
        return rq.qconv2d(a[0], a[1], a[2], a[3], a[4], kw["stride"], kw["padding"], kw["dilation"],
                          kw["groups"], kw["activation"])
    if op in ("linear_bias_act", "linear_bias_act_packed"):
        w = a[1] if op == "linear_bias_act" else None
        if w is None:
            return None
        return np.maximum(a[0].astype(np.float64) @ w.T.astype(np.float64) + a[2], 0)
    if op == "embedding":
        return rl.embedding(a[0], a[1])
    if op == "add":
        return a[0].astype(np.float64) + kw["alpha"] * a[1].astype(np.float64)
    if op == "softmax":
        return rloss.softmax(a[0])
    if op == "bias_add":
        return rc.bias_add(a[0], a[1])
    if op == "quantize":
        return rq.quantize(a[0], a[1]).astype(np.float64)
    return None


def close(got: Any, ref: Any, op: str) -> str | None:
    """None when `got` matches the float64 reference within float32 rounding, else why not."""
    got = np.asarray(_np(got), np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return f"shape {got.shape}, reference {ref.shape}"
    if not np.array_equal(np.isnan(got), np.isnan(ref)):
        return "NaN pattern differs from the reference"
    ok = ~np.isnan(ref)
    scale = max(1.0, float(np.abs(ref[ok]).max())) if ok.any() else 1.0
    tol = 2.0 if op in ("quantize",) else 2e-4 * scale * (1 if op not in ("qgemm", "qconv2d") else 1)
    err = float(np.abs(got[ok] - ref[ok]).max()) if ok.any() else 0.0
    return None if err <= tol else f"max error {err:.3g} > {tol:.3g} (scale {scale:.3g})"


Builder = Callable[[np.random.Generator], tuple[str, Callable[[], Any]]]
