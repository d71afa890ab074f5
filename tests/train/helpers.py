"""Small shared pieces for the training tests: a digits subset and a ready Trainer."""

from __future__ import annotations

import numpy as np

import hipgrad as hg
from hipgrad import nn, optim
from hipgrad.data import DataLoader, Dataset, load_digits
from hipgrad.training.models import build_model
from hipgrad.training.trainer import Trainer

_DIGITS: tuple[Dataset, Dataset] | None = None


def digits(n_train: int | None = None, n_val: int | None = None) -> tuple[Dataset, Dataset]:
    """The digits split (cached), optionally cut to its first n_train / n_val samples."""
    global _DIGITS
    if _DIGITS is None:
        _DIGITS = load_digits()
    train, val = _DIGITS
    return (train.subset(np.arange(n_train or len(train))), val.subset(np.arange(n_val or len(val))))


def make_trainer(model_name: str = "lenet", seed: int = 0, optimizer: str = "adam", lr: float = 2e-3,
                 in_shape=(1, 8, 8), num_classes: int = 10, **kw) -> Trainer:
    hg.manual_seed(seed)
    model = build_model(model_name, in_shape, num_classes)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = (optim.SGD(params, lr=lr, momentum=0.9) if optimizer == "sgd"
           else optim.Adam(params, lr=lr))
    return Trainer(model, nn.CrossEntropyLoss(), opt, "cpu", **kw)


def loader(ds: Dataset, batch_size: int = 32, seed: int = 0, **kw) -> DataLoader:
    return DataLoader(ds, batch_size, shuffle=True, seed=seed, **kw)


def weights(model) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        np.testing.assert_array_equal(v, b[k], err_msg=k)
