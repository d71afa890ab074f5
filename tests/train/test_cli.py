"""`hipgrad train` end to end on digits, and its errors (one line, exit code 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hipgrad as hg
from hipgrad.cli import main
from hipgrad.runtime import resolve_device



def test_train_digits_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--data", "digits", "--model", "lenet", "--epochs", "2", "--device", "auto",
                 "--out", str(out), "--no-progress", "--lr", "3e-3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "epoch  train loss" in text and "done in" in text
    for name in ("model.safetensors", "model.json", "history.json", "history.csv", "curve.png",
                 "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    auto = resolve_device("auto")  # the GPU where one is usable
    assert summary["epochs"] == 2 and summary["device"] == auto and summary["model"] == "lenet"
    assert summary["final"]["val_acc"] > 0.3
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["extra"]["data"]["name"] == "digits" and sidecar["spec"]["in_shape"] == [1, 8, 8]

    code = main(["train", "--epochs", "3", "--out", str(out), "--resume", str(out), "--no-progress",
                 "--lr", "3e-3", "--impl", "handwritten"])
    assert code == 0
    assert len(json.loads((out / "history.json").read_text())) == 3
    capsys.readouterr()
    other = tmp_path / "more"  # --epochs counts the resumed epochs: 3 of 3 leaves nothing to do
    assert main(["train", "--epochs", "3", "--out", str(other), "--resume", str(out), "--no-progress"]) == 2
    assert "already at epoch 3" in capsys.readouterr().err and not (other / "summary.json").exists()


def test_same_seed_same_file_across_processes(tmp_path):
    """Two processes, the same seed and pinned kernels: byte-identical weights files."""
    digests = []
    for run in ("a", "b"):
        done = _run_module("train", "--epochs", "1", "--impl", "handwritten", "--out", run,
                           "--val-fraction", "0.8", "--no-progress", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        digests.append(json.loads((tmp_path / run / "model.json").read_text())["weights_sha256"])
    assert digests[0] == digests[1]


def _run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # the hipgrad this test imported: the installed one in CI, python/ in a dev build
    env = dict(os.environ, PYTHONPATH=str(Path(hg.__file__).resolve().parent.parent))
    return subprocess.run([sys.executable, "-m", "hipgrad", *args], cwd=cwd, env=env, check=False,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["--data", "imagenet"], "unknown data 'imagenet'"),
    (["--data", "mnist:/no/such/dir"], "/no/such/dir: not a directory"),
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--device", "gpu:7"], "device 'gpu:7' is not usable here"),
    (["--resume", "/no/such/run"], "run/model.json: checkpoint sidecar not found"),
    (["--lr", "-1"], "--lr: Adam: lr must be a finite number >= 0, got -1.0"),
    (["--lr", "nan"], "--lr: Adam: lr must be a finite number >= 0, got nan"),
    (["--optimizer", "sgd", "--momentum", "nan"], "--momentum: SGD: momentum must be a finite number"),
    (["--weight-decay", "-0.5"], "--weight-decay: Adam: weight_decay must be a finite number >= 0"),
    (["--threads", "0"], "--threads must be a positive int, got 0"),
    (["--val-fraction", "1.5"], "val_fraction must be in (0, 1), got 1.5"),
])
def test_errors_exit_2_without_traceback(tmp_path, capsys, args, message):
    code = main(["train", "--epochs", "1", "--out", str(tmp_path / "x"), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_python_dash_m(tmp_path):
    done = _run_module("train", "--data", "fashion-mnist", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "needs a directory" in done.stderr and "Traceback" not in done.stderr
    assert _run_module("--help", cwd=tmp_path).stdout.count("train") >= 1
    assert _run_module("bogus", cwd=tmp_path).returncode == 2
