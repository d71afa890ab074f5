"""The language-model commands end to end on a small text (train, resume, generate, finetune,
explain) and their errors: one line naming the argument, exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hipgrad.cli import main

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-interval", "2", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    (d / "a.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    (d / "b.md").write_text("# notes\nhéllo wörld, the fox again.\n" * 30, encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--model", "gpt", "--data", f"text:{corpus}", "--max-steps", "4",
                 "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_run_with_history_and_tokenizer(run, capsys):
    for name in ("model.safetensors", "model.json", "history.json", "history.csv", "curve.png",
                 "summary.json", "sample.txt"):
        assert (run / name).is_file(), name
    history = json.loads((run / "history.json").read_text())
    assert [r["step"] for r in history] == [2, 4]
    for r in history:
        assert r["val_loss"] > 0 and abs(r["val_ppl"] - np.exp(r["val_loss"])) < 1e-6 * r["val_ppl"]
        assert r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1
    meta = json.loads((run / "model.json").read_text())
    assert meta["spec"]["name"] == "gpt" and meta["extra"]["tokenizer"]["kind"] == "byte"


def test_resume_continues_the_step_count(run, corpus, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert main(["train", "--model", "gpt", "--data", f"text:{corpus}", "--max-steps", "6",
                 "--resume", str(copy), "--out", str(copy), *TINY]) == 0
    assert [r["step"] for r in json.loads((copy / "history.json").read_text())] == [2, 4, 6]


def test_generate_prints_text_and_speed(run, capsys):
    assert main(["generate", str(run), "--prompt", "the fox", "--max-new-tokens", "8",
                 "--temperature", "0", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("the fox") and "tokens/s" in err
    before, after = err.split("digest ")[1].split(" before, ")
    assert after.startswith(before)                  # the weights did not change
    assert main(["generate", str(run), "--prompt", "x" * 40, "--max-new-tokens", "2",
                 "--no-cache", "--precision", "int8", "--seed", "1", "--device", "cpu"]) == 0
    assert capsys.readouterr().err.count("more than block_size 16") == 1


@pytest.mark.parametrize("args,match", [
    (["--temperature", "-1"], "--temperature"),
    (["--temperature", "nan"], "--temperature"),
    (["--top-k", "0"], "--top-k"),
    (["--top-k", "257"], "--top-k"),
    (["--prompt", ""], "--prompt is empty"),
])
def test_generate_bad_arguments_are_named(run, capsys, args, match):
    argv = ["generate", str(run), "--prompt", "a", "--device", "cpu", *args]
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_checkpoint_without_tokenizer_is_named(run, tmp_path, capsys):
    import shutil
    copy = tmp_path / "notok"
    shutil.copytree(run, copy)
    meta = json.loads((copy / "model.json").read_text())
    del meta["extra"]["tokenizer"]
    (copy / "model.json").write_text(json.dumps(meta))
    assert main(["generate", str(copy), "--prompt", "a", "--device", "cpu"]) == 2
    assert "holds no tokenizer" in capsys.readouterr().err


def test_finetune_reports_change_and_never_overwrites_its_source(run, corpus, tmp_path, capsys):
    source = (run / "model.safetensors").read_bytes()
    assert main(["finetune", str(run), "--data", f"text:{corpus / 'b.md'}", "--out", str(run),
                 "--device", "cpu"]) == 2
    assert "never overwrites its source" in capsys.readouterr().err
    assert main(["finetune", str(run), "--data", f"text:{corpus / 'b.md'}", "--freeze", "nope",
                 "--out", str(tmp_path / "x"), "--device", "cpu"]) == 2
    assert "--freeze" in capsys.readouterr().err
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    assert main(["finetune", str(run), "--data", f"text:{bad}", "--out", str(tmp_path / "y"),
                 "--device", "cpu"]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    out = tmp_path / "ft"
    assert main(["finetune", str(run), "--data", f"text:{corpus / 'b.md'}", "--freeze",
                 "transformer.h.0", "--max-steps", "2", "--eval-interval", "1", "--batch-size", "4",
                 "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "changed" in text and "old data" in text and "new data" in text
    report = json.loads((out / "finetune.json").read_text())
    assert report["digest_before"] != report["digest_after"]
    assert report["relative_change"]["transformer.h.0.attn.c_attn"] == 0.0
    assert report["relative_change"]["transformer.ln_f"] > 0.0
    assert (run / "model.safetensors").read_bytes() == source
    meta = json.loads((out / "model.json").read_text())
    assert meta["extra"]["tokenizer"]["kind"] == "byte"


def test_finetune_an_image_model(tmp_path, capsys):
    src = tmp_path / "lenet"
    assert main(["train", "--data", "digits", "--model", "lenet", "--epochs", "1", "--out", str(src),
                 "--no-progress", "--device", "cpu"]) == 0
    out = tmp_path / "lenet-ft"
    assert main(["finetune", str(src), "--model", "lenet", "--data", "digits", "--freeze", "0",
                 "--epochs", "1", "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    report = json.loads((out / "finetune.json").read_text())
    assert report["relative_change"]["0"] == 0.0 and report["relative_change"]["3"] > 0
    capsys.readouterr()


def test_explain_gpt_shows_context_is_not_learning(capsys):
    assert main(["explain", "--model", "gpt", "--batch", "2", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "CONTEXT IS NOT LEARNING" in text and "identical" in text
    assert "LEARNING IS A WEIGHT UPDATE" in text and "changed" in text
    for ph in ("data", "forward", "loss", "backward", "update"):
        assert ph in text
    import hipgrad as hg
    if hasattr(hg._C.ops, "attention"):          # the native ops, not tests/lm/shim.py
        assert "attention" in text and "layer_norm" in text


def test_bpe_tokenizer_is_trained_saved_and_used_by_generate(corpus, tmp_path, capsys):
    pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is not installed (optional)")
    out = tmp_path / "bpe"
    assert main(["train", "--model", "gpt", "--data", f"text:{corpus}", "--tokenizer", "bpe:300",
                 "--max-steps", "2", "--out", str(out), *TINY]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["extra"]["tokenizer"]["kind"] == "bpe" and meta["spec"]["options"]["vocab_size"] <= 300
    capsys.readouterr()
    assert main(["generate", str(out), "--prompt", "the lazy dog", "--max-new-tokens", "3",
                 "--temperature", "0", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("the lazy dog")
    assert main(["train", "--model", "gpt", "--data", f"text:{corpus}", "--tokenizer", "bpe:x",
                 "--max-steps", "2", "--out", str(tmp_path / "bad"), *TINY]) == 2
    assert "--tokenizer" in capsys.readouterr().err
