"""Corpora and token stores: read text in several layouts, tokenize it, write `regmix prepare` stores.

`regmix.corpus.store` is numpy only (the proxies package reads stores through it); tokenizers,
pyarrow and tqdm are imported inside the functions that need them. The library entry point is
`regmix.corpus.prepare.prepare` (not re-exported here: the name would shadow its module).
"""

from regmix.corpus.demo import demo_corpus_path
from regmix.corpus.store import TokenStore, write_store
from regmix.corpus.tokenizer import ByteTokenizer, load_tokenizer

__all__ = ["ByteTokenizer", "TokenStore", "demo_corpus_path", "load_tokenizer", "write_store"]
