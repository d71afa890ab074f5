"""Data for training: in-memory data sets of images and labels, the loaders for the bundled
digits, MNIST / Fashion-MNIST (IDX files) and CIFAR-10 (binary batches), and a DataLoader.

Every data set here is a `Dataset`: `images` float32 (N, C, H, W) and `labels` int64 (N,).
Loaders check what they read (magic numbers, sizes, label range) and raise `DataError` naming
the file; nothing is downloaded.

    train, val = load_digits()                    # 1,438 / 359 real 8x8 digits, stratified
    for x, y in DataLoader(train, 32, shuffle=True, seed=0):
        ...                                       # x (32, 1, 8, 8) float32, y (32,) int64
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator, Sequence

import numpy as np


class DataError(ValueError):
    """A data set could not be found or read; the message names the file or the name."""


@dataclass
class Dataset:
    """Images float32 (N, C, H, W) and labels int64 (N,), held in memory.

    `preprocess` records what was done to the raw pixels (x * scale, then (x - mean) / std per
    channel), so inference can repeat it; `classes` names the labels.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str = ""
    classes: list[str] = field(default_factory=list)
    preprocess: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images = np.ascontiguousarray(self.images, dtype=np.float32)
        labels = np.asarray(self.labels)
        if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(labels == np.rint(labels))):
            raise ValueError(f"Dataset: labels must be integer class indices, got {labels.dtype} values "
                             "that are not whole numbers" if labels.dtype.kind == "f" else
                             f"Dataset: labels must be integer class indices, got dtype {labels.dtype}")
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        if self.images.ndim != 4:
            raise ValueError(f"Dataset: images must be (N, C, H, W), got shape {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"Dataset: labels must be ({self.images.shape[0]},) to match images, "
                             f"got shape {self.labels.shape}")
        if not self.classes and len(self.labels):
            self.classes = [str(i) for i in range(int(self.labels.max()) + 1)]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.labels[index]

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: np.ndarray, name: str | None = None) -> Dataset:
        """The images and labels at `index` (a copy), with the same classes and preprocessing."""
        return Dataset(self.images[index], self.labels[index], name or self.name,
                       list(self.classes), dict(self.preprocess))

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation over all images (for `normalize`)."""
        mean = self.images.mean(axis=(0, 2, 3), dtype=np.float64)
        std = self.images.std(axis=(0, 2, 3), dtype=np.float64)
        return [float(m) for m in mean], [float(s) for s in std]

    def normalize(self, mean: float | Sequence[float], std: float | Sequence[float]) -> Dataset:
        """A copy with (x - mean) / std per channel; a scalar applies to every channel."""
        c = self.images.shape[1]
        m = np.broadcast_to(np.asarray(mean, dtype=np.float32), (c,))
        s = np.broadcast_to(np.asarray(std, dtype=np.float32), (c,))
        if np.any(s <= 0) or not np.all(np.isfinite(s)):
            raise ValueError(f"normalize: std must be positive and finite per channel, got {s.tolist()}")
        images = (self.images - m[None, :, None, None]) / s[None, :, None, None]
        pre = dict(self.preprocess, mean=[float(v) for v in m], std=[float(v) for v in s])
        return Dataset(images, self.labels, self.name, list(self.classes), pre)


def normalize(dataset: Dataset, mean: float | Sequence[float], std: float | Sequence[float]) -> Dataset:
    """(x - mean) / std per channel; see `Dataset.normalize`."""
    return dataset.normalize(mean, std)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): each class contributes round(val_fraction * its count) to val."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = round(val_fraction * len(idx))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def load_digits(val_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """scikit-learn's bundled handwritten digits (1,797 8x8 images, offline) as (train, val):
    pixels scaled from 0..16 to [0, 1], shape (N, 1, 8, 8), a stratified held-out split."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise DataError("the digits data set needs scikit-learn: pip install scikit-learn "
                        "(or pip install 'hipgrad[train]')") from e
    bunch = sk_load_digits()
    images = (bunch.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    full = Dataset(images, labels, "digits", [str(i) for i in range(10)],
                   {"scale": 1.0 / 16.0})
    tr, va = stratified_split(labels, val_fraction, seed)
    return full.subset(tr, "digits-train"), full.subset(va, "digits-val")


# --- IDX files (MNIST, Fashion-MNIST) -------------------------------------------------------

_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """One IDX file (gzip-compressed or raw) as an array of its declared type and shape."""
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'none'}; "
                        "expected 00 00 <type 08|09|0b|0c|0d|0e> <ndim>)")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions but the file ends "
                        f"after {len(data)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(f"{path}: {what}: shape {shape} of {dtype.name} needs {expected} bytes, "
                        f"found {len(data)}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory}: no {stem} or {stem}.gz")


def _idx_pair(directory: Path, prefix: str, name: str, classes: list[str]) -> Dataset:
    img_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    lab_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    images, labels = load_idx(img_path), load_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{img_path}: expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{lab_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels")
    if len(labels) and labels.max() >= len(classes):
        raise DataError(f"{lab_path}: label {int(labels.max())} out of range 0..{len(classes) - 1}")
    return Dataset((images.astype(np.float32) / 255.0)[:, None], labels, name, classes,
                   {"scale": 1.0 / 255.0})


FASHION_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot"]


def load_mnist(directory: str | os.PathLike, fashion: bool = False) -> tuple[Dataset, Dataset]:
    """MNIST or Fashion-MNIST from the four IDX files in `directory` (gzip or raw) as
    (train, test), pixels scaled to [0, 1], shape (N, 1, 28, 28)."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: not a directory")
    name = "fashion-mnist" if fashion else "mnist"
    classes = FASHION_CLASSES if fashion else [str(i) for i in range(10)]
    return (_idx_pair(d, "train", f"{name}-train", classes),
            _idx_pair(d, "t10k", f"{name}-test", classes))


# --- CIFAR-10 binary batches ----------------------------------------------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
_CIFAR_RECORD = 1 + 3 * 32 * 32


def load_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch (3073-byte records: label, 1024 R, 1024 G, 1024 B) as
    (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    path = Path(path)
    data = _read_maybe_gzip(path)
    if len(data) == 0 or len(data) % _CIFAR_RECORD:
        raise DataError(f"{path}: {len(data)} bytes is not a whole number of 3073-byte CIFAR-10 "
                        "records (truncated or not a CIFAR-10 binary batch)")
    records = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= 10:
        bad = int(np.argmax(labels >= 10))
        raise DataError(f"{path}: record {bad} has label {int(labels[bad])}, expected 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(directory: str | os.PathLike) -> tuple[Dataset, Dataset]:
    """CIFAR-10 from data_batch_*.bin and test_batch.bin in `directory` (or its
    cifar-10-batches-bin folder) as (train, test), pixels scaled to [0, 1]."""
    d = Path(directory)
    if (d / "cifar-10-batches-bin").is_dir():
        d = d / "cifar-10-batches-bin"
    if not d.is_dir():
        raise DataError(f"{d}: not a directory")
    train_files = sorted(d.glob("data_batch_*.bin"))
    if not train_files:
        raise DataError(f"{d}: no data_batch_*.bin files")
    parts = [load_cifar10_batch(p) for p in train_files]
    test_x, test_y = load_cifar10_batch(d / "test_batch.bin")

    def make(x: np.ndarray, y: np.ndarray, name: str) -> Dataset:
        return Dataset(x.astype(np.float32) / 255.0, y, name, list(CIFAR10_CLASSES), {"scale": 1.0 / 255.0})
    return (make(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), "cifar10-train"),
            make(test_x, test_y, "cifar10-test"))


def load_dataset(spec: str, val_fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, val) by name: "digits", "mnist:<dir>", "fashion-mnist:<dir>", "cifar10:<dir>".

    MNIST-style and CIFAR-10 sets use their test split as val. Every set is normalised per
    channel with its training split's mean and std (recorded in `preprocess`).
    """
    name, _, where = spec.partition(":")
    name = name.strip().lower()
    if name == "digits":
        if where:
            raise DataError(f"data 'digits' takes no path, got {spec!r}")
        train, val = load_digits(val_fraction, seed)
        mean, std = train.channel_stats()
        return train.normalize(mean, std), val.normalize(mean, std)
    loaders = {"mnist": lambda p: load_mnist(p), "fashion-mnist": lambda p: load_mnist(p, fashion=True),
               "cifar10": load_cifar10}
    if name not in loaders:
        raise DataError(f"unknown data {spec!r}: expected digits, mnist:<dir>, fashion-mnist:<dir> "
                        "or cifar10:<dir>")
    if not where:
        raise DataError(f"data {name!r} needs a directory: {name}:<dir>")
    train, val = loaders[name](where)
    mean, std = train.channel_stats()
    return train.normalize(mean, std), val.normalize(mean, std)


class DataLoader:
    """Batches (x, y) of NumPy arrays from a Dataset.

    With shuffle, epoch e visits the samples in the order of a permutation drawn from
    (seed, e), so a run is reproducible and a resumed run sees the same batches; iterating
    again moves to the next epoch (or call `set_epoch`).
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0) -> None:
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if drop_last and len(dataset) < batch_size:
            raise ValueError(f"DataLoader: drop_last with batch_size {batch_size} leaves no batch "
                             f"from {len(dataset)} samples")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration uses."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The sample indices epoch `epoch` visits, in order."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        idx = self.order(self.epoch)
        self.epoch += 1
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            sel = idx[start:start + self.batch_size]
            yield self.dataset.images[sel], self.dataset.labels[sel]
