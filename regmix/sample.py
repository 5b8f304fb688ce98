"""Sampling candidate mixtures from a MixtureSpace, vectorised (no Python loop per sample).

Samplers:
- `regmix`: RegMix's generator. Each draw picks a concentration strength from a log-spaced range
  and draws Dirichlet(strength * tempered prior); draws that break bounds or caps are rejected;
  weights under a sparsity floor become 0; rows are rounded to a grid and de-duplicated.
- `uniform`: uniform on the (bound-shifted) simplex, Dirichlet(1).
- `sobol`: a scrambled Sobol design mapped to the simplex (exponential spacings), space-filling.
All take a `numpy.random.Generator`; nothing touches global random state.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from regmix.errors import RegmixError
from regmix.progress import Progress
from regmix.space import FEASIBILITY_TOL, MixtureSpace

Method = Literal["regmix", "uniform", "sobol"]
STREAMS = 4
METHODS = get_args(Method)  # the sampler names, here alone


@dataclass(frozen=True)
class SamplerConfig:
    """RegMix sampler knobs (defaults follow the reference generator)."""

    temperature: float = 0.5  # prior ** temperature, renormalised: flattens the natural mixture
    min_strength: float = 0.1  # Dirichlet concentration range (log-spaced)
    max_strength: float = 5.0
    n_strengths: int = 15
    min_weight: float = 1e-3  # sparsity floor: smaller weights become 0
    round_to: float | None = 1e-3  # grid of the returned weights (None: no rounding)
    dedupe: bool = True


def sample_mixtures(
    space: MixtureSpace,
    n: int,
    rng: np.random.Generator,
    method: Method = "regmix",
    config: SamplerConfig = SamplerConfig(),
    max_rounds: int = 200,
    threads: int = 1,
    allow_fewer: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Draw `n` feasible mixtures `w_NxK` (rows on the simplex, inside bounds and caps).

    Each round's draw is split into STREAMS independent child generators, whatever `threads` is,
    so the result depends on the seed alone; `threads` only runs the streams in parallel (numpy
    releases the GIL while it draws). Where the grid holds fewer distinct feasible mixtures than `n`,
    `allow_fewer` returns all of them, with a warning; otherwise that is an error. That and the
    spaces with no feasible mixture for this sampler are found before any draw (`diagnose`)."""
    if method not in METHODS:
        raise RegmixError(f"unknown sampler '{method}' (choices: {', '.join(METHODS)})")
    if n <= 0:
        return np.zeros((0, space.k))
    whole = diagnose(space, n, method, config, allow_fewer)
    if whole is not None:
        return whole
    bar = Progress("sample candidates", n, "mixtures", enabled=progress)
    draw = {"regmix": _draw_regmix, "uniform": _draw_uniform, "sobol": _draw_sobol}[method]
    kept: list[np.ndarray] = []
    dedupe = config.dedupe and bool(config.round_to) and method != "sobol"
    have, drawn, accepted, stalled = 0, 0, 0, 0
    batch = max(1024, int(n * 1.1))
    sobol_state = {"engine": None}
    for _ in range(max_rounds):
        if method == "sobol":
            w = _draw_sobol(space, batch, rng, sobol_state)
            drawn += len(w)
            w = w[space.feasible_N(w, tol=FEASIBILITY_TOL)]  # off the grid: feasible to rounding, not to 1e-6
        else:
            def stream(child):
                part = draw(space, -(-batch // STREAMS), child, config)
                if config.round_to:
                    part = _round_to_grid(part, config.round_to)
                return len(part), part[space.feasible_N(part)]

            children = rng.spawn(STREAMS)
            if threads > 1:
                with ThreadPoolExecutor(min(threads, STREAMS)) as pool:
                    parts = list(pool.map(stream, children))
            else:
                parts = [stream(c) for c in children]
            drawn += sum(p[0] for p in parts)
            w = np.concatenate([p[1] for p in parts])
        accepted += len(w)
        kept.append(w)
        if dedupe:
            kept = [_unique_rows(np.concatenate(kept), config.round_to)]
        before, have = have, sum(len(k) for k in kept)
        bar.update(min(have, n), f"acceptance {accepted / max(drawn, 1):.1%}")
        if have >= n:
            break
        stalled = stalled + 1 if dedupe and have - before < max(1, n // 1000) else 0
        if stalled >= 2:  # the grid holds no more distinct mixtures the sampler reaches
            if not allow_fewer:
                break  # to the error below, at once
            warnings.warn(f"only {have:,} distinct feasible mixtures exist on the {config.round_to:g} grid for "
                          f"these {space.k} domains, bounds and caps (of {n:,} asked for): using all of them")
            bar.close()
            return np.concatenate(kept)
        rate = max(have / max(drawn, 1), 1e-4)
        batch = int(min(max(1024, 1.2 * (n - have) / rate), 4 * n + 1024))
    bar.close()
    out = np.concatenate(kept)[:n] if kept else np.zeros((0, space.k))
    if len(out) < n:
        raise RegmixError(
            f"sampler '{method}' found only {len(out)} of {n} distinct feasible mixtures "
            f"(acceptance {accepted / max(drawn, 1):.2%}); loosen the bounds/caps or use another sampler"
        )
    return out


def tempered_prior(prior_K: np.ndarray, temperature: float) -> np.ndarray:
    p = np.power(prior_K, temperature)
    return p / p.sum()


def _dirichlet_NxK(alpha_NxK: np.ndarray, rng: np.random.Generator, floor: float = 0.0) -> np.ndarray:
    """Dirichlet rows via normalised gammas; entries under `floor` (after normalising) become 0.

    Gammas are drawn in float32 (a fifth faster; weights are rounded to a 1e-3 grid later)."""
    g = rng.standard_gamma(alpha_NxK.astype(np.float32), dtype=np.float32).astype(np.float64)
    total = g.sum(axis=1, keepdims=True)
    ok = total[:, 0] > 0
    g, total = g[ok], total[ok]
    g /= total
    if floor:
        g[g < floor] = 0.0
        total = g.sum(axis=1, keepdims=True)
        ok = total[:, 0] > 0
        g = g[ok] / total[ok]
    return g


def _draw_regmix(space, n, rng, config: SamplerConfig) -> np.ndarray:
    """Dirichlet around the tempered prior at a random log-spaced strength; lower bounds are met by
    shifting (w = lower + slack * d), upper bounds and caps by rejection afterwards."""
    prior = tempered_prior(space.prior_K, config.temperature)
    strengths = np.logspace(np.log10(config.min_strength), np.log10(config.max_strength), config.n_strengths)
    s_N = strengths[rng.integers(0, len(strengths), size=n)]
    alpha = np.maximum(s_N[:, None] * prior[None, :], 1e-12)
    return _shift_into_lower(space, _dirichlet_NxK(alpha, rng, config.min_weight))


def _shift_into_lower(space, d_NxK: np.ndarray) -> np.ndarray:
    """Map a simplex sample into {w >= lower}: lower + (1 - sum lower) * d."""
    if not space.lower_K.any():
        return d_NxK
    slack = 1.0 - space.lower_K.sum()
    return space.lower_K[None, :] + slack * d_NxK


def _draw_uniform(space, n, rng, config) -> np.ndarray:
    return _shift_into_lower(space, _dirichlet_NxK(np.ones((n, space.k)), rng))


def _draw_sobol(space, n, rng, state) -> np.ndarray:
    from scipy.stats import qmc

    if state["engine"] is None:
        state["engine"] = qmc.Sobol(d=space.k, scramble=True, seed=rng)
    m = int(np.ceil(np.log2(max(n, 2))))
    u = state["engine"].random_base2(m)[:n] if state["engine"].num_generated == 0 else state["engine"].random(n)
    e = -np.log(np.clip(u, 1e-12, 1.0))
    return _shift_into_lower(space, e / e.sum(axis=1, keepdims=True))


def _round_to_grid(w_NxK: np.ndarray, q: float) -> np.ndarray:
    """Round rows to multiples of q summing to exactly 1: the rounding residue (a few grid units)
    goes to each row's largest weight, which cannot turn negative."""
    units = int(round(1.0 / q))
    base = np.rint(w_NxK * units)
    top = np.argmax(base, axis=1)
    base[np.arange(len(base)), top] += units - base.sum(axis=1)
    return base / units


def _unique_rows(w_NxK: np.ndarray, q: float) -> np.ndarray:
    """Drop rows equal to an earlier row, keeping the first of each in draw order.

    Rows are already on the q-grid, so equal rows are bit-identical and have equal keys under a
    random linear hash (one BLAS product); two different rows collide with negligible odds, and a
    collision would only drop one candidate."""
    r_K = np.random.default_rng(0x5EED).random(w_NxK.shape[1]) + 1.0
    _, first = np.unique(w_NxK @ r_K, return_index=True)
    first.sort()
    return w_NxK[first]


# -- before any draw: how many mixtures the grid holds, and why a space has none --------------------
def _grid_box(space: MixtureSpace, method: str, q: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-domain [lo, hi] in grid units; under the regmix sampler a zero-prior domain stays at its
    lower bound (the Dirichlet around the prior never gives it weight)."""
    units = int(round(1.0 / q))
    lo = np.ceil(space.lower_K * units - 1e-6).astype(np.int64)
    hi = np.floor(space.effective_upper_K * units + 1e-6).astype(np.int64)
    if method == "regmix":
        hi = np.where(space.prior_K > 0, hi, lo)
    return lo, hi, units


def grid_count(lo_K: np.ndarray, hi_K: np.ndarray, units: int) -> float:
    """Number of integer vectors lo <= u <= hi summing to `units` (the grid mixtures), as a float
    (inf past 1e308): one box convolution per domain, each a difference of prefix sums."""
    ways = np.zeros(units + 1)
    ways[0] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        for lo, hi in zip(lo_K, hi_K):
            c = np.concatenate([[0.0], np.cumsum(ways)])  # c[s + 1] = sum ways[:s + 1]
            s = np.arange(units + 1)
            top, bottom = s - lo, s - hi - 1
            ways = np.where(top >= 0, c[np.clip(top, -1, units) + 1], 0.0) - np.where(bottom >= 0, c[np.clip(bottom, -1, units) + 1], 0.0)
            ways = np.nan_to_num(ways, nan=np.inf)
    return float(ways[units])


def grid_mixtures(lo_K: np.ndarray, hi_K: np.ndarray, units: int) -> np.ndarray:
    """Every grid mixture of the box, in lexicographic order (only for boxes of modest count):
    domains are added one at a time, each value ranging where the rest can still complete the sum."""
    rest_lo = np.concatenate([np.cumsum(lo_K[::-1])[::-1][1:], [0]])
    rest_hi = np.concatenate([np.cumsum(hi_K[::-1])[::-1][1:], [0]])
    rows = np.zeros((1, 0), np.int64)
    total = np.zeros(1, np.int64)
    for j in range(len(lo_K)):
        a = np.maximum(lo_K[j], units - total - rest_hi[j])
        b = np.minimum(hi_K[j], units - total - rest_lo[j])
        c = np.maximum(b - a + 1, 0)
        idx = np.repeat(np.arange(len(rows)), c)
        v = a[idx] + np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        rows = np.concatenate([rows[idx], v[:, None]], axis=1)
        total = total[idx] + v
    return rows / units


def diagnose(space: MixtureSpace, n: int, method: str, config: SamplerConfig = SamplerConfig(),
             allow_fewer: bool = False) -> np.ndarray | None:
    """Name the cause where this sampler cannot give `n` distinct feasible mixtures, before any draw.

    Raises a one-line RegmixError where it can give none (zero-prior domains under the regmix
    sampler; a grid too coarse for the bounds). Where the grid holds fewer than `n` mixtures, returns
    all of them (with a warning, under `allow_fewer`; else an error); otherwise None."""
    if method == "regmix":
        zero = [d for d, p in zip(space.domains, space.prior_K) if p <= 0]
        if zero:
            live = space.prior_K > 0
            reach = space.effective_upper_K[live].sum() + space.lower_K[~live].sum()
            names = ", ".join(zero[:5]) + (f" (+{len(zero) - 5})" if len(zero) > 5 else "")
            if reach < 1 - 1e-9:
                raise RegmixError(
                    f"zero prior for {names}: the regmix sampler gives them no weight, and the other domains' "
                    f"upper bounds and caps reach only {reach:.4g} < 1; give them a prior share or use --sampler uniform")
            warnings.warn(f"zero prior for {names}: the regmix sampler gives them no weight "
                          "(give them a prior share, or use --sampler uniform)")
    if method == "sobol" or not (config.dedupe and config.round_to):
        return None
    lo, hi, units = _grid_box(space, method, config.round_to)
    count = grid_count(lo, hi, units)
    if count == 0:
        raise RegmixError(f"the {config.round_to:g} grid holds no mixture inside these bounds and caps "
                          f"(they leave less than one grid step of room): widen them by {config.round_to:g} or more")
    if count >= n:
        return None
    what = (f"only {int(count):,} distinct feasible mixtures exist on the {config.round_to:g} grid for these "
            f"{space.k} domains, bounds and caps (of {n:,} asked for)")
    if not allow_fewer:
        raise RegmixError(f"{what}: ask for at most {int(count):,}")
    warnings.warn(f"{what}: using all of them")
    return grid_mixtures(lo, hi, units)
