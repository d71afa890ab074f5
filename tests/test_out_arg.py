"""The `out=` convention: an op writes into a caller's tensor (e.g. a prefix view of a
preallocated buffer) and checks it like an input."""

import numpy as np
import pytest

import hipgrad as hg
from hipgrad import ops


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
