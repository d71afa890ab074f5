"""Checkpoints: round trip, atomic writes (a failing write keeps the previous pair), load
errors that name the file, refusal to write non-finite weights, fine-tuning."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import hipgrad as hg
import hipgrad.training.checkpoint as ckpt
from hipgrad.training.checkpoint import (CheckpointError, finetune_model, freeze, from_jsonable,
                                load_checkpoint, load_model, save_checkpoint, to_jsonable)

from .helpers import assert_same_weights, digits, loader, make_trainer, weights


@pytest.fixture
def trained(tmp_path):
    """A LeNet trainer after one short epoch, saved to tmp_path/model.safetensors."""
    train, _ = digits(128, 32)
    t = make_trainer()
    t.fit(loader(train), 1, out_dir=tmp_path, progress=False)
    return t


def test_round_trip(trained, tmp_path):
    c = load_checkpoint(tmp_path)
    assert c.epoch == 1 and c.spec == trained.model.spec and len(c.history) == 1
    assert c.meta["format_version"] == ckpt.FORMAT_VERSION and c.meta["hipgrad_version"]
    assert_same_weights(c.weights, weights(trained.model))
    model = load_model(tmp_path / "model.safetensors")
    assert_same_weights(weights(model), weights(trained.model))
    other = make_trainer(seed=5)
    c.restore(other.model, other.optimizer)
    assert_same_weights(weights(other.model), weights(trained.model))
    a, b = to_jsonable(other.optimizer.state_dict()), to_jsonable(trained.optimizer.state_dict())
    assert a == b


def test_weights_file_is_plain_safetensors(trained, tmp_path):
    from safetensors.numpy import load_file
    plain = load_file(str(tmp_path / "model.safetensors"))
    assert set(plain) == set(trained.model.state_dict())


def test_jsonable_state_is_bit_exact():
    state = {0: {"m": np.array([1e-38, np.pi, -0.0], np.float32), "step": 3},
             "groups": [{"lr": 0.1, "ids": (0, 1)}], "count": np.array(7), (1, 2): np.arange(5, dtype=np.int64)}
    back = from_jsonable(json.loads(json.dumps(to_jsonable(state))))
    assert set(back) == {0, "groups", "count", (1, 2)} and back[0]["step"] == 3
    assert back["count"].shape == () and back["count"] == 7
    assert back[0]["m"].tobytes() == state[0]["m"].tobytes()
    np.testing.assert_array_equal(back[(1, 2)], state[(1, 2)])
    with pytest.raises(TypeError, match="cannot store a object"):
        to_jsonable({"x": object()})


def _shifted(model) -> dict:
    return {k: v + 1.0 if v.dtype.kind == "f" else v for k, v in weights(model).items()}


@pytest.mark.parametrize("fail_at", ["weights temp", "sidecar temp", "weights rename"])
def test_failed_write_keeps_previous_checkpoint(trained, tmp_path, monkeypatch, fail_at):
    """A write that fails (disk full while writing a temp file, or a failed rename) leaves the
    previous pair loadable and unchanged, and no temp files behind."""
    before = weights(trained.model)
    trained.model.load_state_dict(_shifted(trained.model))
    calls = {"fsync": 0, "replace": 0}
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls["fsync"] += 1
        if calls["fsync"] == {"weights temp": 1, "sidecar temp": 2}.get(fail_at):
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    def replace(src, dst):
        calls["replace"] += 1
        if fail_at == "weights rename" and calls["replace"] == 1:
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "fsync", fsync)
    monkeypatch.setattr(ckpt.os, "replace", replace)
    with pytest.raises(OSError):
        trained.save(tmp_path / "model.safetensors")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["curve.png", "history.csv", "history.json",
                                            "model.json", "model.safetensors"]
    assert_same_weights(load_checkpoint(tmp_path).weights, before)


def test_failure_between_renames_is_detected(trained, tmp_path, monkeypatch):
    """The one window two files cannot close: the weights renamed, the sidecar not. Loading
    says so instead of pairing new weights with the old optimizer state."""
    trained.model.load_state_dict(_shifted(trained.model))
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace)
    with pytest.raises(OSError):
        trained.save(tmp_path / "model.safetensors")
    monkeypatch.undo()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    with pytest.raises(CheckpointError, match=r"model.safetensors does not match its sidecar"):
        load_checkpoint(tmp_path)


def test_mismatched_pair_is_detected(trained, tmp_path):
    shutil.copy(tmp_path / "model.json", tmp_path / "old.json")
    trained.fit(loader(digits(128)[0]), 2, out_dir=tmp_path, progress=False)
    shutil.copy(tmp_path / "old.json", tmp_path / "model.json")
    with pytest.raises(CheckpointError, match=r"model.safetensors does not match its sidecar"):
        load_checkpoint(tmp_path)


def test_load_errors_name_the_file(trained, tmp_path):
    w, s = tmp_path / "model.safetensors", tmp_path / "model.json"
    blob, meta = w.read_bytes(), s.read_text()
    w.write_bytes(blob[:-10])
    with pytest.raises(CheckpointError, match=r"model.safetensors does not match .*truncated"):
        load_checkpoint(w)
    w.write_bytes(blob)
    s.write_text(meta[: len(meta) // 2])
    with pytest.raises(CheckpointError, match=r"model.json: corrupt or truncated checkpoint sidecar"):
        load_checkpoint(w)
    newer = json.loads(meta)
    newer["format_version"] = ckpt.FORMAT_VERSION + 1
    s.write_text(json.dumps(newer))
    with pytest.raises(CheckpointError, match=r"model.json: checkpoint format version 2 is newer"):
        load_checkpoint(w)
    s.write_text(meta)
    w.unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors: checkpoint weights not found"):
        load_checkpoint(s)
    with pytest.raises(CheckpointError, match=r"nowhere.json: checkpoint sidecar not found"):
        load_checkpoint(tmp_path / "nowhere.safetensors")


def test_corrupt_weights_with_matching_digest(trained, tmp_path):
    import hashlib
    w, s = tmp_path / "model.safetensors", tmp_path / "model.json"
    junk = b"\xff" * 64
    w.write_bytes(junk)
    meta = json.loads(s.read_text())
    meta["weights_sha256"] = hashlib.sha256(junk).hexdigest()
    s.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"model.safetensors: corrupt safetensors data"):
        load_checkpoint(w)


def test_refuses_non_finite_weights(trained, tmp_path):
    before = weights(trained.model)
    bad = weights(trained.model)
    bad["0.weight"].flat[0] = np.nan
    trained.model.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"refusing to write non-finite weights \(0.weight"):
        save_checkpoint(tmp_path / "model.safetensors", trained.model)
    assert_same_weights(load_checkpoint(tmp_path).weights, before)


def test_freeze_and_finetune(trained, tmp_path):
    model = finetune_model(tmp_path, num_classes=5, freeze_layers=["0", "3"])
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"0.weight", "0.bias", "3.weight", "3.bias"}
    sd, old = weights(model), load_checkpoint(tmp_path).weights
    assert sd["12.weight"].shape == (5, 84)
    np.testing.assert_array_equal(sd["0.weight"], old["0.weight"])
    with pytest.raises(ValueError, match=r"no parameters under \['conv9'\]"):
        freeze(model, ["conv9"])


def test_weights_names_without_the_safetensors_suffix_keep_their_own_sidecar(trained, tmp_path):
    """epoch.1 and epoch.2 (or model.pt) pair with epoch.1.json and epoch.2.json: a second save
    never overwrites the first one's sidecar, and each loads by either file's name."""
    t = trained
    first = weights(t.model)
    save_checkpoint(tmp_path / "ck" / "epoch.1", t.model, optimizer=t.optimizer, epoch=1)
    for p in t.model.parameters():
        p.data.copy_(hg.tensor(np.full(p.data.shape, 0.5, np.float32)))  # other weights
    save_checkpoint(tmp_path / "ck" / "epoch.2", t.model, optimizer=t.optimizer, epoch=2)
    assert sorted(os.listdir(tmp_path / "ck")) == ["epoch.1", "epoch.1.json", "epoch.2", "epoch.2.json"]
    for name in ("epoch.1", "epoch.1.json"):
        c = load_checkpoint(tmp_path / "ck" / name)
        assert c.epoch == 1
        assert_same_weights(c.weights, first)
    assert load_checkpoint(tmp_path / "ck" / "epoch.2.json").epoch == 2


def test_restore_checks_optimizer_state_before_touching_the_model(trained, tmp_path):
    from hipgrad import optim

    other = make_trainer(seed=5)
    before = weights(other.model)
    wrong = optim.SGD(other.model.parameters(), lr=0.1)  # the checkpoint holds Adam's state
    with pytest.raises(CheckpointError, match="optimizer state is for Adam, not SGD"):
        load_checkpoint(tmp_path).restore(other.model, wrong)
    assert_same_weights(weights(other.model), before)
    subset = optim.Adam(list(other.model.parameters())[:1])  # the right type, the wrong parameters
    with pytest.raises(ValueError):
        load_checkpoint(tmp_path).restore(other.model, subset)
    assert_same_weights(weights(other.model), before)  # the weights were put back
    state = trained.model.state_dict()
    key = next(iter(state))
    with pytest.raises(TypeError, match=f"'{key}' must hold real numbers"):
        other.model.load_state_dict({**state, key: np.full(np.shape(state[key]), "a")})
    assert_same_weights(weights(other.model), before)


def test_sidecar_history_is_strict_json(trained, tmp_path):
    """A NaN figure in the history (a val loss of an empty split, a skipped epoch) is written as
    null, as history.json has it: other JSON readers reject NaN tokens."""
    history = [{"epoch": 1, "train_loss": float("nan"), "val_acc": 0.5, "val_loss": float("inf")}]
    path = save_checkpoint(tmp_path / "h", trained.model, epoch=1, history=history)
    text = path.with_suffix(".json").read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))
    assert doc["history"] == [{"epoch": 1, "train_loss": None, "val_acc": 0.5, "val_loss": None}]
    assert load_checkpoint(tmp_path / "h").history == doc["history"]


def test_a_pair_saved_under_the_old_sidecar_rule_still_loads(trained, tmp_path):
    """Before epoch.1 got epoch.1.json, a weights file x.pt had its sidecar at x.json: found
    through the sidecar's weights_file, by either name."""
    path = save_checkpoint(tmp_path / "old" / "x.safetensors", trained.model, epoch=4)
    side = path.with_suffix(".json")
    doc = json.loads(side.read_text())
    doc["weights_file"] = "x.pt"
    side.write_text(json.dumps(doc))
    path.rename(path.with_name("x.pt"))
    for name in ("x.pt", "x.json"):
        c = load_checkpoint(tmp_path / "old" / name)
        assert c.epoch == 4
        assert_same_weights(c.weights, weights(trained.model))
