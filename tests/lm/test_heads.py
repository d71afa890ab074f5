"""Moving attention heads between layouts (row gathers) and Tensor.narrow, against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from hipgrad.nn import _heads


@pytest.mark.parametrize("shape,dims", [((2, 5, 3, 4, 8), (2, 0, 3, 1, 4)), ((3, 7, 6), (1, 0, 2)),
                                        ((1, 1, 1, 5), (2, 1, 0, 3)), ((4, 3, 2, 1), (1, 2, 0, 3))])
def test_permute_matches_numpy_transpose(rng, shape, dims):
    x = rng.standard_normal(shape).astype(np.float32)
    got = _heads.permute(hg.tensor(x), dims)
    np.testing.assert_array_equal(got.numpy(), np.transpose(x, dims))
    out = hg.empty((int(np.prod(shape)) + 5,))          # poisoned; a prefix is written
    _heads.permute(hg.tensor(x), dims, out=out.prefix_view(list(np.transpose(x, dims).shape)))
    np.testing.assert_array_equal(out.numpy()[:x.size], np.transpose(x, dims).ravel())
    with pytest.raises(ValueError, match="keeping the last"):
        _heads.permute(hg.tensor(x), tuple(reversed(range(len(shape)))))


def test_split_and_merge_are_inverse_and_match_numpy(rng):
    b, t, h, hd = 2, 5, 3, 4
    qkv = rng.standard_normal((b, t, 3 * h * hd)).astype(np.float32)
    q, k, v = _heads.split_qkv(hg.tensor(qkv), h)
    for i, part in enumerate((q, k, v)):
        ref = qkv[..., i * h * hd:(i + 1) * h * hd].reshape(b, t, h, hd).transpose(0, 2, 1, 3)
        np.testing.assert_array_equal(part.numpy(), ref)
    np.testing.assert_array_equal(_heads.merge_qkv(q, k, v).numpy(), qkv)
    y = rng.standard_normal((b, h, t, hd)).astype(np.float32)
    merged = _heads.merge_heads(hg.tensor(y))
    np.testing.assert_array_equal(merged.numpy(), y.transpose(0, 2, 1, 3).reshape(b, t, h * hd))
    np.testing.assert_array_equal(_heads.split_heads(merged, h).numpy(), y)
    x = rng.standard_normal((b, t, 7)).astype(np.float32)
    np.testing.assert_array_equal(_heads.last_positions(hg.tensor(x)).numpy(), x[:, -1])


def test_narrow_views_a_range_of_the_first_axis(rng):
    a = rng.standard_normal((6, 3, 2)).astype(np.float32)
    t = hg.tensor(a)
    v = t.narrow(2, 3)
    np.testing.assert_array_equal(v.numpy(), a[2:5])
    v.copy_(hg.tensor(np.zeros((3, 3, 2), np.float32)))
    a[2:5] = 0
    np.testing.assert_array_equal(t.numpy(), a)
    assert t.narrow(6, 0).shape == (0, 3, 2)
    for start, length in ((5, 2), (-1, 1), (0, 7), (2, -1)):
        with pytest.raises(ValueError, match="narrow: start"):
            t.narrow(start, length)
    with pytest.raises(ValueError, match="0-d"):
        hg.tensor(np.float32(1)).narrow(0, 1)
