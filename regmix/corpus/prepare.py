"""`prepare`: tokenize a corpus folder into a token store (see regmix.corpus.store for the layout).

Streaming with bounded memory: documents are read, tokenized and appended to the split files in
batches of about BATCH_BYTES of text. Each domain's `info.json` records a source hash (input file
contents + tokenizer + options); a re-run reuses every domain whose hash is unchanged, so an
interrupted run resumes. Documents go to the validation split by a hash of their bytes (the same
document always lands in the same split) unless the layout provides validation files.

`token_limits` ({domain: n}) shrink a domain's training split, to give a corpus the skewed shares real
ones have: its training documents are taken whole, in file order, while their tokens (end-of-document
ids included) stay within n; the first one that would pass n and every later one are left out. The
validation split is never limited. A domain's limit is part of its source hash, so a changed limit
re-tokenizes that domain alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from regmix.corpus.demo import resolve_corpus
from regmix.corpus.readers import STORE_MARKER, DomainSource, ReadStats, content_hash, discover, iter_domain
from regmix.corpus.store import DOMAIN_KEYS, FORMAT, TokenStore, dtype_for, token_file, write_meta
from regmix.corpus.tokenizer import (ByteTokenizer, load_tokenizer_file, parse_spec, tokenizer_info,
                                     train_bpe)
from regmix.errors import RegmixError
from regmix.files import atomic_write_text, clean_temp_files, locked

BATCH_BYTES = 4 << 20
HASH_VERSION = "regmix-prepare-1"


@dataclass
class _SplitWriter:
    """Appends token batches of one split to `<split>.bin.tmp`; renamed into place on close."""

    path: Path
    dtype: str
    tokens: int = 0
    bytes: int = 0
    documents: int = 0
    raw: list = field(default_factory=list)
    pending: int = 0

    def __post_init__(self):
        self.tmp = self.path.with_suffix(".bin.tmp")
        self.fh = open(self.tmp, "wb")

    def add(self, raw: bytes, text: str, tok) -> None:
        self.raw.append(raw if tok.kind == "byte" else text)
        self.pending += len(raw)
        self.bytes += len(raw)
        self.documents += 1
        if self.pending >= BATCH_BYTES:
            self.flush(tok)

    def flush(self, tok) -> None:
        if not self.raw:
            return
        ids = tok.encode_bytes(self.raw) if tok.kind == "byte" else tok.encode_docs(self.raw)
        # fh.write, not ndarray.tofile: on a full disk tofile raises an OSError without errno ENOSPC
        self.fh.write(np.ascontiguousarray(ids, dtype=self.dtype).data)
        self.tokens += int(ids.size)
        self.raw, self.pending = [], 0

    def close(self, tok) -> None:
        self.flush(tok)
        self.fh.close()
        os.replace(self.tmp, self.path)


def prepare(
    corpus: str | Path,
    out: str | Path,
    tokenizer: str = "byte",
    valid_fraction: float = 0.05,
    text_field: str = "text",
    seq_len: int = 512,
    bpe_sample_bytes: int = 10_000_000,
    progress: bool = True,
    log=None,
    token_limits: dict[str, int] | None = None,
) -> dict:
    """Tokenize every domain of `corpus` ('demo' = the embedded corpus) into the store `out`.

    Each domain needs at least seq_len + 1 training tokens (one training sequence). `token_limits`:
    at most this many training tokens of a domain (whole documents in file order). Returns meta.
    """
    log = log or sys.stderr
    if not 0.0 <= valid_fraction < 1.0:
        raise RegmixError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    corpus = resolve_corpus(corpus)
    out = Path(out)
    sources = discover(corpus)
    limits = check_token_limits(token_limits, [s.name for s in sources], corpus)
    if any(out.resolve() == (corpus / s.name).resolve() for s in sources):
        raise RegmixError(f"{out}: the store would overwrite the corpus domain folder of the same name")
    if out.is_dir() and not ((out / STORE_MARKER).exists() or (out / "meta.json").is_file()) \
            and any(p.name != ".lock" for p in out.iterdir()):
        raise RegmixError(f"{out}: folder holds files and is not a token store; prepare writes only into a new or "
                          "empty folder, or a store it made (give another --out)")
    out.mkdir(parents=True, exist_ok=True)
    (out / STORE_MARKER).touch()  # marks the folder as a store at once (discover skips it)
    with locked(out, "prepare"):
        clean_temp_files([out, *(out / s.name for s in sources)])
        clean_temp_files([out / s.name for s in sources], "*.bin.tmp")
        return _prepare(corpus, out, sources, tokenizer, valid_fraction, text_field, seq_len, bpe_sample_bytes,
                        progress, log, limits)


def check_token_limits(limits: dict | None, domains: list[str], where: str | Path = "token_limits") -> dict[str, int]:
    """{domain: n} with every domain known and every n a positive integer; a RegmixError names the entry."""
    if limits is None:
        return {}
    if not isinstance(limits, dict):
        raise RegmixError(f"{where}: token_limits: expected a mapping of domain to tokens, got {limits!r}")
    for name, n in limits.items():
        if name not in domains:
            raise RegmixError(f"{where}: token_limits.{name}: unknown domain (known: {', '.join(domains)})")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise RegmixError(f"{where}: token_limits.{name}: expected a positive number of tokens, got {n!r}")
    return dict(limits)


def _prepare(corpus, out, sources, tokenizer, valid_fraction, text_field, seq_len, bpe_sample_bytes, progress,
             log, limits) -> dict:
    data_hashes = {s.name: _data_hash(s, corpus) for s in sources}
    tok = _make_tokenizer(tokenizer, sources, data_hashes, out, text_field, bpe_sample_bytes, log)
    dtype = dtype_for(tok.vocab_size)
    options = {"version": HASH_VERSION, "tokenizer": tok.hash, "dtype": dtype,
               "valid_fraction": valid_fraction, "text_field": text_field}
    domains = {}
    started = time.perf_counter()
    for src in sources:
        limit = limits.get(src.name)
        opts = options if limit is None else {**options, "token_limit": limit}  # unlimited: the hash of before
        source_hash = hashlib.sha256(
            (json.dumps(opts, sort_keys=True) + data_hashes[src.name]).encode()).hexdigest()
        info = _reusable(out, src.name, source_hash, dtype)
        if info is None:
            t0 = time.perf_counter()
            info = _tokenize_domain(src, out, tok, dtype, valid_fraction, text_field, source_hash, progress, limit)
            rate = (info["train_bytes"] + info["valid_bytes"]) / max(time.perf_counter() - t0, 1e-9) / 1e6
            cut = "" if limit is None else \
                f", limited to {limit:,} ({info['dropped_documents']:,} documents left out)"
            print(f"prepare: {src.name}: {info['train_tokens']:,} train / {info['valid_tokens']:,} valid tokens "
                  f"({rate:.1f} MB/s{cut})", file=log)
        else:
            print(f"prepare: {src.name}: unchanged, reused", file=log)
        _check_domain(src, info, seq_len, valid_fraction, limit)
        domains[src.name] = info
    meta = {
        "format": FORMAT,
        "tokenizer": tokenizer_info(tok),
        "vocab_size": tok.vocab_size,
        "eod_id": tok.eod_id,
        "dtype": dtype,
        "domains": domains,
        "corpus": "demo" if str(corpus) == str(resolve_corpus("demo")) else str(corpus),
        "valid_fraction": valid_fraction,
        "text_field": text_field,
        "token_limits": limits,  # {domain: max training tokens}; {} when none
        "seq_len": seq_len,
        "byte_level_note": "train_bytes/valid_bytes are UTF-8 bytes of the text, for bits per byte",
        "seconds": round(time.perf_counter() - started, 3),
    }
    if tok.kind != "byte":
        meta["tokenizer"]["trained_on"] = getattr(tok, "trained_on", None)
    write_meta(out, meta)
    TokenStore.open(out)  # the store must read back
    return meta


_HASHES: dict = {}  # (root, domain, files' names, sizes and mtimes) -> content hash


def corpus_digest(corpus: str | Path) -> str:
    """sha256 over every domain's file names and contents: what a prepared store was made from."""
    root = resolve_corpus(corpus)
    h = hashlib.sha256()
    for src in discover(root):
        h.update(src.name.encode() + b"\0" + _data_hash(src, root).encode())
    return h.hexdigest()


def _data_hash(src: DomainSource, root: Path) -> str:
    """The content hash of a domain's files, cached in the process by their sizes and modification times
    (so the pipeline's stage keys and prepare read the corpus once, and a file rewritten in place is hashed again)."""
    stats = []
    for path in src.files:
        try:
            st = path.stat()
        except OSError as err:
            raise RegmixError(f"{path}: cannot read: {err.strerror or err}") from None
        stats.append((str(path), st.st_size, st.st_mtime_ns))
    key = (str(root), src.name, len(src.train_files), tuple(stats))
    if key not in _HASHES:
        h = hashlib.sha256(b"train\0")
        content_hash(src.train_files, root, h)
        h.update(b"valid\0")
        _HASHES[key] = content_hash(src.valid_files, root, h)
    return _HASHES[key]


def _make_tokenizer(spec, sources, data_hashes, out, text_field, sample_bytes, log):
    kind, arg = parse_spec(spec)
    if kind == "byte":
        stale = out / "tokenizer.json"
        if stale.exists():
            stale.unlink()
        return ByteTokenizer()
    if kind == "file":
        tok = load_tokenizer_file(arg)
        tok.save(out / "tokenizer.json")
        return tok
    trained_on = hashlib.sha256(json.dumps(
        {"vocab_size": arg, "sample_bytes": sample_bytes, "text_field": text_field,
         "data": [data_hashes[s.name] for s in sources]}).encode()).hexdigest()
    sidecar = out / "tokenizer.trained_on"
    if (out / "tokenizer.json").is_file() and sidecar.is_file() and sidecar.read_text().strip() == trained_on:
        tok = load_tokenizer_file(out / "tokenizer.json", "bpe")
        print("prepare: BPE tokenizer unchanged, reused", file=log)
    else:
        t0 = time.perf_counter()
        sample = _bpe_sample(sources, text_field, sample_bytes)
        tok = train_bpe(sample, arg)
        tok.save(out / "tokenizer.json")
        sidecar.write_text(trained_on + "\n")
        print(f"prepare: trained BPE ({tok.vocab_size} tokens) on a {sample.taken / 1e6:.1f} MB sample "
              f"in {time.perf_counter() - t0:.1f} s", file=log)
    tok.trained_on = trained_on
    return tok


class _bpe_sample:
    """Iterates up to sample_bytes of training documents, an equal share from each domain."""

    def __init__(self, sources: list[DomainSource], text_field: str, sample_bytes: int):
        self.sources, self.text_field, self.sample_bytes = sources, text_field, sample_bytes
        self.taken = 0

    def __iter__(self):
        share = self.sample_bytes // len(self.sources)
        for src in self.sources:
            taken = 0
            for text in iter_domain(src.train_files, ReadStats(), self.text_field):
                yield text
                taken += len(text)
                self.taken += len(text)
                if taken >= share:
                    break


def _reusable(out: Path, name: str, source_hash: str, dtype: str) -> dict | None:
    path = out / name / "info.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if info.get("source_hash") != source_hash:
        return None
    size = np.dtype(dtype).itemsize
    for split in ("train", "valid"):
        file = token_file(out, name, split)
        if not file.is_file() or file.stat().st_size != info.get(f"{split}_tokens", -1) * size:
            return None
    return info


def _doc_tokens(raw: bytes, text: str, tok) -> int:
    """Tokens of one document with its end-of-document id (what the writer will store for it)."""
    return len(raw) + 1 if tok.kind == "byte" else int(tok.encode_docs([text]).size)


def _tokenize_domain(src, out, tok, dtype, valid_fraction, text_field, source_hash, progress, limit=None) -> dict:

    folder = out / src.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "info.json").unlink(missing_ok=True)
    writers = {s: _SplitWriter(token_file(out, src.name, s), dtype) for s in ("train", "valid")}
    stats = ReadStats()
    threshold = int(valid_fraction * 2**32)
    taken, full, dropped_docs, dropped_bytes = 0, False, 0, 0  # the token limit's count (train split only)
    bar = tqdm(desc=f"prepare {src.name}", unit="B", unit_scale=True, disable=not progress or None,
               file=sys.stderr, leave=False)
    try:
        for split, files in (("train", src.train_files), ("valid", src.valid_files)):
            for text in iter_domain(files, stats, text_field):
                try:
                    raw = text.encode("utf-8")
                except UnicodeEncodeError:  # lone surrogates from JSON escapes
                    raw = text.encode("utf-8", "replace")
                    text = raw.decode("utf-8")
                    stats.replaced_bytes += 1
                if not src.valid_files:
                    split = "valid" if zlib.crc32(raw) < threshold else "train"
                if split == "train" and limit is not None:
                    if not full:
                        n = _doc_tokens(raw, text, tok)
                        full = taken + n > limit
                        taken += 0 if full else n
                    if full:  # this document and every later one: the limit keeps a prefix in file order
                        dropped_docs += 1
                        dropped_bytes += len(raw)
                        bar.update(len(raw))
                        continue
                writers[split].add(raw, text, tok)
                bar.update(len(raw))
        for w in writers.values():
            w.close(tok)
    finally:
        bar.close()
        for w in writers.values():
            if not w.fh.closed:
                w.fh.close()
                w.tmp.unlink(missing_ok=True)
    tr, va = writers["train"], writers["valid"]
    info = {"train_tokens": tr.tokens, "valid_tokens": va.tokens, "train_bytes": tr.bytes,
            "valid_bytes": va.bytes, "documents": tr.documents, "valid_documents": va.documents,
            "replaced_bytes": stats.replaced_bytes, "skipped_records": stats.skipped_records,
            "source_hash": source_hash}
    assert tuple(info) == DOMAIN_KEYS
    info["skipped_examples"] = stats.examples
    if limit is not None:
        info.update(token_limit=limit, dropped_documents=dropped_docs, dropped_bytes=dropped_bytes)
    atomic_write_text(folder / "info.json", json.dumps(info, indent=2) + "\n")
    return info


def _check_domain(src: DomainSource, info: dict, seq_len: int, valid_fraction: float, limit=None) -> None:
    where = src.train_files[0].parent
    if limit is not None and info["train_tokens"] < seq_len + 1:
        first = "no document fits" if info["documents"] == 0 else f"{info['train_tokens']} tokens fit"
        raise RegmixError(f"token_limits.{src.name}: a limit of {limit} training tokens keeps too little of "
                          f"'{src.name}' ({first}; one training sequence needs {seq_len + 1}): raise it")
    if info["documents"] == 0:
        extra = f" ({info['skipped_records']} records skipped, e.g. {info['skipped_examples'][0]})" \
            if info["skipped_records"] else ""
        raise RegmixError(f"{where}: domain '{src.name}' has no training documents{extra}")
    if info["train_tokens"] < seq_len + 1:
        raise RegmixError(
            f"{where}: domain '{src.name}' has {info['train_tokens']} training tokens, fewer than one "
            f"training sequence ({seq_len + 1} tokens for seq_len {seq_len})")
    if info["skipped_records"]:
        warnings.warn(f"{src.name}: skipped {info['skipped_records']} records without a usable text field "
                      f"(e.g. {info['skipped_examples'][0]})", stacklevel=3)
    if info["replaced_bytes"]:
        warnings.warn(f"{src.name}: {info['replaced_bytes']} bytes were not UTF-8 and became U+FFFD", stacklevel=3)
    if info["valid_documents"] == 0 and (src.valid_files or valid_fraction > 0):
        warnings.warn(f"{src.name}: validation split is empty ({info['documents']} documents); "
                      f"add documents or raise valid_fraction", stacklevel=3)
    elif 0 < info["valid_tokens"] < seq_len + 1:
        warnings.warn(f"{src.name}: validation split has {info['valid_tokens']} tokens, fewer than one "
                      f"sequence of {seq_len + 1}", stacklevel=3)


def ensure_store(spec: str | Path, out: str | Path, seq_len: int, log=None) -> Path:
    """A token store for `spec`: the folder itself when it holds one (meta.json); else the corpus `spec`
    ('demo', or a folder of domains) prepared into `out` (byte-level), once: a later call reuses it."""
    spec, out = Path(spec), Path(out)
    if (spec / "meta.json").is_file():
        return spec
    if (out / "meta.json").is_file():
        return out
    if str(spec) != "demo" and not spec.is_dir():
        raise RegmixError(f"store {spec}: neither a token store (no meta.json there) nor a corpus folder; "
                          f"make one with `regmix prepare --corpus CORPUS --out {spec}`, or write `store: demo`")
    prepare(str(spec), out, seq_len=seq_len, progress=False, log=log)
    return out
