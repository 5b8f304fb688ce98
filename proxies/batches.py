"""Deterministic mixture batches: step -> windows of every proxy, a pure function of the seed.

Each proxy's stream is cut into blocks of `block_steps` steps. A block of n windows takes exactly
the largest-remainder rounding of n * w_k windows from domain k (so zero-weight domains are never
read), in an order and at offsets drawn from `default_rng([seed, proxy_id, phase, block])`. Any
step can therefore be rebuilt without replaying earlier ones: a resumed run sees the same data, and
a proxy's data do not depend on which group or device trains it. With a schedule (a second mixture
for the last fraction of the steps) the second phase starts a fresh block sequence.
"""

from __future__ import annotations

import numpy as np

from regmix.corpus.store import TokenStore
from regmix.errors import RegmixError

SIMPLEX_TOL = 1e-6


def check_mixtures(w_MxK: np.ndarray, domains: list[str], what: str = "mixture") -> np.ndarray:
    """Validate rows on the simplex; returns float64 (M, K)."""
    w = np.asarray(w_MxK, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != len(domains):
        raise RegmixError(f"{what}: expected shape (proxies, {len(domains)}), got {w.shape}")
    bad = np.flatnonzero(~np.isfinite(w).all(1) | (w < 0).any(1) | (np.abs(w.sum(1) - 1) > SIMPLEX_TOL))
    if bad.size:
        i = int(bad[0])
        raise RegmixError(f"{what} {i}: weights must be >= 0 and sum to 1, got sum {w[i].sum():.6g}")
    return w


def largest_remainder(w_K: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to n, as close as possible to n * w_K; zero weights get zero."""
    raw = w_K * n
    counts = np.floor(raw).astype(np.int64)
    short = n - int(counts.sum())
    if short > 0:
        rem = np.where(w_K > 0, raw - counts, -1.0)
        order = np.lexsort((np.arange(len(w_K)), -rem))  # stable: ties go to the first domain
        counts[order[:short]] += 1
    return counts


class MixtureBatches:
    """`batches.get(step) -> tokens_MxBxT1` (int32) for M proxies with mixtures over `domains`."""

    def __init__(self, store: TokenStore, domains: list[str], w_MxK: np.ndarray, *, batch: int,
                 seq_len: int, steps: int, seed: int, proxy_ids: np.ndarray, block_steps: int = 16,
                 late_w_MxK: np.ndarray | None = None, late_fraction: float = 0.0):
        self.domains = list(domains)
        self.w_PxMxK = [check_mixtures(w_MxK, domains)]
        self.switch = steps
        if late_w_MxK is not None and late_fraction > 0:
            if not 0 < late_fraction < 1:
                raise RegmixError(f"late_fraction must be in (0, 1), got {late_fraction}")
            self.w_PxMxK.append(check_mixtures(late_w_MxK, domains, "late mixture"))
            self.switch = steps - int(round(late_fraction * steps))
        self.batch, self.seq_len, self.steps = batch, seq_len, steps
        self.seed, self.block_steps = int(seed), block_steps
        self.proxy_ids = np.asarray(proxy_ids, dtype=np.int64)
        used = np.any(np.stack(self.w_PxMxK) > 0, axis=(0, 1))
        self.tokens = {}
        self.limit_K = np.zeros(len(domains), dtype=np.int64)
        for k, d in enumerate(domains):
            if not used[k]:
                continue
            self.tokens[k] = store.tokens(d, "train")
            self.limit_K[k] = len(self.tokens[k]) - seq_len  # starts in [0, limit)
            if self.limit_K[k] < 1:
                raise RegmixError(f"{store.path}: domain '{d}' has {len(self.tokens[k])} training tokens, "
                                  f"fewer than seq_len + 1 = {seq_len + 1}")
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _where(self, step: int) -> tuple[int, int, int, int]:
        """(phase, block, first step of the block, steps in the block)."""
        phase = int(step >= self.switch)
        start, end = (0, self.switch) if phase == 0 else (self.switch, self.steps)
        j = (step - start) // self.block_steps
        first = start + j * self.block_steps
        return phase, j, first, min(self.block_steps, end - first)

    def _block(self, m: int, phase: int, j: int, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
        key = (m, phase, j)
        if key not in self._cache:
            n = n_steps * self.batch
            counts = largest_remainder(self.w_PxMxK[phase][m], n)
            rng = np.random.default_rng([self.seed, int(self.proxy_ids[m]), phase, j])
            labels = rng.permutation(np.repeat(np.arange(len(counts)), counts))
            starts = (rng.random(n) * self.limit_K[labels]).astype(np.int64)
            self._cache = {k: v for k, v in self._cache.items() if k[0] != m}
            self._cache[key] = (labels, starts)
        return self._cache[key]

    def plan(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Domain index and start offset of every window of a step: two (M, B) arrays."""
        if not 0 <= step < self.steps:
            raise IndexError(f"step {step} outside 0..{self.steps - 1}")
        phase, j, first, n_steps = self._where(step)
        lo = (step - first) * self.batch
        labels, starts = zip(*(self._block(m, phase, j, n_steps) for m in range(len(self.proxy_ids))))
        return (np.stack([x[lo:lo + self.batch] for x in labels]),
                np.stack([x[lo:lo + self.batch] for x in starts]))

    def get(self, step: int) -> np.ndarray:
        labels_MxB, starts_MxB = self.plan(step)
        out = np.empty(labels_MxB.shape + (self.seq_len + 1,), dtype=np.int32)
        span = np.arange(self.seq_len + 1)
        for k in np.unique(labels_MxB):
            sel = labels_MxB == k
            out[sel] = self.tokens[int(k)][starts_MxB[sel][:, None] + span]
        return out


def eval_windows(store: TokenStore, domain: str, seq_len: int, n_windows: int) -> np.ndarray:
    """The first `n_windows` windows of T+1 tokens of a domain's validation split (stride T)."""
    valid = store.tokens(domain, "valid")
    n = min(n_windows, (len(valid) - 1) // seq_len)
    if n < 1:
        raise RegmixError(f"{store.path}: seq_len {seq_len} is longer than the validation split of "
                          f"'{domain}' ({len(valid)} tokens)")
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)
    return np.asarray(valid[idx], dtype=np.int32)


def bytes_per_token(store: TokenStore, domain: str) -> float:
    """Validation bytes per token of a domain (for bits per byte)."""
    info = store.meta["domains"][domain]
    tokens, nbytes = info.get("valid_tokens", 0), info.get("valid_bytes")
    if not tokens or nbytes is None:
        return 1.0
    return float(nbytes) / float(tokens)
