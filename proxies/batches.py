"""Deterministic mixture batches: step -> windows of every proxy, a pure function of the seed.

Each proxy's stream is cut into blocks of `block_steps` steps. A block of n windows takes exactly
the largest-remainder rounding of n * w_k windows from domain k (so zero-weight domains are never
read), in an order and at offsets drawn from `default_rng([seed, proxy_id, phase, block])`. Any
step can therefore be rebuilt without replaying earlier ones: a resumed run sees the same data, and
a proxy's data do not depend on which group or device trains it.

A schedule (Levanter's `[(step, weights), ...]`) gives each proxy phases: mixture p from its start
step until the next phase's start. Each phase starts a fresh block sequence (the `phase` of the seed
above; a block cut short by a switch keeps exact counts over its own steps), so the windows of the
blocks that end before a switch are those of the unscheduled run. `late_w_MxK` with
`late_fraction` f is the two-phase schedule switching at step `steps - round(f * steps)`.
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


def resolve_schedule(phases, steps: int, domains: list[str], what: str = "schedule") -> list[tuple[int, np.ndarray]]:
    """Phases [(start, w_K), ...] with `start` a step (int) or a fraction of `steps` (float in [0, 1),
    rounded to the nearest step) as [(step, w_K float64)]: the first at step 0, starts increasing."""
    if not phases:
        raise RegmixError(f"{what}: no phases")
    out = []
    for i, phase in enumerate(phases):
        if len(phase) != 2:
            raise RegmixError(f"{what}: phase {i} must be (start, weights), got {phase!r}")
        start, w = phase
        if isinstance(start, (bool, np.bool_)) or not isinstance(start, (int, float, np.integer, np.floating)):
            raise RegmixError(f"{what}: phase {i}: start must be a step or a fraction, got {start!r}")
        if isinstance(start, (float, np.floating)):
            if not 0 <= start < 1:
                raise RegmixError(f"{what}: phase {i}: a fractional start must be in [0, 1), got {start}")
            start = int(round(float(start) * steps))
        start = int(start)
        if isinstance(w, dict):
            unknown = [d for d in w if d not in domains]
            if unknown:
                raise RegmixError(f"{what}: phase {i}: unknown domain '{unknown[0]}'")
            w = [float(w.get(d, 0.0)) for d in domains]
        w_K = check_mixtures(np.asarray(w, np.float64)[None], domains, f"{what} phase {i}")[0]
        if (i == 0 and start != 0) or (i > 0 and not out[-1][0] < start < steps):
            raise RegmixError(f"{what}: phase {i} starts at step {start}; phases must start at 0 and then at "
                              f"increasing steps below {steps}")
        out.append((start, w_K))
    return out


class MixtureBatches:
    """`batches.get(step) -> tokens_MxBxT1` (int32) for M proxies with mixtures over `domains`."""

    def __init__(self, store: TokenStore, domains: list[str], w_MxK: np.ndarray, *, batch: int,
                 seq_len: int, steps: int, seed: int, proxy_ids: np.ndarray, block_steps: int = 16,
                 late_w_MxK: np.ndarray | None = None, late_fraction: float = 0.0,
                 schedule_M: list | None = None):
        """`schedule_M`: per proxy, None (its row of `w_MxK` throughout) or phases for
        `resolve_schedule`; `late_w_MxK`/`late_fraction`: the same two-phase schedule for every proxy."""
        self.domains = list(domains)
        w_MxK = check_mixtures(w_MxK, domains)
        m = len(w_MxK)
        self.phases_M = [[(0, w_MxK[i])] for i in range(m)]
        if late_w_MxK is not None and late_fraction > 0:
            if not 0 < late_fraction < 1:
                raise RegmixError(f"late_fraction must be in (0, 1), got {late_fraction}")
            late = check_mixtures(late_w_MxK, domains, "late mixture")
            switch = steps - int(round(late_fraction * steps))
            if switch < steps:
                self.phases_M = [[(0, w_MxK[i]), (switch, late[i])] for i in range(m)]
        if schedule_M is not None:
            if late_w_MxK is not None and late_fraction > 0:
                raise RegmixError("give a schedule or a late mixture, not both")
            if len(schedule_M) != m:
                raise RegmixError(f"schedule: {len(schedule_M)} schedules for {m} proxies")
            self.phases_M = [[(0, w_MxK[i])] if s is None else resolve_schedule(s, steps, domains, f"schedule {i}")
                             for i, s in enumerate(schedule_M)]
        self.batch, self.seq_len, self.steps = batch, seq_len, steps
        self.seed, self.block_steps = int(seed), block_steps
        self.proxy_ids = np.asarray(proxy_ids, dtype=np.int64)
        used = np.any(np.stack([w for ph in self.phases_M for _, w in ph]) > 0, axis=0)
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
        self._cache: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    def mixture(self, m: int, step: int) -> np.ndarray:
        """The mixture proxy m trains on at `step`."""
        return self.phases_M[m][self._where(m, step)[0]][1]

    def _where(self, m: int, step: int) -> tuple[int, int, int, int]:
        """(phase, block, first step of the block, steps in the block) of proxy m at `step`."""
        phases = self.phases_M[m]
        phase = sum(start <= step for start, _ in phases) - 1
        start = phases[phase][0]
        end = phases[phase + 1][0] if phase + 1 < len(phases) else self.steps
        j = (step - start) // self.block_steps
        first = start + j * self.block_steps
        return phase, j, first, min(self.block_steps, end - first)

    def _block(self, m: int, phase: int, j: int, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
        key = (m, phase, j)
        if key not in self._cache:
            n = n_steps * self.batch
            counts = largest_remainder(self.phases_M[m][phase][1], n)
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
        labels, starts = [], []
        for m in range(len(self.proxy_ids)):
            phase, j, first, n_steps = self._where(m, step)
            lo = (step - first) * self.batch
            lab, sta = self._block(m, phase, j, n_steps)
            labels.append(lab[lo:lo + self.batch])
            starts.append(sta[lo:lo + self.batch])
        return np.stack(labels), np.stack(starts)

    def get(self, step: int) -> np.ndarray:
        labels_MxB, starts_MxB = self.plan(step)
        out = np.empty(labels_MxB.shape + (self.seq_len + 1,), dtype=np.int32)
        span = np.arange(self.seq_len + 1)
        for k in np.unique(labels_MxB):
            sel = labels_MxB == k
            out[sel] = self.tokens[int(k)][starts_MxB[sel][:, None] + span]
        return out


def eval_windows(store: TokenStore, domain: str, seq_len: int, n_windows: int) -> np.ndarray:
    """The first `n_windows` windows of T+1 tokens of a domain's validation split (stride T); 0: every whole
    window of the split (all its tokens but a tail shorter than T)."""
    valid = store.tokens(domain, "valid")
    whole = (len(valid) - 1) // seq_len
    n = whole if n_windows == 0 else min(n_windows, whole)
    if n < 1:
        raise RegmixError(f"{store.path}: seq_len {seq_len} is longer than the validation split of "
                          f"'{domain}' ({len(valid)} tokens)")
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)
    return np.asarray(valid[idx], dtype=np.int32)


def eval_tokens(store: TokenStore, domain: str, seq_len: int, n_windows: int) -> int:
    """Tokens scored per evaluation of `domain` with `n_windows` windows (0: the whole split), without reading them."""
    whole = max((int(store.meta["domains"][domain]["valid_tokens"]) - 1) // seq_len, 0)
    return seq_len * (whole if n_windows == 0 else min(n_windows, whole))


def bytes_per_token(store: TokenStore, domain: str) -> float:
    """Validation bytes per token of a domain (for bits per byte)."""
    info = store.meta["domains"][domain]
    tokens, nbytes = info.get("valid_tokens", 0), info.get("valid_bytes")
    if not tokens or nbytes is None:
        return 1.0
    return float(nbytes) / float(tokens)
