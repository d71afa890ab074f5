"""Tokens and text: byte-level round trips, the BPE tokenizer (when installed), corpora, windows."""

from __future__ import annotations

import numpy as np
import pytest

from hipgrad.data import DataError
from hipgrad.data import text
from hipgrad.data.windows import TokenWindows

SAMPLES = ["", "hello", "héllo wörld ✓ — 日本語 🙂", "line\nbreak\ttab\x00nul"]


@pytest.mark.parametrize("s", SAMPLES)
def test_byte_tokens_round_trip_any_utf8(s):
    tok = text.ByteTokenizer()
    ids = tok.encode(s)
    assert ids.dtype == np.int64 and len(ids) == len(s.encode("utf-8"))
    np.testing.assert_array_equal(ids, np.frombuffer(s.encode(), np.uint8))
    assert tok.decode(ids) == s


def test_byte_decode_refuses_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        text.ByteTokenizer().decode([65, 256])


def test_bpe_round_trips_and_saves_with_its_vocabulary():
    pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is not installed (optional)")
    corpus = text.pydoc_text()[:50000]
    tok = text.make_tokenizer("bpe:400", corpus)
    assert tok.vocab_size <= 400
    for s in SAMPLES[1:] + [corpus[1000:1500]]:
        assert tok.decode(tok.encode(s)) == s
    ids = tok.encode(corpus[:2000])
    assert len(ids) < 2000 * 0.8          # merges make tokens of frequent words
    back = text.tokenizer_from_meta(tok.meta())
    np.testing.assert_array_equal(back.encode(corpus[:500]), tok.encode(corpus[:500]))


def test_tokenizer_meta_missing_is_named():
    with pytest.raises(ValueError, match="holds no tokenizer"):
        text.tokenizer_from_meta(None, "runs/x")
    with pytest.raises(ValueError, match="bpe"):
        text.make_tokenizer("wordpiece")


def test_pydoc_corpus_split_is_fixed():
    a, b = text.load_corpus("pydoc"), text.load_corpus("pydoc")
    assert a.train == b.train and a.val == b.val
    n = len(a.train) + len(a.val)
    assert n > 400_000 and abs(len(a.val) / n - 0.1) < 0.001
    assert "import" in a.train


def test_text_file_and_folder(tmp_path):
    (tmp_path / "a.txt").write_text("alpha " * 50, encoding="utf-8")
    (tmp_path / "b.md").write_text("béta " * 50, encoding="utf-8")
    (tmp_path / "skip.bin").write_bytes(b"\xff\xfe")
    c = text.load_corpus(f"text:{tmp_path}")
    assert "alpha" in c.train and "béta" in c.train + c.val
    single = text.load_corpus(f"text:{tmp_path / 'a.txt'}")
    assert single.train + single.val == "alpha " * 50


def test_text_that_is_not_utf8_is_named(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 10)
    with pytest.raises(DataError, match=r"latin1.txt: not UTF-8 .*0xe9 at offset 3"):
        text.load_corpus(f"text:{bad}")
    with pytest.raises(DataError, match="no such file"):
        text.load_corpus(f"text:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="unknown text data"):
        text.load_corpus("shakespeare")


def test_windows_shift_targets_by_one_and_validation_is_fixed(rng):
    ids = rng.integers(0, 256, 1000)
    w = TokenWindows(ids, 16)
    x, y = w.random_batch(8, seed=3, step=5)
    assert x.shape == y.shape == (8, 16)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    x2, _ = w.random_batch(8, seed=3, step=5)
    np.testing.assert_array_equal(x, x2)
    for xb, yb in w.val_batches(4, 10):
        for row_x, row_y in zip(xb, yb):
            start = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(ids, 16) == row_x, axis=1))[0])
            np.testing.assert_array_equal(row_y, ids[start + 1:start + 17])
    assert list(w.fixed_windows(10)) == list(w.fixed_windows(10))
    with pytest.raises(DataError, match="fewer than one window"):
        TokenWindows(ids[:10], 16, "tiny")
