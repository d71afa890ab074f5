"""What a fuzz worker does with one case (family, target, seed): build the call from the seed,
run it, and judge the outcome (None: right; a string: what was wrong). describe() rebuilds the
same call in the parent to print the reproducer."""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import numpy as np

from . import cases, files

Case = tuple[str, str, int]

GEOMETRY_INTS = [2**62, 2**63 - 1, 2**31, 2**32 + 1, -1, 0, 1.5, (2**40, 1), (1, 2**62),
                 (2**31, 2**31), (0, 1), (3, -2), True]


def _rng(case: Case) -> np.random.Generator:
    family, target, seed = case
    return np.random.default_rng([seed, sum(map(ord, family + target))])


def _named(exc: BaseException, names: tuple[str, ...]) -> bool:
    msg = str(exc)
    return isinstance(exc, MemoryError) or any(n and n in msg for n in names)


def judge(call: Callable[[], Any], names: tuple[str, ...],
          check: Callable[[Any], str | None] | None = None, files: bool = False) -> str | None:
    """None when `call` returns (and `check` accepts the result) or raises an accepted kind of
    exception whose message names one of `names`; otherwise what was wrong."""
    import hipgrad as hg
    try:
        out = call()
    except cases.ACCEPTED as exc:
        if _named(exc, names):
            return None
        return f"{type(exc).__name__} naming none of {names}: {exc}"
    except hg.BackendError:
        return None
    except OSError:  # the file system's own answer (a path through a file, no permission)
        if files:
            return None
        raise
    except Exception as exc:  # noqa: BLE001 - the point: any other kind is a finding
        return f"wrong kind of exception {type(exc).__name__}: {exc}"
    return check(out) if check else None


# ---- bad_op / valid_op -----------------------------------------------------------------------------
def _bad_op(op: str, rng: np.random.Generator) -> tuple[Callable[[], Any], tuple[str, ...], str]:
    from hipgrad import ops
    import hipgrad as hg
    fn = getattr(ops, op)
    args, kw = cases.valid_call(op, rng)
    params = list(inspect.signature(fn).parameters)
    slots = [("pos", i) for i in range(len(args))] + [("kw", k) for k in kw] + [("kw", "impl"), ("kw", "out")]
    kind, slot = slots[int(rng.integers(len(slots)))]
    name = params[slot] if kind == "pos" else slot
    old = args[slot] if kind == "pos" else kw.get(slot)
    if isinstance(old, hg.Tensor):
        old = old.numpy()
    if isinstance(old, np.ndarray) and rng.random() < 0.75:
        new = cases.hostile_array(rng, old)
        if isinstance(args[slot] if kind == "pos" else kw.get(slot), hg.Tensor) and isinstance(new, np.ndarray) \
                and new.dtype.kind in "biuf" and new.dtype != np.float16 and rng.random() < 0.5:
            try:
                new = hg.tensor(new)
            except Exception:  # noqa: BLE001 - stays a NumPy array
                pass
    elif (isinstance(old, (tuple, int)) and name in ("stride", "padding", "dilation", "groups", "kernel",
                                                      "x_shape", "w_shape", "n", "step", "seed")
          and rng.random() < 0.7):
        new = GEOMETRY_INTS[int(rng.integers(len(GEOMETRY_INTS)))]
        if name.endswith("shape") and not isinstance(new, tuple):
            shp = list(old)
            shp[int(rng.integers(len(shp)))] = new
            new = tuple(shp)
    else:
        new = cases.hostile_scalar(rng)
    if kind == "pos":
        args[slot] = new
    else:
        kw[slot] = new
    desc = f"ops.{op}({', '.join(_short(a) for a in args)}{''.join(f', {k}={_short(v)}' for k, v in kw.items())})"
    return (lambda: fn(*args, **kw)), (op, name), desc


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        extra = "" if v.flags.c_contiguous and v.flags.aligned else f", strides={v.strides}, aligned={v.flags.aligned}"
        return f"<array {v.dtype} {v.shape}{extra}>"
    try:
        import hipgrad as hg
        if isinstance(v, hg.Tensor):
            return f"<hg.Tensor {v.dtype} {tuple(v.shape)}>"
    except ImportError:
        pass
    r = repr(v)
    return r if len(r) < 60 else r[:57] + "..."


def _valid_op(op: str, rng: np.random.Generator) -> tuple[Callable[[], Any], tuple[str, ...], str, Any]:
    from hipgrad import ops
    args, kw = cases.valid_call(op, rng)
    ref_args = [a.numpy().copy() if hasattr(a, "numpy") else a for a in args]
    fn = getattr(ops, op)
    desc = f"ops.{op}({', '.join(_short(a) for a in args)}{''.join(f', {k}={_short(v)}' for k, v in kw.items())})"

    def check(out: Any) -> str | None:
        if op == "dropout":
            y, mask = (v.numpy() for v in out)
            x, p = ref_args[0], ref_args[1]
            ref = x.astype(np.float64) * mask / (1 - np.float32(p))
            return cases.close(y, ref, op)
        ref = cases.reference(op, ref_args, kw)
        if ref is None:
            return None
        got = out[0] if isinstance(out, tuple) else out
        return cases.close(got, ref, op)
    return (lambda: fn(*args, **kw)), (op,), desc, check


# ---- layers and optimizers ---------------------------------------------------------------------------
LAYERS: dict[str, tuple[Callable[..., Any], dict[str, Any], tuple[int, ...]]] = {}


def _layers() -> dict[str, tuple[Callable[..., Any], dict[str, Any], tuple[int, ...]]]:
    from hipgrad import nn
    return {
        "Linear": (nn.Linear, dict(in_features=6, out_features=4, bias=True), (3, 6)),
        "Conv2d": (nn.Conv2d, dict(in_channels=2, out_channels=4, kernel_size=3, stride=1, padding=1,
                                   dilation=1, groups=2, bias=True), (2, 2, 5, 5)),
        "BatchNorm2d": (nn.BatchNorm2d, dict(num_features=2, eps=1e-5, momentum=0.1), (3, 2, 4, 4)),
        "BatchNorm1d": (nn.BatchNorm1d, dict(num_features=3, eps=1e-5, momentum=0.1), (4, 3)),
        "Dropout": (nn.Dropout, dict(p=0.3), (4, 5)),
        "LeakyReLU": (nn.LeakyReLU, dict(negative_slope=0.1), (4, 5)),
        "ELU": (nn.ELU, dict(alpha=1.0), (4, 5)),
        "MaxPool2d": (nn.MaxPool2d, dict(kernel_size=2, stride=2, padding=0), (1, 2, 6, 6)),
        "AvgPool2d": (nn.AvgPool2d, dict(kernel_size=3, stride=1, padding=1), (1, 2, 6, 6)),
        "Flatten": (nn.Flatten, dict(start_dim=1, end_dim=-1), (2, 3, 4)),
        "Embedding": (nn.Embedding, dict(num_embeddings=7, embedding_dim=3), (2, 5)),
        "ReLU": (nn.ReLU, dict(), (4, 5)),
    }


def _bad_layer(target: str, rng: np.random.Generator):
    cls, ctor, in_shape = _layers()[target]
    ctor = dict(ctor)
    mode = int(rng.integers(4))
    x = (rng.integers(0, 7, in_shape) if target == "Embedding"
         else rng.standard_normal(in_shape).astype(np.float32))
    if mode == 0 and ctor:  # a hostile constructor argument
        k = list(ctor)[int(rng.integers(len(ctor)))]
        # sizes a layer could really allocate (2**31 features) only cost time: not drawn here
        big = [v for v in GEOMETRY_INTS if not (isinstance(v, int) and 2**20 < v < 2**62)]
        v = big[int(rng.integers(len(big)))] if rng.random() < 0.3 else cases.hostile_scalar(rng)
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 2**20 < abs(int(v)) < 2**62:
            v = 2**62
        ctor[k] = v
        return (lambda: cls(**ctor)(x)), (target, k), f"nn.{target}(**{ctor!r})(x {x.shape})"
    layer = cls(**ctor)
    if rng.integers(2):
        layer.eval()
    if mode == 1:  # a hostile input
        bad = cases.hostile_array(rng, x)
        return (lambda: layer(bad)), (target, "x"), f"nn.{target}(**{ctor!r})({_short(bad)})"
    if mode == 2:  # a hostile gradient after a training forward
        layer.train()
        y = layer(x)
        bad = cases.hostile_array(rng, y.numpy())
        return (lambda: layer.backward(bad)), (target, "dy"), f"nn.{target}(**{ctor!r}).backward({_short(bad)})"
    sd = layer.state_dict()  # a hostile state dict entry
    if not sd:
        return (lambda: layer.load_state_dict({"x": 1})), (target, "load_state_dict", "keys"), "load_state_dict({'x': 1})"
    k = list(sd)[int(rng.integers(len(sd)))]
    sd[k] = cases.hostile_array(rng, sd[k])
    before = {n: v.copy() for n, v in layer.state_dict().items()}

    def call():
        try:
            layer.load_state_dict(sd)
        except BaseException:
            after = layer.state_dict()
            if any(not np.array_equal(after[n], before[n], equal_nan=True) for n in before):
                raise AssertionError("a failed load_state_dict changed the layer") from None
            raise
    return call, (target, k, "load_state_dict"), f"nn.{target}.load_state_dict({{{k!r}: {_short(sd[k])}}})"


OPTIMIZERS = ["SGD", "Adam", "AdamW", "StepLR", "CosineAnnealingLR", "LinearWarmup", "state"]


def _bad_optim(target: str, rng: np.random.Generator):
    from hipgrad import nn, optim
    model = nn.Linear(3, 2)
    ctor = {"SGD": dict(lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False),
            "Adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
            "AdamW": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)}
    sched = {"StepLR": dict(step_size=2, gamma=0.5), "CosineAnnealingLR": dict(T_max=5, eta_min=0.0),
             "LinearWarmup": dict(warmup_steps=3, start_factor=0.5, end_factor=1.0)}

    def step_once(opt):
        x = rng.standard_normal((4, 3)).astype(np.float32)
        y = model(x)
        model.backward(y)
        opt.step()
        if not np.isfinite(model.weight.data.numpy()).all():
            raise AssertionError("the step made the weights non-finite")

    if target in ctor:
        kw = dict(ctor[target])
        k = list(kw)[int(rng.integers(len(kw)))]
        kw[k] = cases.hostile_scalar(rng) if rng.random() < 0.8 else (1e40, 1e-300, -1e-45)[int(rng.integers(3))]
        cls = getattr(optim, target)
        return (lambda: step_once(cls(model.parameters(), **kw))), (target, k), f"optim.{target}(params, **{kw!r}).step()"
    if target in sched:
        kw = dict(sched[target])
        k = list(kw)[int(rng.integers(len(kw)))]
        kw[k] = cases.hostile_scalar(rng)
        cls = getattr(optim, target)

        def run():
            s = cls(optim.SGD(model.parameters(), lr=0.1), **kw)
            for _ in range(4):
                s.step()
        return run, (target, k), f"optim.{target}(SGD(lr=0.1), **{kw!r}) x4 steps"
    # state dicts
    opt = optim.Adam(model.parameters())
    step_once(opt)
    sd = opt.state_dict()
    which = int(rng.integers(5))
    if which == 0:
        sd = cases.hostile_scalar(rng)
        desc = f"Adam.load_state_dict({_short(sd)})"
    elif which == 1:
        k = ["type", "hyper", "state", "initial_lr"][int(rng.integers(4))]
        sd.pop(k, None)
        desc = f"Adam.load_state_dict(state without {k!r})"
    elif which == 2:
        k = ["type", "hyper", "state", "initial_lr"][int(rng.integers(4))]
        sd[k] = cases.hostile_scalar(rng)
        desc = f"Adam.load_state_dict(state with {k!r}={_short(sd[k])})"
    elif which == 3:
        k = list(sd["hyper"])[int(rng.integers(len(sd["hyper"])))]
        sd["hyper"][k] = cases.hostile_scalar(rng)
        desc = f"Adam.load_state_dict(hyper[{k!r}]={_short(sd['hyper'][k])})"
    else:
        key = list(sd["state"])[0]
        buf = list(sd["state"][key])[int(rng.integers(len(sd["state"][key])))]
        sd["state"][key][buf] = cases.hostile_array(rng, np.asarray(sd["state"][key][buf]))
        desc = f"Adam.load_state_dict(state[{key!r}][{buf!r}]={_short(sd['state'][key][buf])})"
    before = repr(opt.hyper)

    def call():
        try:
            opt.load_state_dict(sd)
        except BaseException:
            if repr(opt.hyper) != before:
                raise AssertionError("a failed load_state_dict changed the optimizer") from None
            raise
        step_once(opt)
    return call, ("Adam", "load_state_dict", "state_dict"), desc


# ---- dispatch ------------------------------------------------------------------------------------------
def build(case: Case) -> tuple[Callable[[], Any], tuple[str, ...], str, Callable[[Any], str | None] | None]:
    family, target, _ = case
    rng = _rng(case)
    if family == "bad_op":
        call, names, desc = _bad_op(target, rng)
        return call, names, desc, None
    if family == "valid_op":
        return _valid_op(target, rng)
    if family == "bad_layer":
        call, names, desc = _bad_layer(target, rng)
        return call, names, desc, None
    if family == "bad_optim":
        call, names, desc = _bad_optim(target, rng)
        return call, names, desc, None
    if family == "file":
        call, names, desc = files.build(target, rng)
        return call, names, desc, None
    raise KeyError(family)


def run_case(case: Case) -> str | None:
    """The worker's entry: None when the case behaved, else what went wrong."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call, names, _, check = build(case)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return judge(call, names, check, files=case[0] == "file")


def describe(case: Case) -> str:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return build(case)[2]
        except Exception as exc:  # noqa: BLE001
            return f"<could not rebuild: {type(exc).__name__}: {exc}>"


def all_targets() -> list[tuple[str, str]]:
    return ([("bad_op", op) for op in cases.OPS] + [("valid_op", op) for op in cases.OPS]
            + [("bad_layer", t) for t in _layers()] + [("bad_optim", t) for t in OPTIMIZERS]
            + [("file", t) for t in files.TARGETS])


_ = math
