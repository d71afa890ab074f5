"""The `out=` convention: an op writes into a caller's tensor (e.g. a prefix view of a
preallocated buffer) and checks it like an input."""

import hipgrad as hg
import numpy as np
import pytest
from hipgrad import ops
from tests.op_cases import OUT_CASES as TABLE_OUT_CASES


def test_activation_writes_into_a_prefix_view_of_a_buffer(rng, device):
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    buf = hg.tensor(np.full(200, np.nan, np.float32), device=device)
    view = buf.prefix_view([3, 5, 7])
    y = ops.activation(hg.tensor(x, device=device), "relu", out=view)
    assert y._shares_storage(buf)
    np.testing.assert_array_equal(y.numpy(), np.maximum(x.astype(np.float64), 0).astype(np.float32))
    rest = buf.numpy()[x.size:]
    assert np.isnan(rest).all(), "the op wrote past the end of its output"


def test_prefix_view_rejects_a_shape_larger_than_the_buffer(device):
    buf = hg.zeros([10], device=device)
    with pytest.raises(ValueError, match="prefix_view.*11 elements.*only 10"):
        buf.prefix_view([11])


@pytest.mark.parametrize("bad, exc, pattern", [
    ("shape", ValueError, "activation: out must have shape \\(4, 6\\)"),
    ("dtype", TypeError, "activation: out must be float32"),
    ("overlap", ValueError, "activation: out must not overlap x"),
    ("type", TypeError, "activation: out must be an hg.Tensor"),
])
def test_bad_out_is_named(bad, exc, pattern, device):
    x = hg.zeros([4, 6], device=device)
    out = {"shape": lambda: hg.zeros([6, 4 + 1], device=device),
           "dtype": lambda: hg.zeros([4, 6], dtype=np.int32, device=device),
           "overlap": lambda: x,
           "type": lambda: np.zeros((4, 6), np.float32)}[bad]()
    with pytest.raises(exc, match=pattern):
        ops.activation(x, "relu", out=out)


# ---- every op the inference engine runs with out= ---------------------------------------------
# op: (inputs {name: (shape, dtype)}, call(t, out) -> Tensor, output shape, output dtype,
#      a float input that out may be made to overlap, or None): from the op table
F, I8, I64 = np.float32, np.int8, np.int64
OUT_CASES = {op: (c.inputs, c.call, c.shape, c.dtype, c.overlap) for op, c in TABLE_OUT_CASES.items()}


def _inputs(spec, rng, device, overlap=None, out_shape=None):
    """The op's inputs; with `overlap`, that input and the returned out share one buffer."""
    arrays = {}
    for name, (shape, dt) in spec.items():
        if dt == I8:
            arrays[name] = rng.integers(-127, 128, shape).astype(I8)
        elif dt == I64:
            arrays[name] = rng.integers(0, 11, shape).astype(I64)
        elif name in ("var", "w_scale"):
            arrays[name] = rng.uniform(0.5, 2.0, shape).astype(F)
        else:
            arrays[name] = rng.standard_normal(shape).astype(F)
    t = {k: hg.tensor(v, device=device, dtype=v.dtype) for k, v in arrays.items()}
    out = None
    if overlap is not None:
        a = arrays[overlap]
        buf = np.zeros(max(a.size, int(np.prod(out_shape))), F)
        buf[:a.size] = a.ravel()
        shared = hg.tensor(buf, device=device)
        t[overlap] = shared.prefix_view(list(a.shape))
        out = shared.prefix_view(list(out_shape))
    return t, out


@pytest.mark.parametrize("op", sorted(OUT_CASES))
def test_op_writes_into_a_poisoned_prefix_view(op, rng, device):
    spec, call, shape, dt, _ = OUT_CASES[op]
    t, _ = _inputs(spec, rng, device)
    expected = call(t, None).numpy()
    size = int(np.prod(shape))
    sentinel = -128 if dt == I8 else np.nan  # quantize never writes -128 (it clamps to -127)
    buf = hg.tensor(np.full(size + 37, sentinel, dt), device=device, dtype=dt)
    y = call(t, buf.prefix_view(list(shape)))
    assert y._shares_storage(buf) and y.shape == shape
    np.testing.assert_array_equal(y.numpy(), expected)
    rest = buf.numpy()[size:]
    assert (rest == -128).all() if dt == I8 else np.isnan(rest).all(), f"{op} wrote past its output"


@pytest.mark.parametrize("op", sorted(OUT_CASES))
@pytest.mark.parametrize("bad", ["shape", "dtype", "overlap", "type"])
def test_bad_out_is_named_for_every_op(op, bad, rng, device):
    spec, call, shape, dt, overlap_name = OUT_CASES[op]
    if bad == "overlap":
        if overlap_name is None:
            pytest.skip(f"{op}: no input named for the overlap (an int8 out cannot share its "
                        "float32 input's storage; a tensor list's inputs are checked in its suite)")
        t, out = _inputs(spec, rng, device, overlap=overlap_name, out_shape=shape)
        with pytest.raises(ValueError, match=f"{op}: out must not overlap {overlap_name}"):
            call(t, out)
        return
    t, _ = _inputs(spec, rng, device)
    wrong_dt = F if dt == I8 else np.int32
    out, exc, pattern = {
        "shape": (hg.zeros([s + 1 for s in shape], device=device, dtype=dt), ValueError,
                  f"{op}: out must have shape"),
        "dtype": (hg.zeros(list(shape), device=device, dtype=wrong_dt), TypeError,
                  f"{op}: out must be {np.dtype(dt).name}"),
        "type": (np.zeros(shape, dt), TypeError, f"{op}: out must be an hg.Tensor"),
    }[bad]
    with pytest.raises(exc, match=pattern):
        call(t, out)


@pytest.mark.parametrize("op", sorted(op for op, case in OUT_CASES.items() if case[4]))
def test_overlap_is_found_through_separate_wraps_of_one_buffer(op, rng):
    """Two hg.borrow() of one NumPy buffer are separate tensors over the same bytes: an out that
    shares even one element with an input is refused; one that ends where the input starts runs."""
    spec, call, shape, _, name = OUT_CASES[op]
    t, _ = _inputs(spec, rng, "cpu")
    a = t[name].numpy()
    expected = call(t, None).numpy()
    size = int(np.prod(shape))
    for start, overlapping in [(a.size - 1, True), (a.size, False)]:
        buf = np.full(start + size, np.nan, np.float32)
        buf[:a.size] = a.ravel()
        t[name] = hg.borrow(buf[:a.size].reshape(a.shape))
        out = hg.borrow(buf[start:].reshape(shape))
        assert t[name].data_ptr() == buf.ctypes.data and out.data_ptr() == buf[start:].ctypes.data
        if overlapping:
            with pytest.raises(ValueError, match=f"{op}: out must not overlap {name}"):
                call(t, out)
        else:
            np.testing.assert_array_equal(call(t, out).numpy(), expected)
            np.testing.assert_array_equal(buf[:a.size], a.ravel())


def test_max_pool2d_without_argmax_matches_with(rng, device):
    x = hg.tensor(rng.standard_normal((2, 3, 9, 9)).astype(F), device=device)
    y, argmax = ops.max_pool2d(x, 3, stride=2, padding=1)
    y2, none = ops.max_pool2d(x, 3, stride=2, padding=1, with_argmax=False)
    assert none is None and argmax is not None
    np.testing.assert_array_equal(y2.numpy(), y.numpy())
