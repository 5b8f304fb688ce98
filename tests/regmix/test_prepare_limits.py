"""Per-domain token limits in prepare: a prefix of whole training documents in file order, the validation
split whole, recorded in meta, part of the domain's hash; bad limits are refused naming the entry."""

import io
import json
import re

import numpy as np
import pytest

from regmix.corpus.prepare import prepare
from regmix.corpus.store import TokenStore
from regmix.corpus.tokenizer import load_tokenizer_file, train_bpe
from regmix.errors import RegmixError


def _corpus(root, n_docs=30):
    """Domain `big`: docs of 41-70 bytes in file order; `small`: the same shape; validation files for both."""
    rng = np.random.default_rng(0)
    for name in ("big", "small"):
        for split, n in (("train", n_docs), ("valid", 5)):
            docs = [f"{name} {split} {i} " + "x" * int(rng.integers(30, 60)) for i in range(n)]
            path = root / name / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return root


def _docs(store: TokenStore, domain: str, split: str) -> list[str]:
    tokens = np.asarray(store.tokens(domain, split))
    ends = np.flatnonzero(tokens == store.eod_id)
    return [bytes(p[p < 256].astype(np.uint8)).decode() for p in np.split(tokens, ends + 1)[:-1]]


def _lines(path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines()]


def test_limit_keeps_whole_documents_in_file_order_and_the_whole_validation_split(tmp_path):
    corpus = _corpus(tmp_path / "c")
    prepare(corpus, tmp_path / "full", seq_len=16, progress=False)
    full = TokenStore.open(tmp_path / "full")
    limit = 500
    meta = prepare(corpus, tmp_path / "cut", seq_len=16, progress=False, token_limits={"small": limit})
    cut = TokenStore.open(tmp_path / "cut")
    train = _lines(corpus / "small" / "train.jsonl")
    sizes = np.cumsum([len(d.encode()) + 1 for d in train])  # byte tokens + the end-of-document id
    kept = int(np.searchsorted(sizes, limit, side="right"))  # the longest prefix within the limit
    assert 0 < kept < len(train) and sizes[kept - 1] <= limit < sizes[kept]
    assert _docs(cut, "small", "train") == train[:kept]
    info = meta["domains"]["small"]
    assert info["train_tokens"] == sizes[kept - 1] and info["documents"] == kept
    assert info["token_limit"] == limit and info["dropped_documents"] == len(train) - kept
    assert info["dropped_bytes"] == sum(len(d.encode()) for d in train[kept:])
    assert meta["token_limits"] == {"small": limit}
    # the validation split and the unlimited domain are the unlimited store's, byte for byte
    for d, split in (("small", "valid"), ("big", "train"), ("big", "valid")):
        assert np.array_equal(cut.tokens(d, split), full.tokens(d, split)), (d, split)
    assert "token_limit" not in meta["domains"]["big"]
    # the natural mixture is the limited token counts' shares
    nat = cut.natural_weights()
    assert nat["small"] == pytest.approx(sizes[kept - 1] / (sizes[kept - 1] + full.meta["domains"]["big"]["train_tokens"]))


def test_limit_is_part_of_the_domain_hash(tmp_path):
    corpus = _corpus(tmp_path / "c")
    out = tmp_path / "s"
    plain = prepare(corpus, out, seq_len=16, progress=False)
    log = io.StringIO()
    limited = prepare(corpus, out, seq_len=16, progress=False, log=log, token_limits={"small": 600})
    assert "big: unchanged, reused" in log.getvalue() and "small: unchanged" not in log.getvalue()
    assert limited["domains"]["small"]["train_tokens"] < plain["domains"]["small"]["train_tokens"]
    log = io.StringIO()
    same = prepare(corpus, out, seq_len=16, progress=False, log=log, token_limits={"small": 600})
    assert log.getvalue().count("unchanged, reused") == 2 and same["domains"] == limited["domains"]
    log = io.StringIO()
    other = prepare(corpus, out, seq_len=16, progress=False, log=log, token_limits={"small": 900})
    assert "small: unchanged" not in log.getvalue()
    assert other["domains"]["small"]["train_tokens"] > limited["domains"]["small"]["train_tokens"]
    back = prepare(corpus, out, seq_len=16, progress=False)  # no limit: the unlimited hash and split again
    assert back["domains"]["small"] == plain["domains"]["small"] and back["token_limits"] == {}


def test_a_limit_above_the_domain_keeps_it_whole(tmp_path):
    corpus = _corpus(tmp_path / "c")
    meta = prepare(corpus, tmp_path / "s", seq_len=16, progress=False, token_limits={"big": 10**9})
    info = meta["domains"]["big"]
    assert info["documents"] == 30 and info["dropped_documents"] == 0 and info["dropped_bytes"] == 0


def test_limit_counts_tokens_of_a_trained_tokenizer(tmp_path):
    corpus = _corpus(tmp_path / "c")
    tok = train_bpe(_lines(corpus / "big" / "train.jsonl") * 3, 300)
    tok.save(tmp_path / "tok.json")
    tok = load_tokenizer_file(tmp_path / "tok.json")
    meta = prepare(corpus, tmp_path / "s", tokenizer=str(tmp_path / "tok.json"), seq_len=8, progress=False,
                   token_limits={"small": 200})
    sizes = np.cumsum([tok.encode(d).size for d in _lines(corpus / "small" / "train.jsonl")])
    kept = int(np.searchsorted(sizes, 200, side="right"))
    info = meta["domains"]["small"]
    assert 0 < kept < 30 and info["documents"] == kept and info["train_tokens"] == sizes[kept - 1] <= 200


@pytest.mark.parametrize("limits, message", [
    ({"nope": 100}, "token_limits.nope: unknown domain (known: big, small)"),
    ({"small": 0}, "token_limits.small: expected a positive number of tokens, got 0"),
    ({"small": -5}, "token_limits.small: expected a positive number of tokens"),
    ({"small": 2.5}, "token_limits.small: expected a positive number of tokens, got 2.5"),
    ({"small": "many"}, "token_limits.small: expected a positive number of tokens, got 'many'"),
    ({"small": True}, "token_limits.small: expected a positive number of tokens, got True"),
    ({"small": 20}, "token_limits.small: a limit of 20 training tokens keeps too little of 'small' (no document fits"),
    ({"small": 70}, "token_limits.small: a limit of 70 training tokens keeps too little of 'small' ("),
])
def test_bad_limits_are_refused_naming_the_entry(tmp_path, limits, message):
    corpus = _corpus(tmp_path / "c")
    with pytest.raises(RegmixError, match=re.escape(message)):
        prepare(corpus, tmp_path / "s", seq_len=100, progress=False, token_limits=limits)


def test_cli_token_limit_flag(tmp_path, capsys):
    from regmix.cli import main

    corpus = _corpus(tmp_path / "c")
    assert main(["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "s"), "--seq-len", "16",
                 "--token-limit", "small=500", "--no-progress"]) == 0
    assert TokenStore.open(tmp_path / "s").meta["token_limits"] == {"small": 500}
    capsys.readouterr()
    for flag, message in (("small=lots", "token_limits.small: expected a positive number of tokens, got 'lots'"),
                          ("small", "expected DOMAIN=TOKENS"), ("nope=10", "token_limits.nope: unknown domain"),
                          ("small=0", "token_limits.small: expected a positive number of tokens, got 0")):
        assert main(["prepare", "--corpus", str(corpus), "--out", str(tmp_path / "t"), "--token-limit", flag]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("regmix: error:") and message in err[0], (flag, err)
