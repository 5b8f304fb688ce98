"""The token store: one flat token file per domain and split, described by `meta.json`.

Layout (format 1)::

    STORE/meta.json
    STORE/<domain>/train.bin   flat tokens of meta["dtype"], each document followed by eod_id
    STORE/<domain>/valid.bin
    STORE/tokenizer.json       when tokenizer kind != "byte"

Byte-level stores: ids 0..255 are the UTF-8 bytes, eod_id = 256, vocab_size = 257, dtype uint16.
`train_bytes` / `valid_bytes` count the UTF-8 bytes of the text (for bits-per-byte).
This module is numpy only: the proxies package reads stores through it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from regmix.corpus.readers import check_domain_name
from regmix.errors import RegmixError
from regmix.files import atomic_write_text

FORMAT = 1
SPLITS = ("train", "valid")
DTYPES = ("uint8", "uint16", "uint32")
BYTE_TOKENIZER = {"kind": "byte", "file": None, "hash": "byte"}
DOMAIN_KEYS = ("train_tokens", "valid_tokens", "train_bytes", "valid_bytes", "documents",
               "valid_documents", "replaced_bytes", "skipped_records", "source_hash")


def dtype_for(vocab_size: int) -> str:
    """Smallest unsigned dtype holding ids 0..vocab_size-1."""
    if vocab_size <= 1 << 8:
        return "uint8"
    if vocab_size <= 1 << 16:
        return "uint16"
    return "uint32"


def token_file(path: str | Path, domain: str, split: str) -> Path:
    return Path(path) / domain / f"{split}.bin"


class TokenStore:
    """Read side of a prepared store: token memmaps per domain and split, plus meta."""

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.meta = meta
        self.domains: list[str] = list(meta["domains"])
        self.vocab_size: int = int(meta["vocab_size"])
        self.eod_id: int = int(meta["eod_id"])
        self.dtype = np.dtype(meta["dtype"])
        self.tokenizer_hash: str = str(meta["tokenizer"]["hash"])

    @classmethod
    def open(cls, path: str | Path) -> "TokenStore":
        """Open STORE; a missing store, bad meta.json or missing token file is a RegmixError."""
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise RegmixError(f"{meta_path}: no token store here (run `regmix prepare` first)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RegmixError(f"{meta_path}: cannot read: {err}") from None
        _check_meta(meta, meta_path)
        for domain in meta["domains"]:
            for split in SPLITS:
                if not token_file(path, domain, split).is_file():
                    raise RegmixError(f"{token_file(path, domain, split)}: token file missing")
        return cls(path, meta)

    def tokens(self, domain: str, split: str = "train") -> np.ndarray:
        """Read-only memmap of one domain's split (an empty array when the split is empty)."""
        if domain not in self.meta["domains"]:
            raise RegmixError(f"{self.path}: unknown domain '{domain}' (known: {', '.join(self.domains)})")
        if split not in SPLITS:
            raise RegmixError(f"{self.path}: unknown split '{split}' (known: {', '.join(SPLITS)})")
        file = token_file(self.path, domain, split)
        size = file.stat().st_size
        if size % self.dtype.itemsize:
            raise RegmixError(f"{file}: size {size} is not a multiple of {self.dtype.itemsize} ({self.dtype})")
        if size == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(file, dtype=self.dtype, mode="r")

    def natural_weights(self) -> dict[str, float]:
        """Each domain's share of the training tokens (the natural mixture)."""
        counts = {d: float(self.meta["domains"][d]["train_tokens"]) for d in self.domains}
        total = sum(counts.values())
        if total <= 0:
            raise RegmixError(f"{self.path}: store holds no training tokens")
        return {d: c / total for d, c in counts.items()}

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r}, domains={self.domains}, vocab_size={self.vocab_size})"


def _check_meta(meta: object, where: Path) -> None:
    if not isinstance(meta, dict):
        raise RegmixError(f"{where}: expected a JSON object")
    for key in ("format", "tokenizer", "vocab_size", "eod_id", "dtype", "domains"):
        if key not in meta:
            raise RegmixError(f"{where}: missing key '{key}'")
    if meta["format"] != FORMAT:
        raise RegmixError(f"{where}: format {meta['format']!r} not supported (expected {FORMAT})")
    if meta["dtype"] not in DTYPES:
        raise RegmixError(f"{where}: dtype: expected one of {', '.join(DTYPES)}, got {meta['dtype']!r}")
    tok = meta["tokenizer"]
    if not isinstance(tok, dict) or "kind" not in tok or "hash" not in tok:
        raise RegmixError(f"{where}: tokenizer: expected an object with 'kind' and 'hash'")
    if not isinstance(meta["domains"], dict) or not meta["domains"]:
        raise RegmixError(f"{where}: domains: expected a non-empty object")
    vocab, eod = _count(meta["vocab_size"], where, "vocab_size"), _count(meta["eod_id"], where, "eod_id")
    if not 0 <= eod < vocab:
        raise RegmixError(f"{where}: eod_id {eod} outside vocabulary of {vocab}")
    if vocab > np.iinfo(meta["dtype"]).max + 1:
        raise RegmixError(f"{where}: vocab_size {vocab} does not fit dtype {meta['dtype']}")
    for name, info in meta["domains"].items():
        check_domain_name(name, f"{where}: domains")
        for key in ("train_tokens", "valid_tokens"):
            if not isinstance(info, dict) or key not in info:
                raise RegmixError(f"{where}: domains.{name}: missing key '{key}'")
        for key in DOMAIN_KEYS[:-1]:
            if key in info:
                _count(info[key], where, f"domains.{name}.{key}")


def _count(value: object, where: Path, field: str) -> int:
    """A count in meta.json: a non-negative integer (JSON has no other kind a count can be)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise RegmixError(f"{where}: {field}: expected a non-negative integer, got {shown}")
    return value


def write_meta(path: str | Path, meta: dict) -> None:
    """Write meta.json atomically (written last, so a store with meta.json is complete)."""
    atomic_write_text(Path(path) / "meta.json", json.dumps(meta, indent=2, sort_keys=False) + "\n")


def write_store(
    path: str | Path,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    vocab_size: int,
    eod_id: int,
    tokenizer: dict | None = None,
    extra_domain_meta: dict | None = None,
) -> TokenStore:
    """Write a store from in-memory (train, valid) token arrays: for tests and synthetic data.

    Byte counts default to the number of non-eod tokens (exact for byte-level stores); documents
    are counted by eod tokens. `extra_domain_meta[domain]` overrides or adds per-domain fields.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = dict(tokenizer or BYTE_TOKENIZER)
    dtype = dtype_for(vocab_size)
    domains = {}
    for name, (train, valid) in arrays.items():
        (path / name).mkdir(exist_ok=True)
        info = {}
        for split, arr in zip(SPLITS, (train, valid)):
            arr = np.asarray(arr)
            if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
                raise RegmixError(f"{name}/{split}: token ids outside 0..{vocab_size - 1}")
            arr.astype(dtype).tofile(token_file(path, name, split))
            eods = int(np.count_nonzero(arr == eod_id))
            info[f"{split}_tokens"] = int(arr.size)
            info[f"{split}_bytes"] = int(arr.size - eods)
            info["documents" if split == "train" else "valid_documents"] = eods
        info.update(replaced_bytes=0, skipped_records=0, source_hash="synthetic")
        info = {k: info[k] for k in DOMAIN_KEYS}
        info.update((extra_domain_meta or {}).get(name, {}))
        domains[name] = info
    meta = {"format": FORMAT, "tokenizer": tokenizer, "vocab_size": int(vocab_size),
            "eod_id": int(eod_id), "dtype": dtype, "domains": domains}
    write_meta(path, meta)
    return TokenStore.open(path)
