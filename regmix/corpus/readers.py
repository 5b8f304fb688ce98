"""Find the domains of a corpus folder and stream their documents.

Layouts:
- **domain folders**: `CORPUS/<domain>/**/*.{txt,jsonl,parquet}`, optionally `.gz`/`.xz`/`.bz2`
  compressed. Files whose name starts with `valid` (or that sit under a `valid/` folder) form the
  domain's validation split; without any, prepare splits documents by hash.
- **RegMix**: `CORPUS/train/<domain>-<n>.jsonl` and `CORPUS/valid/<domain>-<n>.jsonl`.

Documents: a .jsonl line is one document (field `text`, configurable); a .parquet row likewise;
a .txt file is one document, except that a file longer than 1 MiB is cut at the first blank line
after each MiB (bounded memory). Bytes that are not UTF-8 become U+FFFD and are counted; jsonl lines
that are not JSON objects with a string text field are skipped and counted.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import json
import lzma
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from regmix.errors import RegmixError

FORMATS = ("txt", "jsonl", "parquet")
COMPRESSIONS = {"gz": gzip.open, "xz": lzma.open, "bz2": bz2.open}
TXT_DOC_BYTES = 1 << 20
STORE_MARKER = ".regmix-store"  # prepare writes it into a store folder: never read as a domain
_REGMIX_NAME = re.compile(r"^(?P<domain>.+?)(?:-(?P<n>\d+))?\.jsonl(?:\.(?:gz|xz|bz2))?$")
_CORRUPT = (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError)
# names a store folder holds itself: a domain of the same name would overwrite them
RESERVED_NAMES = ("meta.json", "tokenizer.json", "tokenizer.trained_on", STORE_MARKER, ".lock")
MAX_NAME = 200


def check_domain_name(name: object, where: str | Path) -> str:
    """A domain name is a plain name: a store writes `<store>/<name>/`, so no separators, no '.' or '..',
    no leading dot, no control characters, and none of the store's own file names."""
    why = None
    if not isinstance(name, str) or not name:
        why = "is empty" if name == "" else "is not a string"
    elif "/" in name or "\\" in name:
        why = "holds a path separator"
    elif name.startswith("."):
        why = "starts with '.' ('.', '..' and hidden names are not domains)"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        why = "holds a control character"
    elif name.lower() in RESERVED_NAMES:
        why = "is the name of one of the token store's own files"
    elif len(name) > MAX_NAME:
        why = f"is longer than {MAX_NAME} characters"
    if why:
        shown = repr(name) if not isinstance(name, str) or len(name) <= 60 else repr(name[:57] + "...")
        raise RegmixError(f"{where}: domain name {shown} {why}; a domain needs a plain name")
    return name


@dataclass
class DomainSource:
    """One domain's input files; `valid_files` empty means split the documents by hash."""

    name: str
    train_files: list[Path]
    valid_files: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return self.train_files + self.valid_files


@dataclass
class ReadStats:
    """Counts of repaired and skipped input, with a few examples for the report."""

    replaced_bytes: int = 0
    skipped_records: int = 0
    examples: list[str] = field(default_factory=list)

    def skip(self, where: str, why: str) -> None:
        self.skipped_records += 1
        if len(self.examples) < 3:
            self.examples.append(f"{where}: {why}")


def file_format(path: Path) -> tuple[str, str | None] | None:
    """('jsonl', 'gz') for data.jsonl.gz; None for files that are not corpus input."""
    parts = path.name.lower().split(".")
    comp = parts[-1] if len(parts) > 2 and parts[-1] in COMPRESSIONS else None
    ext = parts[-2] if comp else parts[-1]
    if len(parts) < 2 or ext not in FORMATS or (comp and ext == "parquet"):
        return None
    return ext, comp


def _is_valid_file(rel: Path) -> bool:
    return rel.name.lower().startswith(("valid", "validation")) or any(
        p.lower() in ("valid", "validation") for p in rel.parts[:-1]
    )


def discover(corpus: str | Path) -> list[DomainSource]:
    """Domains of a corpus folder, sorted by name; missing or empty folders are RegmixErrors.

    Sub-folders holding a token store (meta.json or STORE_MARKER) are not domains, so STORE may sit
    inside CORPUS.
    """
    corpus = Path(corpus)
    if not corpus.is_dir():
        raise RegmixError(f"{corpus}: corpus folder not found")
    if _is_regmix_layout(corpus):
        return _discover_regmix(corpus)
    domains = []
    subs = [p for p in corpus.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for sub in sorted(p for p in subs if not ((p / "meta.json").is_file() or (p / STORE_MARKER).exists())):
        files = sorted(p for p in sub.rglob("*") if p.is_file() and file_format(p))
        if not files:
            raise RegmixError(
                f"{sub}: domain folder holds no .txt, .jsonl or .parquet files (optionally .gz/.xz/.bz2)"
            )
        valid = [p for p in files if _is_valid_file(p.relative_to(sub))]
        train = [p for p in files if p not in valid]
        if not train:
            raise RegmixError(f"{sub}: domain has validation files but no training files")
        check_domain_name(sub.name, sub)
        domains.append(DomainSource(sub.name, train, valid))
    if not domains:
        raise RegmixError(f"{corpus}: no domain folders (expected CORPUS/<domain>/*.jsonl|txt|parquet "
                          f"or CORPUS/train/<domain>-<n>.jsonl)")
    return domains


def _is_regmix_layout(corpus: Path) -> bool:
    """train/ holding <domain>-<n>.jsonl files, or train/ and valid/ both holding .jsonl files."""
    train = corpus / "train"
    if not train.is_dir():
        return False
    names = [m for p in train.iterdir() if p.is_file() and (m := _REGMIX_NAME.match(p.name))]
    return any(m["n"] is not None for m in names) or (bool(names) and (corpus / "valid").is_dir())


def _discover_regmix(corpus: Path) -> list[DomainSource]:
    found: dict[str, DomainSource] = {}
    for split in ("train", "valid"):
        folder = corpus / split
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            m = _REGMIX_NAME.match(path.name)
            if not m or not path.is_file():
                continue
            check_domain_name(m["domain"], path)
            src = found.setdefault(m["domain"], DomainSource(m["domain"], [], []))
            (src.train_files if split == "train" else src.valid_files).append(path)
    for name, src in found.items():
        if not src.train_files:
            raise RegmixError(
                f"{corpus / 'valid'}: domain '{name}' has validation files but none in {corpus / 'train'}")
    return [found[k] for k in sorted(found)]


# ------------------------------------------------------------------ decoding with counted replacement

_counter = [0]


def _count_replace(err: UnicodeDecodeError):
    _counter[0] += err.end - err.start
    return "\ufffd", err.end


codecs.register_error("regmix_count", _count_replace)


def decode(data: bytes, stats: ReadStats) -> str:
    """UTF-8 decode; invalid bytes become U+FFFD and are added to stats.replaced_bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        _counter[0] = 0
        text = data.decode("utf-8", "regmix_count")
        stats.replaced_bytes += _counter[0]
        return text


# ------------------------------------------------------------------ documents


def _open_binary(path: Path, comp: str | None):
    return COMPRESSIONS[comp](path, "rb") if comp else open(path, "rb")


def read_documents(path: Path, stats: ReadStats, text_field: str = "text") -> Iterator[str]:
    """Documents of one file; an unreadable or corrupt file is a RegmixError naming it."""
    fmt = file_format(path)
    if fmt is None:
        raise RegmixError(f"{path}: not a .txt, .jsonl or .parquet file")
    ext, comp = fmt
    try:
        if ext == "parquet":
            yield from _read_parquet(path, stats, text_field)
        elif ext == "jsonl":
            yield from _read_jsonl(path, comp, stats, text_field)
        else:
            yield from _read_txt(path, comp, stats)
    except RegmixError:
        raise
    except _CORRUPT as err:
        raise RegmixError(f"{path}: cannot read (unreadable or corrupt): {err}") from None


def _read_jsonl(path: Path, comp: str | None, stats: ReadStats, text_field: str) -> Iterator[str]:
    with _open_binary(path, comp) as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            line = decode(raw, stats)
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                stats.skip(f"{path}:{lineno}", "not valid JSON")
                continue
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                why = f"no string field '{text_field}'" if isinstance(record, dict) else "not a JSON object"
                stats.skip(f"{path}:{lineno}", why)
                continue
            if text:
                yield text


def _read_txt(path: Path, comp: str | None, stats: ReadStats) -> Iterator[str]:
    with _open_binary(path, comp) as fh:
        buf: list[bytes] = []
        size = 0
        for raw in fh:
            buf.append(raw)
            size += len(raw)
            if size >= TXT_DOC_BYTES and not raw.strip():
                yield decode(b"".join(buf), stats)
                buf, size = [], 0
        if buf:
            text = decode(b"".join(buf), stats)
            if text.strip():
                yield text


def _read_parquet(path: Path, stats: ReadStats, text_field: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise RegmixError(f"{path}: cannot read (unreadable or corrupt parquet): {err}") from None
    if text_field not in pf.schema_arrow.names:
        columns = ", ".join(pf.schema_arrow.names)
        raise RegmixError(f"{path}: no column '{text_field}' (columns: {columns}); see --text-field")
    try:
        for batch in pf.iter_batches(columns=[text_field], batch_size=2048):
            col = batch.column(0)
            if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
                values = [None if v is None else decode(v, stats) for v in col.to_pylist()]
            elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                values = col.to_pylist()
            else:
                raise RegmixError(f"{path}: column '{text_field}' has type {col.type}, expected string")
            for text in values:
                if text is None:
                    stats.skip(f"{path}", f"null '{text_field}'")
                elif text:
                    yield text
    except pa.ArrowException as err:
        raise RegmixError(f"{path}: cannot read (unreadable or corrupt parquet): {err}") from None


def iter_domain(files: list[Path], stats: ReadStats, text_field: str = "text") -> Iterator[str]:
    """All documents of a list of files, in order."""
    for path in files:
        yield from read_documents(path, stats, text_field)


def content_hash(files: list[Path], root: Path | None = None, h=None) -> str:
    """sha256 over the files' relative names and contents (what decides whether to re-tokenize)."""

    h = h or hashlib.sha256()
    for path in files:
        name = path.relative_to(root).as_posix() if root else path.name
        h.update(name.encode() + b"\0")
        try:
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        except OSError as err:
            raise RegmixError(f"{path}: cannot read: {err.strerror or err}") from None
        h.update(b"\0")
    return h.hexdigest()
