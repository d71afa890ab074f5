"""`hipgrad tune` (pre-tunes a model's shapes, a second process reuses the cache) and `hipgrad
explain` (one traced training step and inference pass, in plain words, 100 columns)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import hipgrad as hg
import pytest


def _run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    # the hipgrad this test imported: the installed one in CI, python/ in a dev build
    env = dict(os.environ, PYTHONPATH=str(Path(hg.__file__).resolve().parent.parent),
               HIPGRAD_CACHE_DIR=str(cache))
    env.pop("HIPGRAD_NO_TUNING_CACHE", None)
    env.pop("HIPGRAD_IMPL", None)
    return subprocess.run([sys.executable, "-W", "error", "-m", "hipgrad", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _summary(out: str) -> tuple[int, int, int]:
    m = re.search(r"(\d+) shapes with a choice for impl=\"auto\": (\d+) already tuned \(from the "
                  r"cache\), (\d+) timed now", out)
    assert m, out
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def test_tune_writes_a_cache_that_a_second_process_reuses(tmp_path):
    first = _run("tune", "--model", "lenet", "--batch", "16", "--data", "digits", "--device", "cpu",
                 cache=tmp_path)
    assert first.returncode == 0, first.stderr
    files = list(tmp_path.glob("tuning-cpu-*.json"))
    assert len(files) == 1 and str(files[0]) in first.stdout
    choices = json.loads(files[0].read_text())["choices"]
    ops = {r["op"] for r in choices}
    assert {"conv2d_forward", "conv2d_backward_data", "conv2d_backward_weight", "gemm"} <= ops
    # LeNet on 8x8 digits, batch 16: conv1 1->16 channels at 8x8, conv2 16->32 at 4x4, fc 128->120
    keys = {_shape_key(r["key"]) for r in choices}  # CPU keys also name the thread count
    assert all(re.match(r"cpu\|threads=\d+,", r["key"]) for r in choices)
    assert any(k.startswith("N=16,C=1,H=8,W=8,K=16,R=5,S=5") for k in keys)
    assert any(k.startswith("N=16,C=16,H=4,W=4,K=32,R=5,S=5") for k in keys)
    assert "M=16,N=120,K=128,ta=0,tb=1" in keys
    shapes, cached, timed = _summary(first.stdout)
    assert shapes == len(choices) and (cached, timed) == (0, shapes)
    assert first.stdout.count(" timed\n") == shapes  # the report's source column

    second = _run("tune", "--model", "lenet", "--batch", "16", "--device", "cpu", cache=tmp_path)
    assert second.returncode == 0, second.stderr
    assert _summary(second.stdout) == (shapes, shapes, 0)
    assert " timed\n" not in second.stdout and second.stdout.count(" cache\n") == shapes
    for line in (first.stdout + second.stdout).splitlines():
        if not line.startswith("  /"):  # the cache file's path stands alone on its line
            assert len(line) <= 100, line


def _shape_key(key: str) -> str:
    return re.sub(r"^cpu\|threads=\d+,", "", key)


def cpu_key(shape_key: str) -> str:
    """A CPU choice's key in this process: device, thread count, shape."""
    return f"cpu|threads={hg.get_num_threads()},{shape_key}"


def test_tune_leaves_report_entries_for_lenets_conv_and_gemm_shapes(capsys):
    from hipgrad.cli import main

    assert main(["tune", "--model", "lenet", "--batch", "16", "--device", "cpu",
                 "--precision", "fp32"]) == 0
    rows = {(r["op"], r["key"]): r for r in hg.tuning_report()}
    conv = rows[("conv2d_forward", cpu_key("N=16,C=16,H=4,W=4,K=32,R=5,S=5,st=1x1,pad=2x2,dil=1x1,g=1,bias"))]
    fc1 = rows[("gemm", cpu_key("M=16,N=120,K=128,ta=0,tb=1"))]
    for r in (conv, fc1):
        assert r["chosen"] in ("handwritten", "vendor") and r["handwritten_ms"] > 0 and r["vendor_ms"] > 0
    out = capsys.readouterr().out
    assert "M=16,N=120,K=128,ta=0,tb=1" in out and "conv2d_forward" in out


def test_format_report_prints_every_candidate():
    from hipgrad.cli.tune import format_report

    rows = [{"op": "gemm", "key": "cpu|M=1,N=2,K=3", "chosen": "handwritten", "kernel": "tile_64x32",
             "handwritten_ms": 0.5, "vendor_ms": 0.25,
             "candidates": {"tile_32x32": 0.5, "tile_64x32": 0.125, "blas": 0.25}}]
    text = format_report(rows, timed={("gemm", "cpu|M=1,N=2,K=3")})
    # the star is on the winning kernel, each candidate once (not again as handwritten / vendor)
    assert "M=1,N=2,K=3" in text and "tile_64x32* 0.125 ms" in text and "tile_32x32 0.500 ms" in text
    assert "blas 0.250 ms" in text and "timed" in text and text.count("*") == 1
    assert "handwritten 0.500 ms" not in text and "vendor 0.250 ms" not in text
    old = [{"op": "gemm", "key": "cpu|M=1,N=2,K=3", "chosen": "vendor", "handwritten_ms": 0.5, "vendor_ms": 0.25}]
    assert "vendor* 0.250 ms" in format_report(old)  # a row of variants only


def test_explain_tells_the_five_steps_and_inference(tmp_path):
    trace_json = tmp_path / "not" / "yet" / "trace.json"  # its folders are made
    done = _run("explain", "--model", "lenet", "--data", "digits", "--device", "auto", "--batch",
                "16", "--trace-json", str(trace_json), cache=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 100
    for i, phase in enumerate(("data", "forward", "loss", "backward", "update"), start=1):
        m = re.search(rf"^{i}\. {phase} +([\d.]+) ms +[\d.]+% of the step", out, re.MULTILINE)
        assert m, f"no line for phase {phase}:\n{out}"
        assert float(m.group(1)) > 0
    assert "conv2d_forward [" in out and "adam_step [" in out  # kernels named
    assert "Inference runs the same model forward only" in out and "no activation caches" in out
    m = re.search(r"^   forward +([\d.]+) ms, \d+ op calls", out, re.MULTILINE)
    assert m and float(m.group(1)) > 0
    assert re.search(r"^training step +[\d.]+ ms", out, re.MULTILINE)
    assert re.search(r"^inference pass +[\d.]+ ms", out, re.MULTILINE)
    assert "A training step took" in out
    events = json.loads(trace_json.read_text())["traceEvents"]
    assert {"data", "forward", "loss", "backward", "update", "conv2d_forward"} <= {e["name"] for e in events}


@pytest.mark.parametrize("command", ["tune", "explain"])
@pytest.mark.parametrize("args,message", [
    (["--model", "vgg"], "--model: unknown model 'vgg'"),
    (["--batch", "0"], "--batch must be a positive integer"),
    (["--data", "imagenet"], "--data: unknown data 'imagenet'"),
    (["--device", "tpu:3"], "device 'tpu:3' is not usable"),
])
def test_bad_arguments_exit_2_with_one_line(command, args, message, tmp_path, capsys):
    from hipgrad.cli import main

    assert main([command, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith(f"hipgrad {command}: error")


def test_output_paths_are_checked_before_the_run(tmp_path, capsys):
    from hipgrad.cli import main

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main(["compare", "--model", "mlp", "--batch", "4", "--input-shape", "1,8,8", "--out", str(a_file)]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["explain", "--model", "mlp", "--batch", "4", "--trace-json", str(a_file / "t.json")]) == 2
    assert "--trace-json" in capsys.readouterr().err
    assert main(["explain", "--model", "mlp", "--batch", "4", "--plot", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
