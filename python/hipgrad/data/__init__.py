"""Data sets and the batch loader (`from hipgrad.data import DataLoader, load_digits`).

datasets.py: the image data sets (bundled digits, MNIST / Fashion-MNIST, CIFAR-10), `Dataset`,
`DataLoader` and `load_dataset(spec)`, which maps a `--data` name to its loader. Other kinds of
data (text, tokenizers) go in modules of their own here, re-exported below.
"""

from __future__ import annotations

from .datasets import (FASHION_CLASSES, DataError, DataLoader, Dataset, load_cifar10,
                       load_cifar10_batch, load_dataset, load_digits, load_idx, load_mnist,
                       normalize, stratified_split)
from .text import BPETokenizer, ByteTokenizer, Corpus, load_corpus
from .windows import TokenWindows

__all__ = ["FASHION_CLASSES", "DataError", "DataLoader", "Dataset", "load_cifar10",
           "load_cifar10_batch", "load_dataset", "load_digits", "load_idx", "load_mnist",
           "normalize", "stratified_split", "BPETokenizer", "ByteTokenizer", "Corpus", "load_corpus",
           "TokenWindows"]
