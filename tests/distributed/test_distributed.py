"""hipgrad.distributed under `mpiexec -n 2` on the CPU: collectives against NumPy, 2 ranks
splitting each global batch == 1 process on the whole batch, and a dead or stuck rank ending the
run with an error in bounded time. Each case runs a worker script in fresh processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hipgrad as hg

HERE = Path(__file__).parent


def _mpiexec() -> str | None:
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def _skip_reason() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install mpi4py mpich)"
    if _mpiexec() is None:
        return "no mpiexec on PATH (pip install mpich)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _run(args: list[str], ranks: int | None, timeout: float = 120, env: dict | None = None):
    full_env = {**os.environ, "PYTHONPATH": str(Path(hg.__file__).parent.parent),
                "HIPGRAD_DIST_TIMEOUT": "60", **(env or {})}
    cmd = [sys.executable, *args]
    if ranks is not None:
        cmd = [_mpiexec(), "-n", str(ranks), *cmd]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=HERE)
    return proc, time.monotonic() - start


def test_collectives_match_numpy():
    proc, _ = _run(["worker_collectives.py"], 2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok") == 2, proc.stdout


@pytest.mark.parametrize("model, opt, clip", [("mlp", "sgd", "0.1"), ("lenet", "adamw", "0.05"),
                                              ("lenet", "sgd", "0")])
def test_two_ranks_equal_one_process(tmp_path, model, opt, clip):
    ref, out = tmp_path / "ref.npz", tmp_path / "dist.npz"
    proc, _ = _run(["worker_train.py", "ref", model, opt, clip, str(ref)], None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, _ = _run(["worker_train.py", "dist", model, opt, clip, str(out)], 2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = np.load(ref), np.load(out)
    assert sorted(a.files) == sorted(b.files)
    # AdamW divides each gradient entry by its own running RMS: an entry near zero turns the
    # summation-order rounding of two half batches into a difference of up to ~1e-3 of a step
    # (lr 0.01); SGD keeps it at float rounding.
    atol = 5e-5 if opt == "adamw" else 2e-6
    for key in a.files:
        np.testing.assert_allclose(b[key], a[key], rtol=2e-5, atol=atol, err_msg=key)
    first = tmp_path / "ref_run"
    assert (first / "history.json").exists() and (tmp_path / "dist_run" / "history.json").exists()
    # the weights moved: the comparison is not of two untouched initialisations
    assert not np.allclose(a["losses"][0, 0], a["losses"][1, 0])


def test_gpt_two_ranks_equal_one_process(tmp_path):
    """The LM trainer: 2 ranks splitting a global batch of 5 windows == 1 process, over 4 AdamW
    steps with clipping; the tied wte / lm_head weight included."""
    ref, out = tmp_path / "ref.npz", tmp_path / "dist.npz"
    proc, _ = _run(["worker_gpt.py", "ref", str(ref)], None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, _ = _run(["worker_gpt.py", "dist", str(out)], 2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = np.load(ref), np.load(out)
    assert sorted(a.files) == sorted(b.files) and "transformer.wte.weight" in a.files
    # AdamW divides each gradient entry by its own running RMS, so an entry whose gradient is
    # near zero carries the sum's rounding (2 ranks sum in another order than 1 process) up to
    # the size of a step (lr 3e-3): 1e-5 is a three-hundredth of one step. A wrong split or a
    # missed gradient moves weights by whole steps.
    for key in a.files:
        np.testing.assert_allclose(b[key], a[key], rtol=2e-5, atol=1e-5, err_msg=key)
    assert (tmp_path / "dist_run" / "model.safetensors").exists()
    assert not np.allclose(a["losses"][0], a["losses"][1])   # the weights moved


def test_gpt_cli_two_ranks_equal_one_process(tmp_path):
    """`mpiexec -n 2 hipgrad train --model gpt --data pydoc ...` writes the weights one process
    writes (to float rounding), with rank 0 alone writing the run."""
    args = ["-m", "hipgrad", "train", "--model", "gpt", "--data", "pydoc", "--n-layer", "1",
            "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "6",
            "--max-steps", "3", "--eval-interval", "3", "--threads", "1", "--no-progress"]
    proc, _ = _run(args + ["--out", str(tmp_path / "one")], None, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, _ = _run(args + ["--out", str(tmp_path / "two")], 2, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("hipgrad train: gpt") == 1 and "2 ranks" in proc.stdout, proc.stdout
    one = hg.load_checkpoint(tmp_path / "one").weights
    two = hg.load_checkpoint(tmp_path / "two").weights
    for key in one:     # tolerance as in test_gpt_two_ranks_equal_one_process (lr 1e-3)
        np.testing.assert_allclose(two[key], one[key], rtol=2e-5, atol=5e-6, err_msg=key)


def test_resume_with_another_number_of_ranks(tmp_path):
    """Epoch 1 on 2 ranks, epoch 2 resumed by 1 process == 2 epochs in 1 process."""
    args = ["worker_train.py", "ref", "mlp", "adamw", "0.1"]
    proc, _ = _run(args + [str(tmp_path / "ref.npz")], None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args[1] = "dist"
    proc, _ = _run(args + [str(tmp_path / "first.npz")], 2, env={"WORKER_EPOCHS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args[1] = "ref"
    proc, _ = _run(args + [str(tmp_path / "second.npz")], None,
                   env={"WORKER_RESUME": str(tmp_path / "first_run")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "second.npz")
    for key in a.files:
        np.testing.assert_allclose(b[key], a[key], rtol=2e-5, atol=2e-6, err_msg=key)


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_failed_rank_stops_the_run(tmp_path, fault):
    out = tmp_path / "dist.npz"
    proc, seconds = _run(["worker_train.py", "dist", "mlp", "sgd", "0", str(out), fault], 2,
                         timeout=90, env={"HIPGRAD_DIST_TIMEOUT": "4"})
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert not out.exists()                      # the run did not complete
    if fault == "hang":
        assert "timed out" in proc.stderr and "rank 0" in proc.stderr, proc.stderr
    # epoch 1's checkpoint (written before the fault) is whole and loads
    ckpt = hg.load_checkpoint(tmp_path / "dist_run" / "model.safetensors")
    assert ckpt.epoch == 1


def test_build_info_names_the_gpu_collectives_path():
    """NCCL / RCCL when compiled in (the library and version), else host staging over MPI; a
    communicator asked of a build without either is a clear error."""
    import hipgrad.distributed as dist
    from hipgrad._native import _C
    lib = _C.collectives.library()
    info = dist.build_info()["gpu_collectives"]
    facts = hg.build_info()["facts"]
    if lib is None:
        assert "host staging" in info and "no NCCL/RCCL" in info
        assert facts.get("gpu.vendor.nccl", "not found") == "not found"
        with pytest.raises(ValueError, match="no NCCL or RCCL was compiled into this build"):
            _C.collectives.unique_id()
    else:
        assert info.startswith(lib) and lib.split()[0] in ("NCCL", "RCCL")
        assert len(_C.collectives.unique_id()) == 128
