import gzip
import json
import lzma

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from regmix.corpus.readers import ReadStats, decode, discover, file_format, iter_domain, read_documents
from regmix.errors import RegmixError


def _jsonl(path, records, opener=open):
    path.parent.mkdir(parents=True, exist_ok=True)
    with opener(path, "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def test_file_format():
    from pathlib import Path

    assert file_format(Path("a.jsonl")) == ("jsonl", None)
    assert file_format(Path("a.jsonl.xz")) == ("jsonl", "xz")
    assert file_format(Path("b.txt.gz")) == ("txt", "gz")
    assert file_format(Path("c.parquet")) == ("parquet", None)
    assert file_format(Path("README.md")) is None
    assert file_format(Path("x.gz")) is None


def test_domain_folders_txt_jsonl_parquet_compressed(tmp_path):
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "a.txt").write_text("First book.\n")
    with gzip.open(tmp_path / "books" / "b.txt.gz", "wt") as fh:
        fh.write("Second book.\n")
    _jsonl(tmp_path / "web" / "part-0.jsonl", [{"text": "w1"}, {"text": "w2", "url": "x"}])
    _jsonl(tmp_path / "web" / "part-1.jsonl.xz", [{"text": "w3"}], opener=lzma.open)
    _jsonl(tmp_path / "web" / "valid.jsonl", [{"text": "held out"}])
    (tmp_path / "code").mkdir()
    pq.write_table(pa.table({"text": ["def f(): pass", "x = 1"], "id": [1, 2]}), tmp_path / "code" / "c.parquet")
    (tmp_path / "web" / "notes.md").write_text("ignored")
    doms = {d.name: d for d in discover(tmp_path)}
    assert sorted(doms) == ["books", "code", "web"]
    assert [p.name for p in doms["web"].valid_files] == ["valid.jsonl"]
    stats = ReadStats()
    assert list(iter_domain(doms["books"].train_files, stats)) == ["First book.\n", "Second book.\n"]
    assert list(iter_domain(doms["web"].train_files, stats)) == ["w1", "w2", "w3"]
    assert list(iter_domain(doms["code"].train_files, stats)) == ["def f(): pass", "x = 1"]
    assert stats.skipped_records == 0 and stats.replaced_bytes == 0


def test_regmix_layout(tmp_path):
    _jsonl(tmp_path / "train" / "Pile-CC-0.jsonl", [{"text": "cc0"}])
    _jsonl(tmp_path / "train" / "Pile-CC-1.jsonl", [{"text": "cc1"}])
    _jsonl(tmp_path / "train" / "ArXiv-0.jsonl", [{"text": "ax"}])
    _jsonl(tmp_path / "valid" / "Pile-CC-0.jsonl", [{"text": "ccv"}])
    doms = {d.name: d for d in discover(tmp_path)}
    assert sorted(doms) == ["ArXiv", "Pile-CC"]
    assert [p.name for p in doms["Pile-CC"].train_files] == ["Pile-CC-0.jsonl", "Pile-CC-1.jsonl"]
    assert [p.name for p in doms["Pile-CC"].valid_files] == ["Pile-CC-0.jsonl"]
    assert doms["ArXiv"].valid_files == []


def test_text_field_configurable_and_skipped_records_counted(tmp_path):
    path = tmp_path / "d.jsonl"
    _jsonl(path, [{"content": "a"}, {"text": "no"}, "not json", "[1, 2]", {"content": 5}, {"content": "b"}])
    stats = ReadStats()
    assert list(read_documents(path, stats, text_field="content")) == ["a", "b"]
    assert stats.skipped_records == 4
    assert stats.examples[0] == f"{path}:2: no string field 'content'"


def test_non_utf8_replaced_and_counted(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"caf\xe9 \xff\xfe ok")
    stats = ReadStats()
    (text,) = read_documents(path, stats)
    assert text == "caf\ufffd \ufffd\ufffd ok"
    assert stats.replaced_bytes == 3
    assert decode("é".encode(), stats) == "é" and stats.replaced_bytes == 3


def test_long_txt_cut_at_blank_lines(tmp_path, monkeypatch):
    import regmix.corpus.readers as readers

    monkeypatch.setattr(readers, "TXT_DOC_BYTES", 20)
    path = tmp_path / "big.txt"
    path.write_text("para one is long enough\n\npara two also long enough\n\nthree\n")
    docs = list(read_documents(path, ReadStats()))
    assert len(docs) == 3 and "".join(docs) == path.read_text()


@pytest.mark.parametrize("name,content", [
    ("bad.jsonl.gz", b"this is not gzip"),
    ("bad.jsonl.xz", b"nor xz"),
    ("bad.parquet", b"PAR1 garbage"),
])
def test_corrupt_files_named(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RegmixError, match=rf"{name}: cannot read"):
        list(read_documents(path, ReadStats()))


def test_parquet_missing_column_named(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"body": ["x"]}), path)
    with pytest.raises(RegmixError, match=r"p.parquet: no column 'text' \(columns: body\)"):
        list(read_documents(path, ReadStats()))


def test_missing_and_empty_domain_folders(tmp_path):
    with pytest.raises(RegmixError, match="corpus folder not found"):
        discover(tmp_path / "nope")
    with pytest.raises(RegmixError, match="no domain folders"):
        discover(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegmixError, match="empty: domain folder holds no"):
        discover(tmp_path)


def test_domain_named_train_is_not_regmix_layout(tmp_path):
    _jsonl(tmp_path / "train" / "data.jsonl", [{"text": "a"}])
    _jsonl(tmp_path / "web" / "data.jsonl", [{"text": "b"}])
    assert [d.name for d in discover(tmp_path)] == ["train", "web"]
