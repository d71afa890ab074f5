"""The training loop: determinism, exact resume, non-finite losses, history and curves,
fine-tuning a checkpoint on another data set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hipgrad import nn, optim
from hipgrad.training.checkpoint import finetune_model, load_checkpoint
from hipgrad.data import DataLoader, Dataset
from hipgrad.training.trainer import NonFiniteLossError, Trainer

from .helpers import assert_same_weights, digits, loader, make_trainer, weights


@pytest.mark.parametrize("model_name", ["mlp", "lenet", "resnet"])
def test_same_seed_same_weights(model_name):
    train, _ = digits(96)
    runs = []
    for _ in range(2):
        t = make_trainer(model_name, seed=7)
        t.fit(loader(train, 16, seed=7), 2, progress=False)
        runs.append(weights(t.model))
    assert_same_weights(*runs)
    other = make_trainer(model_name, seed=8)
    other.fit(loader(train, 16, seed=8), 2, progress=False)
    assert not np.array_equal(weights(other.model)["0.weight"] if model_name != "mlp"
                              else weights(other.model)["1.weight"],
                              runs[0]["0.weight"] if model_name != "mlp" else runs[0]["1.weight"])


@pytest.mark.parametrize("model_name,opt", [("lenet", "adam"), ("resnet", "sgd")])
def test_resume_equals_uninterrupted(tmp_path, model_name, opt):
    train, val = digits(160, 40)
    whole = make_trainer(model_name, seed=3, optimizer=opt, lr=0.01)
    whole.scheduler = optim.StepLR(whole.optimizer, step_size=1, gamma=0.5) if hasattr(optim, "StepLR") else None
    full = whole.fit(loader(train, 16, seed=3), 3, val=val, out_dir=tmp_path / "a", progress=False)

    first = make_trainer(model_name, seed=3, optimizer=opt, lr=0.01)
    first.scheduler = optim.StepLR(first.optimizer, step_size=1, gamma=0.5) if hasattr(optim, "StepLR") else None
    first.fit(loader(train, 16, seed=3), 1, val=val, out_dir=tmp_path / "b", progress=False)

    later = make_trainer(model_name, seed=99, optimizer=opt, lr=0.01)   # a fresh process, other init
    later.scheduler = optim.StepLR(later.optimizer, step_size=1, gamma=0.5) if hasattr(optim, "StepLR") else None
    resumed = later.fit(loader(train, 16, seed=3), 3, val=val, out_dir=tmp_path / "b",
                        resume=tmp_path / "b", progress=False)
    assert_same_weights(weights(later.model), weights(whole.model))
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    for a, b in zip(resumed, full):
        assert a["train_loss"] == b["train_loss"] and a["val_acc"] == b["val_acc"] and a["lr"] == b["lr"]
    assert load_checkpoint(tmp_path / "b").epoch == 3


def test_resume_of_finished_run_trains_nothing(tmp_path):
    train, _ = digits(64)
    t = make_trainer("mlp")
    t.fit(loader(train), 1, out_dir=tmp_path, progress=False)
    again = make_trainer("mlp", seed=1)
    history = again.fit(loader(train), 1, resume=tmp_path, progress=False)
    assert len(history) == 1
    assert_same_weights(weights(again.model), weights(t.model))


def _with_nan_sample(index: int) -> Dataset:
    train, _ = digits(64)
    images = train.images.copy()
    images[index] = np.nan
    return Dataset(images, train.labels)


def test_non_finite_loss_stops_naming_epoch_and_step(tmp_path):
    t = make_trainer("mlp")
    t.fit(DataLoader(digits(64)[0], 8), 1, out_dir=tmp_path, progress=False)   # a good epoch 1
    saved = weights(t.model)
    bad = DataLoader(_with_nan_sample(20), 8)       # sample 20 is in batch 3 (unshuffled)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at epoch 2, step 3 of 8") as e:
        t.fit(bad, 3, out_dir=tmp_path, progress=False)
    assert (e.value.epoch, e.value.step) == (2, 3)
    c = load_checkpoint(tmp_path)
    assert c.epoch == 1
    assert_same_weights(c.weights, saved)
    assert all(np.all(np.isfinite(v)) for v in weights(t.model).values())


def test_non_finite_loss_skip(tmp_path):
    t = make_trainer("mlp", on_nonfinite="skip")
    history = t.fit(DataLoader(_with_nan_sample(20), 8), 2, out_dir=tmp_path, progress=False)
    assert [r["skipped_steps"] for r in history] == [1, 1]
    assert all(np.isfinite(r["train_loss"]) for r in history)
    assert all(np.all(np.isfinite(v)) for v in load_checkpoint(tmp_path).weights.values())
    with pytest.raises(ValueError, match="on_nonfinite must be 'stop' or 'skip'"):
        make_trainer("mlp", on_nonfinite="ignore")


@pytest.mark.parametrize("mode", ["skip", "stop"])
def test_a_non_finite_batch_leaves_batchnorm_statistics_alone(mode, rng):
    """A skipped (or stopping) step is as if its batch never came: the BatchNorm running
    statistics and batch count equal a run without that batch, bit for bit."""
    import hipgrad as hg

    x = rng.standard_normal((48, 2, 5, 3)).astype(np.float32)
    y = rng.integers(0, 3, 48)
    x[int(rng.integers(16, 32)), 1, 2, 0] = np.inf  # the second batch

    def run(data):
        hg.manual_seed(3)
        model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                              nn.Linear(60, 3))
        t = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05), on_nonfinite=mode)
        try:
            t.train_epoch(DataLoader(data, 16), 1)
        except NonFiniteLossError:
            assert mode == "stop"
        bn = model[1]
        return {**weights(model), "running_mean": bn.running_mean.numpy(), "running_var": bn.running_var.numpy(),
                "batches": bn.num_batches_tracked}

    got = run(Dataset(x, y))
    keep = np.r_[0:16, 32:48] if mode == "skip" else np.r_[0:16]
    want = run(Dataset(x[keep], y[keep]))
    assert got["batches"] == want["batches"] == (2 if mode == "skip" else 1)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_history_files_and_curve(tmp_path):
    train, val = digits(96, 32)
    lines: list[str] = []
    t = make_trainer("mlp")
    history = t.fit(loader(train), 2, val=val, out_dir=tmp_path, progress=False, log=lines.append)
    assert json.loads((tmp_path / "history.json").read_text()) == history
    csv_rows = (tmp_path / "history.csv").read_text().splitlines()
    assert csv_rows[0].startswith("epoch,train_loss,train_acc,val_loss,val_acc") and len(csv_rows) == 3
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert lines[0].split()[:3] == ["epoch", "train", "loss"] and len(lines) == 3
    for row in history:
        assert 0 <= row["train_acc"] <= 1 and 0 <= row["val_acc"] <= 1 and row["seconds"] > 0
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_evaluate_matches_manual_count():
    _, val = digits(None, 50)
    t = make_trainer("mlp")
    result = t.evaluate(val, batch_size=16)
    logits = np.concatenate([t.model(x).numpy() for x, _ in DataLoader(val, 16)])
    assert result["acc"] == np.mean(logits.argmax(1) == val.labels)


def test_finetune_on_another_data_set(tmp_path):
    train, val = digits()
    low, high = (train.labels < 5), (train.labels >= 5)
    first = make_trainer("lenet", lr=5e-3)
    first.fit(loader(train.subset(np.flatnonzero(low))), 3, out_dir=tmp_path, progress=False)

    model = finetune_model(tmp_path, num_classes=5, freeze_layers=["0", "3"])
    frozen_before = {k: v for k, v in weights(model).items() if k.startswith(("0.", "3."))}
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert {n for n, _ in params} == {"7.weight", "7.bias", "10.weight", "10.bias", "12.weight", "12.bias"}
    t = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(params, lr=5e-3), "cpu")
    shift = lambda ds: Dataset(ds.images, ds.labels - 5)
    val_high = shift(val.subset(np.flatnonzero(val.labels >= 5)))
    history = t.fit(loader(shift(train.subset(np.flatnonzero(high)))), 5, val=val_high, progress=False)
    after = weights(model)
    for k, v in frozen_before.items():
        np.testing.assert_array_equal(after[k], v, err_msg=f"{k} is frozen but changed")
    assert history[-1]["val_acc"] > 0.7      # features learnt on 0-4 serve 5-9 (chance: 0.2)
    assert not np.array_equal(after["12.weight"], weights(first.model)["12.weight"][:5])


def test_runs_without_matplotlib(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    lines: list[str] = []
    t = make_trainer("mlp")
    t.fit(loader(digits(64)[0]), 1, out_dir=tmp_path, progress=False, log=lines.append)
    assert not (tmp_path / "curve.png").exists() and (tmp_path / "history.json").exists()
    assert "matplotlib is not installed" in lines[-1]


def test_progress_bar_only_on_a_terminal(monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    train = digits(64)[0]
    for terminal, progress, shown in ((True, True, True), (True, False, False), (False, True, False)):
        err = Terminal() if terminal else io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        make_trainer("mlp").fit(loader(train), 1, progress=progress, log=lambda line: None)
        assert ("epoch 1" in err.getvalue()) == shown, (terminal, progress)
