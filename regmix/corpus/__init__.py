"""Corpora and token stores: read text in several layouts, tokenize it, write `regmix prepare` stores.

`regmix.corpus.store` is numpy only (the proxies package reads stores through it); tokenizers and
pyarrow are imported by the modules that need them.
"""

from regmix.corpus.store import TokenStore, write_store

__all__ = ["TokenStore", "write_store"]
