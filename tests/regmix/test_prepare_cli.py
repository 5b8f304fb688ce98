import gzip
import json
import lzma

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import regmix.corpus.prepare as prep
from regmix.cli import main
from regmix.corpus.demo import demo_corpus_path
from regmix.corpus.prepare import prepare
from regmix.corpus.readers import ReadStats, discover, iter_domain
from regmix.corpus.store import TokenStore
from regmix.corpus.tokenizer import ByteTokenizer, load_tokenizer, train_bpe

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def _docs(seed: int, n: int, words: int = 60) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, words)) + f" #{seed}-{i}\n" for i in range(n)]


def _write_jsonl(path, docs, field="text"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({field: d}) + "\n" for d in docs), encoding="utf-8")


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    _write_jsonl(root / "web" / "a.jsonl", _docs(1, 40))
    for i, d in enumerate(_docs(2, 10)):
        (root / "books" / f"{i}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "books" / f"{i}.txt").write_text(d * 3)
    (root / "code").mkdir()
    pq.write_table(pa.table({"text": _docs(3, 30)}), root / "code" / "c.parquet")
    return root


def _split_docs(tokens: np.ndarray, eod: int) -> list[np.ndarray]:
    ends = np.flatnonzero(tokens == eod)
    return np.split(tokens, ends + 1)[:-1]


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_prepare_byte_store_contents(corpus, tmp_path, capsys):
    out = tmp_path / "store"
    code, stdout, _ = _run(["prepare", "--corpus", str(corpus), "--out", str(out), "--seq-len", "64",
                            "--valid-fraction", "0.2"], capsys)
    assert code == 0 and "web" in stdout
    store = TokenStore.open(out)
    assert store.domains == ["books", "code", "web"]
    assert (store.vocab_size, store.eod_id, store.meta["dtype"]) == (257, 256, "uint16")
    assert store.meta["tokenizer"]["kind"] == "byte" and store.tokenizer_hash == "byte"
    assert not (out / "tokenizer.json").exists()
    tok = load_tokenizer(store)
    for src in discover(corpus):
        originals = list(iter_domain(src.train_files, ReadStats()))
        info = store.meta["domains"][src.name]
        got = [tok.decode(d) for s in ("train", "valid") for d in _split_docs(store.tokens(src.name, s), 256)]
        # split by document: every document whole, in exactly one split
        assert sorted(got) == sorted(originals)
        assert info["documents"] + info["valid_documents"] == len(originals)
        assert info["train_bytes"] + info["valid_bytes"] == sum(len(t.encode()) for t in originals)
        assert info["train_tokens"] == info["train_bytes"] + info["documents"]
    assert sum(store.natural_weights().values()) == pytest.approx(1.0)
    assert store.meta["domains"]["web"]["valid_documents"] > 0


def test_valid_split_is_by_document_hash(corpus, tmp_path):
    a = prepare(corpus, tmp_path / "a", valid_fraction=0.3, seq_len=16, progress=False)
    b = prepare(corpus, tmp_path / "b", valid_fraction=0.3, seq_len=16, progress=False)
    assert a["domains"] == b["domains"]
    for dom in a["domains"]:
        for split in ("train", "valid"):
            assert (tmp_path / "a" / dom / f"{split}.bin").read_bytes() == (tmp_path / "b" / dom / f"{split}.bin").read_bytes()


def test_small_batches_give_identical_store(corpus, tmp_path, monkeypatch):
    prepare(corpus, tmp_path / "big", seq_len=16, progress=False)
    monkeypatch.setattr(prep, "BATCH_BYTES", 100)  # many flushes: streaming path
    prepare(corpus, tmp_path / "small", seq_len=16, progress=False)
    for dom in ("books", "code", "web"):
        assert (tmp_path / "big" / dom / "train.bin").read_bytes() == (tmp_path / "small" / dom / "train.bin").read_bytes()


def test_regmix_layout_uses_valid_folder(tmp_path, capsys):
    root = tmp_path / "rm"
    _write_jsonl(root / "train" / "Pile-CC-0.jsonl", _docs(1, 10))
    _write_jsonl(root / "train" / "Pile-CC-1.jsonl", _docs(2, 10))
    _write_jsonl(root / "train" / "ArXiv-0.jsonl", _docs(3, 10))
    _write_jsonl(root / "valid" / "Pile-CC-0.jsonl", _docs(4, 3))
    _write_jsonl(root / "valid" / "ArXiv-0.jsonl", _docs(5, 2))
    code, _, err = _run(["prepare", "--corpus", str(root), "--out", str(tmp_path / "s"), "--seq-len", "32"], capsys)
    assert code == 0, err
    meta = TokenStore.open(tmp_path / "s").meta
    assert meta["domains"]["Pile-CC"]["documents"] == 20 and meta["domains"]["Pile-CC"]["valid_documents"] == 3
    assert meta["domains"]["ArXiv"]["valid_documents"] == 2


def test_rerun_reuses_unchanged_domains(corpus, tmp_path):
    out = tmp_path / "s"
    prepare(corpus, out, seq_len=16, progress=False)
    mtimes = {d: (out / d / "train.bin").stat().st_mtime_ns for d in ("books", "code", "web")}
    import io

    log = io.StringIO()
    prepare(corpus, out, seq_len=16, progress=False, log=log)
    assert log.getvalue().count("unchanged, reused") == 3
    _write_jsonl(corpus / "web" / "a.jsonl", _docs(9, 40))  # content changes
    log = io.StringIO()
    meta = prepare(corpus, out, seq_len=16, progress=False, log=log)
    assert "web: unchanged" not in log.getvalue() and "books: unchanged, reused" in log.getvalue()
    assert (out / "books" / "train.bin").stat().st_mtime_ns == mtimes["books"]
    hashes = {d: i["source_hash"] for d, i in meta["domains"].items()}
    meta2 = prepare(corpus, out, seq_len=16, valid_fraction=0.5, progress=False)  # options change: all redone
    assert all(meta2["domains"][d]["source_hash"] != hashes[d] for d in hashes)


def test_bpe_train_store_and_reuse_tokenizer_file(corpus, tmp_path, capsys):
    out = tmp_path / "bpe"
    code, _, err = _run(["prepare", "--corpus", str(corpus), "--out", str(out), "--tokenizer", "bpe:300",
                         "--seq-len", "16", "--no-progress"], capsys)
    assert code == 0, err
    store = TokenStore.open(out)
    assert store.meta["tokenizer"]["kind"] == "bpe" and store.vocab_size == 300
    assert (out / "tokenizer.json").is_file() and store.meta["dtype"] == "uint16"
    tok = load_tokenizer(store)
    web = list(iter_domain(discover(corpus)[2].train_files, ReadStats()))
    got = sorted(tok.decode(d) for s in ("train", "valid") for d in _split_docs(store.tokens("web", s), store.eod_id))
    assert got == sorted(web)
    assert "BPE tokenizer unchanged, reused" in _run(
        ["prepare", "--corpus", str(corpus), "--out", str(out), "--tokenizer", "bpe:300", "--seq-len", "16"], capsys)[2]
    # a given tokenizer.json gives the same tokens
    code, _, err = _run(["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "file"),
                         "--tokenizer", str(out / "tokenizer.json"), "--seq-len", "16"], capsys)
    assert code == 0, err
    other = TokenStore.open(tmp_path / "file")
    assert other.meta["tokenizer"]["kind"] == "file" and other.tokenizer_hash == store.tokenizer_hash
    assert np.array_equal(other.tokens("web"), store.tokens("web"))


def test_demo_corpus_shape():
    doms = discover(demo_corpus_path())
    assert len(doms) >= 8
    for d in doms:
        assert [p.name for p in d.train_files] == ["train.jsonl.xz"] and [p.name for p in d.valid_files] == ["valid.jsonl.xz"]
    assert (demo_corpus_path() / "SOURCES.md").is_file()
    total = sum(p.stat().st_size for p in demo_corpus_path().rglob("*"))
    assert total <= 10 * 2**20


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "store"
    assert main(["prepare", "--corpus", "demo", "--out", str(out), "--no-progress"]) == 0
    return TokenStore.open(out)


def test_demo_byte_store_roundtrips_every_domain(demo_store):
    tok = load_tokenizer(demo_store)
    for src in discover(demo_corpus_path()):
        info = demo_store.meta["domains"][src.name]
        assert info["train_bytes"] >= 2**20 and info["valid_bytes"] > 0
        for split, files in (("train", src.train_files), ("valid", src.valid_files)):
            docs = list(iter_domain(files, ReadStats()))
            stored = _split_docs(demo_store.tokens(src.name, split), demo_store.eod_id)
            assert len(stored) == len(docs)
            assert all(tok.decode(ids) == doc for ids, doc in zip(stored, docs)), src.name


def test_demo_bpe_roundtrips_every_domain():
    sources = discover(demo_corpus_path())
    per_domain = {s.name: list(iter_domain(s.valid_files, ReadStats()))[:8] for s in sources}
    sample = [d for docs in per_domain.values() for d in docs]
    tok = train_bpe(sample, 400)
    for name, docs in per_domain.items():
        ids = tok.encode_docs(docs)
        assert ids.max() < tok.vocab_size
        assert [tok.decode(d) for d in _split_docs(ids, tok.eod_id)] == docs, name
        assert ByteTokenizer().decode(ByteTokenizer().encode_docs(docs)) == "".join(docs)


# ------------------------------------------------------------------ bad input: one line, exit code 2


def _expect_error(capsys, argv, *fragments):
    code, _, err = _run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("regmix: error: ")
    for f in fragments:
        assert f in lines[-1], lines[-1]
    return lines[-1]


def test_error_missing_corpus(tmp_path, capsys):
    _expect_error(capsys, ["prepare", "--corpus", str(tmp_path / "none"), "--out", str(tmp_path / "s")],
                  "none: corpus folder not found")


def test_error_empty_domain_folder(corpus, tmp_path, capsys):
    (corpus / "empty").mkdir()
    _expect_error(capsys, ["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s")],
                  "empty: domain folder holds no")


def test_error_domain_shorter_than_one_sequence(corpus, tmp_path, capsys):
    (corpus / "tiny").mkdir()
    (corpus / "tiny" / "t.txt").write_text("too short")
    _expect_error(capsys, ["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--seq-len", "64"],
                  "domain 'tiny' has 10 training tokens, fewer than one training sequence (65 tokens")


def test_error_corrupt_file_is_named(corpus, tmp_path, capsys):
    (corpus / "web" / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    _expect_error(capsys, ["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--seq-len", "16"],
                  "broken.jsonl.gz: cannot read")
    (corpus / "web" / "broken.jsonl.gz").unlink()
    (corpus / "code" / "bad.parquet").write_bytes(b"PAR1 nonsense PAR1")
    _expect_error(capsys, ["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--seq-len", "16"],
                  "bad.parquet: cannot read")


def test_error_unreadable_file_is_named(corpus, tmp_path, capsys, monkeypatch):
    import builtins

    import regmix.corpus.readers as readers

    locked = corpus / "web" / "locked.jsonl"
    locked.write_text('{"text": "x"}\n')

    def guarded_open(path, *args, **kwargs):  # root reads any file: simulate a permission error
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(readers, "open", guarded_open, raising=False)
    _expect_error(capsys, ["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s")],
                  "locked.jsonl: cannot read: Permission denied")


def test_non_utf8_counted_in_meta(corpus, tmp_path, capsys):
    (corpus / "books" / "latin1.txt").write_bytes("caf\u00e9 na\u00efve ".encode("latin-1") * 20)
    code, _, err = _run(["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--seq-len", "16"], capsys)
    assert code == 0
    assert "regmix: warning: books: 40 bytes were not UTF-8" in err
    assert TokenStore.open(tmp_path / "s").meta["domains"]["books"]["replaced_bytes"] == 40


def test_jsonl_without_text_field_counted(corpus, tmp_path, capsys):
    with open(corpus / "web" / "a.jsonl", "a") as fh:
        fh.write('{"content": "x"}\n{"text": null}\nnot json\n')
    code, _, err = _run(["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--seq-len", "16"], capsys)
    assert code == 0
    assert "regmix: warning: web: skipped 3 records without a usable text field" in err
    info = TokenStore.open(tmp_path / "s").meta["domains"]["web"]
    assert info["skipped_records"] == 3 and info["documents"] + info["valid_documents"] == 40


def test_text_field_flag(tmp_path, capsys):
    _write_jsonl(tmp_path / "c" / "d" / "x.jsonl", _docs(1, 5), field="content")
    _expect_error(capsys, ["prepare", "--corpus", str(tmp_path / "c"), "--out", str(tmp_path / "s")],
                  "domain 'd' has no training documents (5 records skipped")
    code, _, err = _run(["prepare", "--corpus", str(tmp_path / "c"), "--out", str(tmp_path / "s"),
                         "--text-field", "content", "--seq-len", "16"], capsys)
    assert code == 0, err


def test_error_bad_tokenizer_file(corpus, tmp_path, capsys):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    _expect_error(capsys, ["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--tokenizer", str(bad)],
                  "tokenizer.json: cannot load tokenizer")
    _expect_error(capsys, ["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s"),
                           "--tokenizer", str(tmp_path / "nope.json")], "nope.json: tokenizer file not found")
    _expect_error(capsys, ["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--tokenizer", "bpe:x"],
                  "expected bpe:VOCAB_SIZE")


def test_gz_and_xz_inputs(tmp_path):
    root = tmp_path / "c"
    (root / "d").mkdir(parents=True)
    with gzip.open(root / "d" / "a.jsonl.gz", "wt") as fh:
        fh.write(json.dumps({"text": "x" * 50}) + "\n")
    with lzma.open(root / "d" / "b.txt.xz", "wt") as fh:
        fh.write("y" * 50)
    meta = prepare(root, tmp_path / "s", seq_len=16, valid_fraction=0.0, progress=False)
    assert meta["domains"]["d"]["train_bytes"] == 100 and meta["domains"]["d"]["documents"] == 2


def test_store_inside_corpus_is_not_a_domain(corpus, capsys):
    out = corpus / "store"
    assert main(["prepare", "--corpus", str(corpus), "--out", str(out), "--seq-len", "16"]) == 0
    assert main(["prepare", "--corpus", str(corpus), "--out", str(out), "--seq-len", "16"]) == 0
    assert TokenStore.open(out).domains == ["books", "code", "web"]
    assert "unchanged, reused" in capsys.readouterr().err


def test_short_validation_split_warns(corpus, tmp_path, capsys):
    code, _, err = _run(["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--seq-len", "400",
                         "--valid-fraction", "0.05"], capsys)
    assert code == 0
    assert "fewer than one sequence of 401" in err or "validation split is empty" in err
