"""Text as tokens: byte-level tokens (the default; vocab 256, any UTF-8 text round-trips exactly)
or a byte-level BPE trained on the corpus with Hugging Face `tokenizers` (an optional extra), and
the corpora a language model trains on.

    tok = ByteTokenizer()
    ids = tok.encode("héllo")           # int64 array of byte values
    tok.decode(ids) == "héllo"
    corpus = load_corpus("pydoc")        # the Python language reference shipped with CPython
    corpus = load_corpus("text:notes/")  # a UTF-8 file, or a folder of .txt / .md files

A tokenizer is stored with a checkpoint as `tokenizer_meta(tok)` (a JSON-able dict) and comes
back with `tokenizer_from_meta`, which names the checkpoint when it holds none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import DataError

TEXT_SUFFIXES = (".txt", ".md")


class ByteTokenizer:
    """One token per UTF-8 byte: ids 0..255. Decoding replaces a byte sequence that is not valid
    UTF-8 (a model can emit one) with U+FFFD; valid text round-trips exactly."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise TypeError(f"encode: text must be a str, got {type(text).__name__}")
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids: Any) -> str:
        arr = _ids_in_vocab(ids, self.vocab_size, "decode: ids")
        return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")

    def meta(self) -> dict:
        return {"kind": "byte", "vocab_size": 256}


class BPETokenizer:
    """A byte-level BPE (Hugging Face `tokenizers`): every byte is in its alphabet, so no text is
    unknown to it, and merges learnt from the corpus make tokens of frequent words."""

    kind = "bpe"

    def __init__(self, tok: Any) -> None:
        self._tok = tok
        self.vocab_size = int(tok.get_vocab_size())

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "BPETokenizer":
        tokenizers = require_tokenizers()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 257:
            raise ValueError(f"BPETokenizer.train: vocab_size must be an int >= 257 (the 256 bytes and "
                             f"at least one merge), got {vocab_size!r}")
        tok = tokenizers.Tokenizer(tokenizers.models.BPE())
        tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tokenizers.decoders.ByteLevel()
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=vocab_size, show_progress=False,
            initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator([text], trainer=trainer)
        return cls(tok)

    @classmethod
    def from_json(cls, text: str) -> "BPETokenizer":
        return cls(require_tokenizers().Tokenizer.from_str(text))

    def encode(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise TypeError(f"encode: text must be a str, got {type(text).__name__}")
        return np.asarray(self._tok.encode(text).ids, dtype=np.int64)

    def decode(self, ids: Any) -> str:
        arr = _ids_in_vocab(ids, self.vocab_size, "decode: ids")
        return self._tok.decode([int(i) for i in arr])

    def meta(self) -> dict:
        return {"kind": "bpe", "vocab_size": self.vocab_size, "json": self._tok.to_str()}


def require_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise ImportError("a BPE tokenizer needs Hugging Face tokenizers: pip install tokenizers "
                          "(byte-level tokens need nothing)") from None
    return tokenizers


def _ids_in_vocab(ids: Any, vocab: int, what: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integer token ids, got dtype {arr.dtype}")
    arr = arr.reshape(-1).astype(np.int64)
    bad = arr[(arr < 0) | (arr >= vocab)]
    if bad.size:
        raise ValueError(f"{what}: token id {int(bad[0])} is outside the vocabulary [0, {vocab})")
    return arr


def make_tokenizer(name: str, text: str = "") -> ByteTokenizer | BPETokenizer:
    """"byte", or "bpe:<vocab size>" trained on `text`."""
    kind, _, size = name.partition(":")
    if kind == "byte" and not size:
        return ByteTokenizer()
    if kind == "bpe":
        try:
            n = int(size)
        except ValueError:
            raise ValueError(f"--tokenizer {name!r}: expected byte or bpe:<vocab size>, e.g. bpe:512") from None
        return BPETokenizer.train(text, n)
    raise ValueError(f"--tokenizer {name!r}: expected byte or bpe:<vocab size>, e.g. bpe:512")


def tokenizer_meta(tok: ByteTokenizer | BPETokenizer) -> dict:
    return tok.meta()


def tokenizer_from_meta(meta: Any, where: str = "checkpoint") -> ByteTokenizer | BPETokenizer:
    """The tokenizer a checkpoint stored; a ValueError naming `where` when it holds none."""
    if not isinstance(meta, dict) or meta.get("kind") not in ("byte", "bpe"):
        raise ValueError(f"{where}: the checkpoint holds no tokenizer (expected extra.tokenizer "
                         "with kind byte or bpe); it was not written by a language-model run")
    if meta["kind"] == "byte":
        return ByteTokenizer()
    if not isinstance(meta.get("json"), str):
        raise ValueError(f"{where}: the checkpoint's BPE tokenizer has no vocabulary (json)")
    return BPETokenizer.from_json(meta["json"])


# --- corpora ----------------------------------------------------------------------------------

@dataclass
class Corpus:
    """Training and validation text (the split is fixed: no seed moves it) and its source."""

    name: str
    train: str
    val: str


def _split(text: str, name: str, val_fraction: float = 0.1) -> Corpus:
    cut = int(len(text) * (1.0 - val_fraction))
    if cut < 1 or len(text) - cut < 1:
        raise DataError(f"{name}: {len(text)} characters is too little text for a train/val split")
    return Corpus(name, text[:cut], text[cut:])


def pydoc_text() -> str:
    """The Python language reference's topics (pydoc_data.topics) in a fixed order."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise DataError("data 'pydoc' needs pydoc_data.topics, which this Python lacks") from None
    return "\n\n".join(topics[k].strip() for k in sorted(topics))


def read_utf8(path: Path) -> str:
    """A file's text; DataError naming the file and the byte offset where it stops being UTF-8."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset "
                        f"{e.start}); convert it, e.g. iconv -t utf-8") from None


def text_files(path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"text:{path}: the folder holds no .txt or .md files")
        return files
    raise DataError(f"text:{path}: no such file or folder")


def load_corpus(spec: str) -> Corpus:
    """"pydoc" or "text:PATH" as a Corpus with a fixed 90/10 train/val split."""
    if not isinstance(spec, str):
        raise DataError(f"--data must be a string (pydoc or text:PATH), got {spec!r}")
    name, sep, where = spec.partition(":")
    if name == "pydoc" and not sep:
        return _split(pydoc_text(), "pydoc")
    if name == "text" and where:
        text = "\n\n".join(read_utf8(f) for f in text_files(where))
        return _split(text, spec)
    raise DataError(f"unknown text data {spec!r}: expected pydoc or text:PATH (a UTF-8 file or a "
                    "folder of .txt/.md files)")
