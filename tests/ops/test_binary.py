"""ops.binary: add/sub/mul/div with NumPy broadcasting against NumPy float64, on every device and
impl, outputs poisoned (conftest), in place, and bad input named."""

from __future__ import annotations

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check, to_dev
from tests.op_cases import OPS, _binary_operands, _binary_reference

SHAPES = OPS["binary"].params["shapes"]
KINDS = OPS["binary"].params["kinds"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sa, sb", SHAPES, ids=[f"{a}-{b}".replace(" ", "") for a, b in SHAPES])
def test_binary_matches_float64(device, impl, rng, sa, sb, kind):
    a, b = _binary_operands(rng, sa, sb, kind)
    y = hg.ops.binary(to_dev(a, device), to_dev(b, device), kind, impl=impl)
    want = _binary_reference(a, b, kind)
    assert y.device == device and y.dtype == "float32"
    check(y, want, rtol=1e-6, atol=1e-7, what=f"{sa} {kind} {sb} {impl}")
    # the operands swapped: the broadcast side moves, and sub / div are not symmetric
    y = hg.ops.binary(to_dev(b, device), to_dev(a, device), kind, impl=impl)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = _binary_reference(b, a, kind)
    if kind == "div":  # a has no margin from 0: compare where the quotient is tame
        tame = np.abs(np.broadcast_to(a, want.shape)) > 1e-3
        check(np.where(tame, y.numpy(), 0), np.where(tame, want, 0), rtol=1e-6, atol=1e-7,
              what=f"{sb} {kind} {sa}")
    else:
        check(y, want, rtol=1e-6, atol=1e-7, what=f"{sb} {kind} {sa}")


@pytest.mark.parametrize("n", [5, 40_003])  # the second one is threaded on the CPU
def test_binary_threaded_and_unaligned(device, rng, n):
    # a view starting one element into a buffer: no float4 path on the GPU
    buf = hg.tensor(rng.standard_normal(2 * n + 1).astype(np.float32), device=device)
    a = buf.narrow(1, 2 * n).reshape([2, n])
    b = to_dev(rng.standard_normal((2, n)).astype(np.float32), device)
    y = hg.ops.binary(a, b, "sub")
    check(y, a.numpy().astype(np.float64) - b.numpy(), rtol=1e-6, atol=1e-7, what="unaligned")
    c = to_dev(rng.standard_normal((2, 1)).astype(np.float32), device)
    y = hg.ops.binary(a, c, "mul")
    check(y, a.numpy().astype(np.float64) * c.numpy(), rtol=1e-6, atol=1e-7, what="row scalar")


@pytest.mark.parametrize("target", ["a", "b"])
def test_binary_in_place(device, impl, rng, target):
    """out may be the operand that already has the result's shape: y = x + bias into x."""
    x = rng.standard_normal((3, 5, 4, 7)).astype(np.float32)
    c = rng.standard_normal((5, 1, 1)).astype(np.float32)
    tx, tc = to_dev(x, device), to_dev(c, device)
    if target == "a":
        y = hg.ops.binary(tx, tc, "sub", impl=impl, out=tx)
        want = x.astype(np.float64) - c
    else:
        y = hg.ops.binary(tc, tx, "div", impl=impl, out=tx)
        want = c.astype(np.float64) / x
    assert y.data_ptr() == tx.data_ptr()
    check(tx, want, rtol=1e-6, atol=1e-7, what=f"in place into {target}")
    with pytest.raises(ValueError, match="binary: out must not overlap b unless it is b itself"):
        hg.ops.binary(tx, tc, "add", out=tc)  # c is broadcast: out cannot be c


def test_binary_empty_and_scalar(device):
    a = to_dev(np.zeros((3, 0), np.float32), device)
    assert hg.ops.binary(a, to_dev(np.ones((1, 1), np.float32), device), "add").shape == (3, 0)
    s = hg.ops.binary(to_dev(np.array(2.0, np.float32), device),
                      to_dev(np.array([[4.0]], np.float32), device), "div")
    assert s.shape == (1, 1) and float(s.numpy()[0, 0]) == 0.5


def test_binary_reports_what_ran(impl, rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    hg.ops.binary(a, a, "add", impl=impl)
    ran = hg.ops.last_impl()
    assert ran["op"] == "binary" and ran["impl"].startswith("cpu.binary_rows"), ran
    assert ("vendor fallback" in ran["impl"]) == (impl == "vendor"), ran


def test_binary_matches_torch(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((2, 5, 7, 3)).astype(np.float32)
    b = rng.uniform(0.5, 2.0, (5, 1, 3)).astype(np.float32)
    for kind, fn in [("add", torch.add), ("sub", torch.sub), ("mul", torch.mul),
                     ("div", torch.div)]:
        want = fn(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        check(hg.ops.binary(a, b, kind), want.astype(np.float64), rtol=1e-6, atol=1e-7, what=kind)


def test_binary_rejects_bad_input(device):
    a = to_dev(np.ones((2, 3), np.float32), device)
    with pytest.raises(ValueError,
                       match=r"binary: a \(2, 3\) and b \(4,\) do not broadcast: axis -1"):
        hg.ops.binary(a, to_dev(np.ones(4, np.float32), device), "add")
    with pytest.raises(ValueError, match="binary: kind must be one of 'add', 'sub', 'mul', 'div'"):
        hg.ops.binary(a, a, "pow")
    with pytest.raises(TypeError, match="binary: kind must be a string"):
        hg.ops.binary(a, a, 1)
    with pytest.raises(TypeError, match="binary: b must be float32"):
        hg.ops.binary(a, np.ones((2, 3), np.int32), "add")
    with pytest.raises(ValueError, match="binary: a .* have up to 7 axes; at most 6"):
        hg.ops.binary(np.ones((1,) * 7, np.float32), np.ones(1, np.float32), "add")
    with pytest.raises(TypeError, match="binary: b must be a hipgrad Tensor"):
        hg.ops.binary(a, None, "add")
    with pytest.raises(ValueError, match="binary: out must have shape"):
        hg.ops.binary(a, a, "add", out=to_dev(np.ones((3, 2), np.float32), device))
    if device != "cpu":
        with pytest.raises(ValueError, match="binary: .* on "):
            hg.ops.binary(a, np.ones((2, 3), np.float32), "add")
