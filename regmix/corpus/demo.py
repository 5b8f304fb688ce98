"""Where the embedded demo corpus lives (regmix/data/corpus; see its SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

from regmix.errors import RegmixError


def demo_corpus_path() -> Path:
    """Folder of the embedded corpus: <domain>/train.jsonl.xz and valid.jsonl.xz per domain."""
    path = Path(__file__).resolve().parent.parent / "data" / "corpus"
    if not path.is_dir():
        raise RegmixError(f"{path}: embedded demo corpus missing from this installation")
    return path


def resolve_corpus(corpus: str | Path) -> Path:
    """'demo' means the embedded corpus; anything else is a folder."""
    return demo_corpus_path() if str(corpus) == "demo" else Path(corpus)
