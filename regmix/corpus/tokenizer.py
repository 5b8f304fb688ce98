"""Tokenizers for the token store: byte-level (default), locally trained byte-level BPE, or a file.

Byte-level: ids 0..255 are UTF-8 bytes, 256 is end-of-document, vocabulary 257, no files.
BPE and files use Hugging Face `tokenizers` (local only, never a hub); the end-of-document token is
the first of EOD_CANDIDATES the tokenizer knows, else `<|endoftext|>` is added.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from regmix.errors import RegmixError

EOD_TOKEN = "<|endoftext|>"
EOD_CANDIDATES = (EOD_TOKEN, "</s>", "<eos>", "<|eot_id|>", "<|end_of_text|>", "<eod>", "[SEP]")


def parse_spec(spec: str) -> tuple[str, int | Path | None]:
    """'byte' -> ('byte', None); 'bpe:8000' -> ('bpe', 8000); a path -> ('file', Path)."""
    if spec == "byte":
        return "byte", None
    m = re.fullmatch(r"bpe:(\d+)", spec)
    if m:
        size = int(m[1])
        if not 260 <= size <= 1 << 20:
            raise RegmixError(f"--tokenizer {spec}: BPE vocabulary size must be between 260 and {1 << 20}")
        return "bpe", size
    if spec.startswith("bpe"):
        raise RegmixError(f"--tokenizer {spec}: expected bpe:VOCAB_SIZE, e.g. bpe:8000")
    return "file", Path(spec)


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255 and 256 as end-of-document."""

    kind = "byte"
    vocab_size = 257
    eod_id = 256
    hash = "byte"

    def encode_docs(self, texts: list[str]) -> np.ndarray:
        """Concatenated ids of the documents, each followed by eod_id (uint16)."""
        return self.encode_bytes([t.encode("utf-8") for t in texts])

    def encode_bytes(self, raw: list[bytes]) -> np.ndarray:
        """Like encode_docs, for documents already UTF-8 encoded."""
        if not raw:
            return np.zeros(0, np.uint16)
        ends = np.cumsum(np.fromiter((len(b) + 1 for b in raw), np.int64, len(raw))) - 1
        ids = np.empty(int(ends[-1]) + 1, np.uint16)
        body = np.ones(ids.size, bool)
        body[ends] = False
        ids[body] = np.frombuffer(b"".join(raw), np.uint8)
        ids[ends] = self.eod_id
        return ids

    def encode(self, text: str) -> np.ndarray:
        """Ids of one document followed by eod_id."""
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
        return np.append(raw, np.uint16(self.eod_id))

    def decode(self, ids) -> str:
        """Text of ids (eod ids dropped); invalid UTF-8 sequences become U+FFFD."""
        arr = np.asarray(ids)
        return arr[arr < 256].astype(np.uint8).tobytes().decode("utf-8", "replace")

    def definition(self) -> None:
        return None


class HFTokenizer:
    """A Hugging Face `tokenizers` tokenizer with a known end-of-document id."""

    kind: str

    def __init__(self, tok, kind: str):
        self.tok = tok
        self.kind = kind
        eod = next((t for t in EOD_CANDIDATES if tok.token_to_id(t) is not None), None)
        if eod is None:
            tok.add_special_tokens([EOD_TOKEN])
            eod = EOD_TOKEN
        self.eod_token = eod
        self.eod_id = int(tok.token_to_id(eod))
        self.vocab_size = int(tok.get_vocab_size(with_added_tokens=True))
        self.hash = hashlib.sha256(self.definition().encode("utf-8")).hexdigest()

    def definition(self) -> str:
        """Canonical tokenizer.json text (what the hash is of)."""
        return self.tok.to_str()

    def encode_docs(self, texts: list[str]) -> np.ndarray:
        encs = self.tok.encode_batch(texts, add_special_tokens=False)
        dtype = np.uint32
        parts = []
        for enc in encs:
            parts.append(np.asarray(enc.ids, dtype=dtype))
            parts.append(np.array([self.eod_id], dtype=dtype))
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    def encode(self, text: str) -> np.ndarray:
        return self.encode_docs([text])

    def decode(self, ids) -> str:
        arr = [int(i) for i in np.asarray(ids) if int(i) != self.eod_id]
        return self.tok.decode(arr, skip_special_tokens=False)

    def save(self, path: Path) -> None:
        Path(path).write_text(self.definition(), encoding="utf-8")


def load_tokenizer_file(path: str | Path, kind: str = "file") -> HFTokenizer:
    """A tokenizer.json; a missing or unloadable file is a RegmixError naming it."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise RegmixError(f"{path}: tokenizer file not found (expected byte, bpe:VOCAB_SIZE or PATH/tokenizer.json)")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises plain Exception subclasses from Rust
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RegmixError(f"{path}: cannot load tokenizer: {first}") from None
    return HFTokenizer(tok, kind)


def train_bpe(texts: Iterable[str], vocab_size: int) -> HFTokenizer:
    """Byte-level BPE trained locally on `texts` (exact round-trip: no normalizer, no prefix space).

    HF's trainer breaks count ties in hash-map order (huggingface/tokenizers#1794), so two trainings
    on the same sample can differ in a few merges: a store keeps its tokenizer.json and reuses it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return HFTokenizer(tok, "bpe")


def load_tokenizer(store) -> ByteTokenizer | HFTokenizer:
    """The tokenizer a store was prepared with (`store` is a TokenStore or its path)."""
    from regmix.corpus.store import TokenStore

    if not isinstance(store, TokenStore):
        store = TokenStore.open(store)
    info = store.meta["tokenizer"]
    if info["kind"] == "byte":
        return ByteTokenizer()
    tok = load_tokenizer_file(store.path / (info.get("file") or "tokenizer.json"), info["kind"])
    if tok.hash != info["hash"]:
        raise RegmixError(f"{store.path / 'tokenizer.json'}: hash differs from meta.json (the store was changed)")
    return tok


def tokenizer_info(tok) -> dict:
    """The meta.json entry for a tokenizer."""
    return {
        "kind": tok.kind,
        "file": None if tok.kind == "byte" else "tokenizer.json",
        "hash": tok.hash,
        "vocab_size": tok.vocab_size,
        "eod_id": tok.eod_id,
        **({} if tok.kind == "byte" else {"eod_token": tok.eod_token}),
    }


__all__ = ["ByteTokenizer", "HFTokenizer", "load_tokenizer", "load_tokenizer_file", "parse_spec",
           "tokenizer_info", "train_bpe"]
