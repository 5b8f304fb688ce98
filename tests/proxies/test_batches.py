"""Mixture batches: exact per-block counts, zero weights never read, pure function of the step."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from proxies.batches import MixtureBatches, check_mixtures, eval_windows, largest_remainder
from regmix.corpus.store import write_store
from regmix.errors import RegmixError
from toy_stores import banded_arrays

DOMAINS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # Each domain's tokens lie in its own id range, so a window tells which domain it came from.
    arrays = banded_arrays(DOMAINS, 5000, 300)
    return write_store(tmp_path_factory.mktemp("store"), arrays, vocab_size=64, eod_id=63)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=8), st.integers(0, 500))
def test_largest_remainder(raw, n):
    w = np.asarray(raw)
    if w.sum() == 0:
        w[0] = 1.0
    w = w / w.sum()
    c = largest_remainder(w, n)
    assert c.sum() == n and np.all(c >= 0)
    assert np.all(np.abs(c - n * w) < 1 + 1e-9)
    assert np.all(c[w == 0] == 0)


def test_exact_counts_and_zero_weight_never_read(store):
    w = np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    b = MixtureBatches(store, DOMAINS, w, batch=4, seq_len=16, steps=20, seed=3, proxy_ids=[0, 1], block_steps=5)
    labels = np.stack([b.plan(s)[0] for s in range(5)], axis=1)  # first block: (M, 5, B)
    for m in range(2):
        counts = np.bincount(labels[m].ravel(), minlength=3)
        np.testing.assert_array_equal(counts, largest_remainder(w[m], 20))
    toks = b.get(7)
    dom = toks // 10
    assert np.all(dom == dom[..., :1])  # each window from one domain
    assert not np.any(dom[0] == 2)


def test_unused_domain_not_opened(store):
    b = MixtureBatches(store, DOMAINS, np.array([[1.0, 0, 0]]), batch=2, seq_len=8, steps=4, seed=0, proxy_ids=[0])
    assert list(b.tokens) == [0]


def test_deterministic_and_independent_of_grouping(store):
    w = np.array([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0], [0.0, 0.0, 1.0]])
    kw = dict(batch=3, seq_len=12, steps=30, seed=7, block_steps=4)
    full = MixtureBatches(store, DOMAINS, w, proxy_ids=[0, 1, 2], **kw)
    alone = MixtureBatches(store, DOMAINS, w[1:2], proxy_ids=[1], **kw)
    again = MixtureBatches(store, DOMAINS, w, proxy_ids=[0, 1, 2], **kw)
    for s in (29, 0, 13, 5):  # any order: a resumed run rebuilds any step
        np.testing.assert_array_equal(full.get(s)[1], alone.get(s)[0])
        np.testing.assert_array_equal(full.get(s), again.get(s))
    other = MixtureBatches(store, DOMAINS, w, proxy_ids=[0, 1, 2], **dict(kw, seed=8))
    assert not np.array_equal(full.get(3), other.get(3))


def test_schedule_switches_mixture(store):
    w0, w1 = np.array([[1.0, 0, 0]]), np.array([[0, 0, 1.0]])
    b = MixtureBatches(store, DOMAINS, w0, batch=2, seq_len=8, steps=10, seed=0, proxy_ids=[0],
                       late_w_MxK=w1, late_fraction=0.2)
    assert np.all(b.get(7) // 10 == 0) and np.all(b.get(8) // 10 == 2)


def test_bad_inputs(store):
    with pytest.raises(RegmixError, match="sum to 1"):
        check_mixtures(np.array([[0.5, 0.4, 0.0]]), DOMAINS)
    with pytest.raises(RegmixError, match="validation split"):
        eval_windows(store, "a", 400, 4)
    assert eval_windows(store, "a", 16, 100).shape == (299 // 16, 17)
