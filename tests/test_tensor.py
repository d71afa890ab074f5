"""Tensor construction, conversion, DLPack and device handling."""

from __future__ import annotations

import re

import hipgrad as hg
import numpy as np
import pytest
from hipgrad.tensor import try_borrow


@pytest.mark.parametrize("dtype", ["float32", "int64", "int32", "int8", "uint8"])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 31), (2, 3, 5, 129)])
def test_roundtrip_copies_values(device, rng, dtype, shape):
    x = (rng.standard_normal(shape) * 50).astype(dtype)
    t = hg.tensor(x, device=device)
    assert t.shape == shape and t.dtype == np.dtype(dtype) and t.device == device
    got = t.numpy()
    np.testing.assert_array_equal(got, x)
    got[...] = 0  # numpy() is a copy: the tensor keeps its data
    np.testing.assert_array_equal(t.numpy(), x)


def test_defaults_and_factories(device):
    assert hg.tensor([[1.5, 2.0]], device=device).dtype == np.float32
    assert hg.tensor(np.arange(4, dtype=np.float64)).dtype == np.float32
    assert hg.tensor([1, 2, 3]).dtype == np.int64
    z = hg.zeros((3, 4), device=device)
    np.testing.assert_array_equal(z.numpy(), np.zeros((3, 4), np.float32))
    assert hg.empty(5, device=device, dtype=np.int32).shape == (5,)
    assert len(hg.zeros((6, 2))) == 6


def test_non_contiguous_input_is_made_contiguous(rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)[:, ::3].T
    np.testing.assert_array_equal(hg.tensor(x).numpy(), x)


def test_repr_names_shape_dtype_device():
    r = repr(hg.tensor(np.ones((2, 3), np.float32)))
    assert "shape=(2, 3)" in r and "float32" in r and "cpu" in r


def test_one_element_tensors_convert_to_python_scalars(device, rng):
    """bool / float / int as torch: a one-element tensor of any rank converts; bool() of any other
    size is ambiguous (not len() != 0), float() / int() refuse it."""
    v = float(rng.uniform(1.5, 9.5)) * rng.choice([-1.0, 1.0])
    for shape in [(), (1,), (1, 1, 1)]:
        t = hg.tensor(np.full(shape, v, np.float32), device=device)
        assert float(t) == float(np.float32(v)) and int(t) == int(np.float32(v)) and bool(t)
        assert not hg.tensor(np.zeros(shape, np.float32), device=device)
    assert bool(hg.tensor([np.nan], device=device))
    assert int(hg.tensor(np.array([-7], np.int64), device=device)) == -7
    loss, _ = hg.ops.softmax_cross_entropy(hg.zeros((2, 3), device=device),
                                           hg.tensor(np.array([0, 2]), device=device))
    assert abs(float(loss) - np.log(3.0)) < 1e-6
    for shape in [(2,), (0,), (1, 0), (2, 1)]:
        t = hg.zeros(shape, device=device)
        with pytest.raises(ValueError, match=rf"truth value of a tensor of shape {re.escape(str(shape))}.*ambiguous"):
            bool(t)
        with pytest.raises(TypeError, match="only a one-element tensor can be converted to a float"):
            float(t)
        with pytest.raises(TypeError, match="only a one-element tensor can be converted to an int"):
            int(t)


def test_reshape_is_a_view_and_checks_size():
    t = hg.tensor(np.arange(12, dtype=np.float32))
    v = t.reshape(3, -1)
    assert v.shape == (3, 4) and v._shares_storage(t)
    with pytest.raises(ValueError, match="holds 10 elements"):
        t.reshape(2, 5)
    # a product beyond int64 wraps (7 * 7905747460161236407 = 1 mod 2^64): refused, not a view
    one = hg.tensor(np.ones(1, np.float32))
    for shape in ((7, 7905747460161236407), (2**32, 2**32), (-1, 2**40, 2**40)):
        with pytest.raises(ValueError, match="more elements than a 64-bit count"):
            one.reshape(*shape)
    with pytest.raises(ValueError, match="more elements than a 64-bit count"):
        hg.zeros(4).prefix_view([3, 6148914691236517206])
    assert hg.zeros(0).reshape(0, 2**62).shape == (0, 2**62)  # no elements: nothing to overflow


def test_to_moves_and_copies(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    t = hg.tensor(x)
    u = t.to("cpu")
    assert not u._shares_storage(t)
    np.testing.assert_array_equal(u.numpy(), x)


def test_numpy_dlpack_shares_memory_both_ways():
    t = hg.tensor(np.zeros((2, 3), np.float32))
    view = np.from_dlpack(t)
    view[1, 2] = 7.0
    assert t.numpy()[1, 2] == 7.0
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    h = hg.from_dlpack(a)
    a[0, 0] = -5.0
    assert h.numpy()[0, 0] == -5.0 and h.shape == (2, 3) and h.device == "cpu"
    assert t.__dlpack_device__() == (1, 0)


def test_read_only_arrays_are_never_wrapped_writable(rng, tmp_path):
    """A tensor is always writable, so a read-only buffer is refused by from_dlpack and copied by
    borrow: an in-place op on the result never reaches the caller's array (a read-only memory map
    written through a wrap would crash the process)."""
    x = rng.standard_normal((3, 7)).astype(np.float32)
    x.setflags(write=False)
    keep = x.copy()
    with pytest.raises(BufferError, match="read-only.*hg.tensor"):
        hg.from_dlpack(x)
    assert try_borrow(x) is None
    path = tmp_path / "ro.bin"
    keep.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=keep.shape)
    for src in (x, mm, np.asarray(mm)):
        assert not src.flags.writeable
        t = hg.borrow(src)
        assert t.data_ptr() != src.ctypes.data
        hg.ops.fill_(t, 2.0)
        np.testing.assert_array_equal(t.numpy(), np.full(keep.shape, 2.0, np.float32))
        np.testing.assert_array_equal(src, keep)
    np.testing.assert_array_equal(hg.from_dlpack(x[:, ::2]).numpy(), keep[:, ::2])  # a copy anyway


def test_dlpack_strided_source_is_copied(rng):
    a = rng.standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_array_equal(hg.from_dlpack(a[::2, 1::2]).numpy(), a[::2, 1::2])


def test_torch_dlpack_exchange():
    torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install torch==2.13.0)")
    t = hg.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    tt = torch.from_dlpack(t)
    tt[0, 1] = 42.0
    assert t.numpy()[0, 1] == 42.0
    src = torch.arange(8, dtype=torch.int64).reshape(2, 4)
    h = hg.from_dlpack(src)
    src[1, 3] = -1
    assert h.dtype == np.int64 and h.numpy()[1, 3] == -1


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="dtype must be one of"):
        hg.tensor(np.ones(3, np.complex64))
    with pytest.raises(TypeError, match="dtype must be one of"):
        hg.zeros((2,), dtype=np.float16)
    with pytest.raises(ValueError, match="device must be"):
        hg.tensor([1.0], device="tpu")
    with pytest.raises(ValueError, match="non-negative"):
        hg.zeros((2, -1))
    for shape in [(2.7, 3), 2.0, (True, 3), None, "23"]:  # never truncated or coerced
        with pytest.raises(TypeError, match="shape must be an int or a sequence of ints"):
            hg.zeros(shape)
    with pytest.raises(ValueError, match="shape must fit in a signed 64-bit int"):
        hg.empty((2**64,))
    with pytest.raises(TypeError, match="reshape: shape must be an int or a sequence of ints"):
        hg.zeros(6).reshape(1.5, 4)
    with pytest.raises(MemoryError):
        hg.empty((1 << 40, 1 << 20))
    with pytest.raises(TypeError, match="must be a hipgrad Tensor or a NumPy array"):
        hg.ops.gemm("a", np.ones((2, 2), np.float32))


def test_gpu_request_without_gpu_is_a_clear_error():
    if len(hg.devices()) > 1:
        pytest.skip("a GPU is visible")
    assert hg.devices() == ["cpu"]
    reason = hg.gpu_unavailable_reason()
    assert len(reason) > 10
    with pytest.raises(ValueError, match="no GPU device is usable"):
        hg.tensor([1.0], device="gpu")
    with pytest.raises(ValueError, match="no GPU device is usable"):
        hg.zeros((2,), device="gpu:0")


def test_memory_stats_track_live_tensors():
    before = hg.memory_stats("cpu")
    t = hg.empty((1024, 256))
    during = hg.memory_stats("cpu")
    assert during["current"] - before["current"] == 1024 * 256 * 4
    assert during["peak"] >= during["current"]
    assert during["allocations"] == before["allocations"] + 1
    del t
    assert hg.memory_stats("cpu")["current"] == before["current"]
    hg.reset_peak_memory_stats("cpu")
    assert hg.memory_stats("cpu")["peak"] == hg.memory_stats("cpu")["current"]


def test_build_info_lists_backends_and_kernels():
    info = hg.build_info()
    assert "cpu" in info["backends"]
    assert info["facts"]["cpu.blas"].startswith("OpenBLAS")
    ops = {(r["op"], r["backend"], r["variant"]) for r in info["kernels"]}
    assert ("gemm", "cpu", "handwritten") in ops and ("gemm", "cpu", "vendor") in ops


def test_threads_setting_roundtrip():
    n = hg.get_num_threads()
    hg.set_num_threads(1)
    assert hg.get_num_threads() == 1
    hg.set_num_threads(n)
    with pytest.raises(ValueError, match="n must be >= 1"):
        hg.set_num_threads(0)


def test_threads_setting_is_bounded(rng):
    """Far more threads than the hardware has used to crash the next op (thread creation fails
    inside an OpenMP region); the limit is max(64, 4 x the hardware threads)."""
    n = hg.get_num_threads()
    for bad in (100000, 2**40):
        with pytest.raises(ValueError, match=rf"n must be at most \d+ \(4 x this machine's \d+ "
                                             rf"hardware threads, at least 64\), got {bad}"):
            hg.set_num_threads(bad)
        assert hg.get_num_threads() == n  # unchanged
    with pytest.raises(TypeError, match="set_num_threads: n must be an int, got 2.5"):
        hg.set_num_threads(2.5)
    with pytest.raises(ValueError) as err:
        hg.set_num_threads(100000)
    limit = int(re.search(r"at most (\d+)", str(err.value)).group(1))
    assert limit >= 64
    x = rng.standard_normal(1 << 16).astype(np.float32)
    try:
        hg.set_num_threads(limit)  # the limit itself runs
        assert hg.get_num_threads() == limit
        np.testing.assert_array_equal(hg.ops.activation(x, "relu").numpy(), np.maximum(x, 0))
    finally:
        hg.set_num_threads(n)


def test_time_ms_measures_the_work_and_passes_errors_through(device):
    import time
    ms = hg.time_ms(lambda: time.sleep(0.02), device)
    assert 15.0 <= ms < 2000.0, ms  # the host sleeps; on a GPU the events bracket the sleep too
    x = hg.tensor(np.ones((64, 64), np.float32), device=device)
    assert hg.time_ms(lambda: hg.ops.gemm(x, x), device) > 0.0

    def boom():
        raise KeyError("inside")
    with pytest.raises(KeyError, match="inside"):
        hg.time_ms(boom, device)
    with pytest.raises(TypeError, match="fn must be callable"):
        hg.time_ms(3, device)


def test_borrow_wraps_contiguous_cpu_arrays_and_copies_the_rest(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    t = hg.borrow(x)
    assert t.data_ptr() == x.ctypes.data and t.shape == (3, 5) and t.dtype == np.float32
    x[1, 2] = 7.5  # shared memory: the tensor sees the caller's write
    np.testing.assert_array_equal(t.numpy(), x)
    ids = rng.integers(0, 9, (4,))
    assert hg.borrow(ids).data_ptr() == ids.ctypes.data and hg.borrow(ids).dtype == np.int64
    x.setflags(write=False)  # a read-only array is copied: a tensor over it would be writable
    t = hg.borrow(x)
    assert t.data_ptr() != x.ctypes.data
    np.testing.assert_array_equal(t.numpy(), x)
    # anything else is a copy with tensor()'s conversions
    for data, dtype in [(x.astype(np.float64), np.float32), (np.asfortranarray(x), np.float32),
                        (x[:, ::2], np.float32), ([[1, 2], [3, 4]], np.int64),
                        (np.array([True, False]), np.uint8)]:
        t = hg.borrow(data)
        assert t.dtype == dtype
        if isinstance(data, np.ndarray):
            assert t.data_ptr() != data.ctypes.data
        np.testing.assert_array_equal(t.numpy(), np.asarray(data).astype(dtype))
    whole = np.round(x * 10)  # a different dtype asked for: converted (exactly, or refused)
    t = hg.borrow(whole, dtype=np.int32)
    assert t.dtype == np.int32 and t.data_ptr() != whole.ctypes.data
    np.testing.assert_array_equal(t.numpy(), whole.astype(np.int32))
    with pytest.raises(ValueError, match="not a whole number"):
        hg.borrow(x + 0.25, dtype=np.int32)


def test_integer_data_outside_the_dtype_is_refused_not_wrapped():
    for data, dtype in (([2**63], None), (np.array([2**64 - 1], np.uint64), None), ([-129], np.int8),
                        (np.array([300], np.int64), np.uint8), ([-1], np.uint8)):
        with pytest.raises(ValueError, match="do not fit"):
            hg.tensor(data, dtype=dtype)
    edges = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max], np.int64)
    np.testing.assert_array_equal(hg.tensor(edges).numpy(), edges)  # the extremes themselves fit
    np.testing.assert_array_equal(hg.tensor(np.array([255, 0], np.uint64), dtype=np.uint8).numpy(), [255, 0])


def test_asarray_copy_false_is_a_view_or_refused(rng):
    t = hg.tensor(rng.standard_normal(5).astype(np.float32))
    view = np.asarray(t, copy=False)
    view[2] = 7.0
    assert t.numpy()[2] == 7.0  # a real view: the write is seen
    with pytest.raises(ValueError, match="needs a copy"):
        np.asarray(t, dtype=np.float64, copy=False)
    copy = np.asarray(t)  # the default copies
    copy[0] = -1.0
    assert t.numpy()[0] != -1.0
