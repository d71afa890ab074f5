"""Data loaders on small files the tests write (IDX gzip/raw, CIFAR-10 batches), their errors
for corrupt or truncated files, the digits split, and the DataLoader's order."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from hipgrad.data import (DataError, DataLoader, Dataset, load_cifar10, load_cifar10_batch,
                          load_dataset, load_digits, load_idx, load_mnist, normalize)


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    big = arr.astype(arr.dtype.newbyteorder(">"))
    data = bytes([0, 0, codes[big.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + big.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(d: Path, rng, n_train=7, n_test=3, gz=True) -> dict:
    d.mkdir(exist_ok=True)
    ext = ".gz" if gz else ""
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(d / f"{prefix}-images-idx3-ubyte{ext}", x, gz)
        write_idx(d / f"{prefix}-labels-idx1-ubyte{ext}", y, gz)
        arrays[prefix] = (x, y)
    return arrays


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", ["uint8", "int8", ">i2", ">i4", ">f4", ">f8"])
def test_idx_round_trip(tmp_path, rng, gz, dtype):
    arr = (rng.standard_normal((3, 5, 7)) * 50).astype(dtype)
    got = load_idx(write_idx(tmp_path / "a.idx", arr, gz))
    assert got.shape == arr.shape and got.dtype.kind == np.dtype(dtype).kind
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_mnist_loader(tmp_path, rng, gz):
    arrays = write_mnist(tmp_path, rng, gz=gz)
    train, test = load_mnist(tmp_path)
    assert train.images.shape == (7, 1, 28, 28) and train.images.dtype == np.float32
    assert train.labels.dtype == np.int64 and len(test) == 3
    np.testing.assert_allclose(train.images[:, 0], arrays["train"][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(test.labels, arrays["t10k"][1])
    fashion, _ = load_mnist(tmp_path, fashion=True)
    assert fashion.classes[9] == "ankle boot" and fashion.name == "fashion-mnist-train"


def test_idx_truncated_names_file(tmp_path, rng):
    path = write_idx(tmp_path / "x-idx3-ubyte", rng.integers(0, 255, (4, 6, 6), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"x-idx3-ubyte: truncated"):
        load_idx(path)


def test_idx_bad_magic_names_file(tmp_path):
    path = tmp_path / "junk.idx"
    path.write_bytes(b"\x01\x02\x03\x04" + bytes(20))
    with pytest.raises(DataError, match=r"junk.idx: not an IDX file"):
        load_idx(path)


def test_idx_truncated_header_and_gzip(tmp_path, rng):
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match=r"short.idx: IDX header declares 3 dimensions"):
        load_idx(short)
    gz = write_idx(tmp_path / "cut.gz", rng.integers(0, 255, (50, 9), dtype=np.uint8), gz=True)
    gz.write_bytes(gz.read_bytes()[:30])
    with pytest.raises(DataError, match=r"cut.gz: corrupt or truncated gzip"):
        load_idx(gz)
    with pytest.raises(DataError, match=r"missing.idx: file not found"):
        load_idx(tmp_path / "missing.idx")


def test_mnist_mismatched_counts_and_missing(tmp_path, rng):
    write_mnist(tmp_path, rng, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte holds 3 images but .* holds 5 labels"):
        load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"no t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def write_cifar(path: Path, rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    path.write_bytes(np.concatenate([y[:, None], x.reshape(n, -1)], axis=1).tobytes())
    return x, y


def test_cifar10_batches(tmp_path, rng):
    _, y1 = write_cifar(tmp_path / "data_batch_1.bin", rng, 4)
    x2, y2 = write_cifar(tmp_path / "data_batch_2.bin", rng, 3)
    xt, _ = write_cifar(tmp_path / "test_batch.bin", rng, 2)
    x, y = load_cifar10_batch(tmp_path / "data_batch_2.bin")
    assert x.shape == (3, 3, 32, 32) and y.dtype == np.int64
    np.testing.assert_array_equal(x, x2)
    train, test = load_cifar10(tmp_path)
    assert train.images.shape == (7, 3, 32, 32) and test.classes[0] == "airplane"
    np.testing.assert_array_equal(train.labels, np.concatenate([y1, y2]))
    np.testing.assert_allclose(test.images, xt / 255.0, rtol=1e-6)


def test_cifar10_truncated_and_bad_label(tmp_path, rng):
    path = tmp_path / "data_batch_1.bin"
    write_cifar(path, rng, 2)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"data_batch_1.bin: 6046 bytes is not a whole number"):
        load_cifar10_batch(path)
    write_cifar(path, rng, 2)
    raw = bytearray(path.read_bytes())
    raw[3073] = 12
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"data_batch_1.bin: record 1 has label 12"):
        load_cifar10_batch(path)
    write_cifar(path, rng, 2)
    with pytest.raises(DataError, match=r"test_batch.bin: file not found"):
        load_cifar10(tmp_path)


def test_load_dataset_names(tmp_path, rng):
    write_mnist(tmp_path, rng)
    train, _ = load_dataset(f"mnist:{tmp_path}")
    mean, std = train.channel_stats()
    assert abs(mean[0]) < 1e-5 and abs(std[0] - 1) < 1e-4
    assert train.preprocess["scale"] == pytest.approx(1 / 255) and len(train.preprocess["mean"]) == 1
    for bad, msg in (("imagenet", "unknown data 'imagenet'"), ("mnist", "needs a directory"),
                     (f"cifar10:{tmp_path / 'nope'}", "nope: not a directory")):
        with pytest.raises(DataError, match=msg):
            load_dataset(bad)


def test_digits_split_is_stratified_and_scaled():
    train, val = load_digits(val_fraction=0.2, seed=0)
    assert len(train) + len(val) == 1797 and train.images.shape[1:] == (1, 8, 8)
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    tr_counts, va_counts = np.bincount(train.labels), np.bincount(val.labels)
    np.testing.assert_allclose(va_counts / (tr_counts + va_counts), 0.2, atol=0.01)
    again, _ = load_digits(seed=0)
    other, _ = load_digits(seed=1)
    np.testing.assert_array_equal(again.images, train.images)
    assert not np.array_equal(other.labels, train.labels)


def test_normalize(rng):
    ds = Dataset(rng.random((5, 3, 4, 4)), rng.integers(0, 3, 5))
    mean, std = ds.channel_stats()
    out = normalize(ds, mean, std)
    np.testing.assert_allclose(out.images.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.images.std(axis=(0, 2, 3)), 1, atol=1e-4)
    with pytest.raises(ValueError, match="std must be positive"):
        ds.normalize(0.5, [1.0, 0.0, 1.0])


def _epoch_order(loader) -> np.ndarray:
    return np.concatenate([y for _, y in loader])


def test_dataloader_order_and_determinism(rng):
    n = 23
    ds = Dataset(rng.random((n, 1, 2, 2)), np.arange(n))
    plain = DataLoader(ds, 5)
    assert len(plain) == 5 and [len(y) for _, y in plain] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(_epoch_order(plain), np.arange(n))
    a, b = DataLoader(ds, 5, shuffle=True, seed=3), DataLoader(ds, 5, shuffle=True, seed=3)
    first, second = _epoch_order(a), _epoch_order(a)
    assert sorted(first) == list(range(n)) and not np.array_equal(first, second)
    np.testing.assert_array_equal(first, _epoch_order(b))
    b.set_epoch(1)
    np.testing.assert_array_equal(second, _epoch_order(b))
    assert not np.array_equal(first, _epoch_order(DataLoader(ds, 5, shuffle=True, seed=4)))
    x, y = next(iter(DataLoader(ds, 5, shuffle=True, seed=3)))
    np.testing.assert_array_equal(x, ds.images[y])
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.flags.c_contiguous


def test_dataloader_drop_last(rng):
    ds = Dataset(rng.random((23, 1, 2, 2)), np.arange(23))
    loader = DataLoader(ds, 5, shuffle=True, drop_last=True)
    sizes = [len(y) for _, y in loader]
    assert len(loader) == 4 and sizes == [5, 5, 5, 5]
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        DataLoader(ds, 0)
    with pytest.raises(ValueError, match="drop_last with batch_size 30"):
        DataLoader(ds, 30, drop_last=True)


def test_dataset_checks_shapes(rng):
    with pytest.raises(ValueError, match=r"images must be \(N, C, H, W\)"):
        Dataset(rng.random((3, 4)), np.arange(3))
    with pytest.raises(ValueError, match=r"labels must be \(3,\)"):
        Dataset(rng.random((3, 1, 2, 2)), np.arange(4))
