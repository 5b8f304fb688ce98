import json

import numpy as np
import pytest

from regmix.corpus.store import TokenStore, dtype_for, write_store
from regmix.errors import RegmixError


def _doc(text: str) -> list[int]:
    return list(text.encode()) + [256]


def test_write_and_open_roundtrip(tmp_path):
    train = np.array(_doc("hello") + _doc("world!"), dtype=np.int64)
    valid = np.array(_doc("bye"), dtype=np.int64)
    store = write_store(tmp_path / "s", {"a": (train, valid), "b": (train[:6], np.zeros(0, int))}, 257, 256)
    assert store.domains == ["a", "b"]
    assert store.vocab_size == 257 and store.eod_id == 256 and store.tokenizer_hash == "byte"
    assert store.meta["dtype"] == "uint16"
    a = store.tokens("a")
    assert a.dtype == np.uint16 and a.tolist() == train.tolist()
    assert not a.flags.writeable
    assert store.tokens("b", "valid").size == 0
    info = store.meta["domains"]["a"]
    assert info["train_tokens"] == 13 and info["train_bytes"] == 11 and info["documents"] == 2
    assert info["valid_documents"] == 1 and info["valid_bytes"] == 3
    w = store.natural_weights()
    assert w["a"] == pytest.approx(13 / 19) and sum(w.values()) == pytest.approx(1.0)
    again = TokenStore.open(tmp_path / "s")
    assert again.meta == store.meta


def test_dtype_for():
    assert dtype_for(256) == "uint8" and dtype_for(257) == "uint16"
    assert dtype_for(65536) == "uint16" and dtype_for(65537) == "uint32"


def test_open_errors(tmp_path):
    with pytest.raises(RegmixError, match="no token store"):
        TokenStore.open(tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(RegmixError, match="meta.json: cannot read"):
        TokenStore.open(tmp_path)
    store = write_store(tmp_path / "s", {"a": (np.array(_doc("x")), np.array(_doc("y")))}, 257, 256)
    meta = json.loads((store.path / "meta.json").read_text())
    del meta["vocab_size"]
    (store.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RegmixError, match="missing key 'vocab_size'"):
        TokenStore.open(store.path)


def test_missing_token_file_and_unknown_domain(tmp_path):
    store = write_store(tmp_path, {"a": (np.array(_doc("x")), np.array(_doc("y")))}, 257, 256)
    with pytest.raises(RegmixError, match="unknown domain 'zz'"):
        store.tokens("zz")
    (tmp_path / "a" / "valid.bin").unlink()
    with pytest.raises(RegmixError, match="valid.bin: token file missing"):
        TokenStore.open(tmp_path)


def test_ids_outside_vocab_rejected(tmp_path):
    with pytest.raises(RegmixError, match="outside"):
        write_store(tmp_path, {"a": (np.array([300]), np.array([1]))}, 257, 256)
