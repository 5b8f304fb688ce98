"""Which mixtures to train next: expected improvement with a batch rule.

Expected improvement (EI) of a candidate, for minimisation: E[max(best - f, 0)] under the model's
predictive N(mean, sd). A batch of n is picked greedily. With a joint posterior (the Gaussian
process) the rule is the kriging believer: after each pick the model "believes" the picked
mixture's loss equals its mean, which leaves the mean unchanged and shrinks the covariance by a
rank-one update, so near neighbours of a pick lose their EI. Without one (other regressors: sd is
the spread of the fold models) picks must keep a minimum Hellinger distance from each other.

EI alone puts the runs near the predicted optimum: it finds the best mixture in fewer runs, but
the ranking elsewhere learns less than from random runs (benchmarks/active_design.py). `explore`
gives that share of the batch to the largest posterior variance instead (same believer updates,
among the EI pool and as many random candidates), which spreads runs where the model knows least.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from regmix.errors import RegmixError
from regmix.regress.gp import transform

SHORTLIST = 4000  # candidates with the lowest predicted loss that get a predictive sd
POOL = 400  # of those, the highest-EI ones among which the batch is chosen


def expected_improvement(mean_M: np.ndarray, sd_M: np.ndarray, best: float) -> np.ndarray:
    sd_M = np.maximum(sd_M, 1e-12)
    z = (best - mean_M) / sd_M
    return (best - mean_M) * norm.cdf(z) + sd_M * norm.pdf(z)


def believer_batch(mean_M: np.ndarray, cov_MxM: np.ndarray, n: int, best: float, n_explore: int = 0) -> list[int]:
    """Kriging believer: greedy EI picks (then n_explore largest-variance picks) with a rank-one
    covariance update after each."""
    cov = np.array(cov_MxM, np.float64)
    picked: list[int] = []
    for step in range(min(n, len(mean_M))):
        var = np.clip(np.diag(cov), 0.0, None)
        gain = var.copy() if step >= n - n_explore else expected_improvement(mean_M, np.sqrt(var), best)
        gain[picked] = -np.inf
        j = int(np.argmax(gain))
        picked.append(j)
        if cov[j, j] > 1e-18:
            cov -= np.outer(cov[:, j], cov[:, j]) / cov[j, j]
        best = min(best, float(mean_M[j]))
    return picked


def spaced_batch(mean_M: np.ndarray, sd_M: np.ndarray, x_MxD: np.ndarray, n: int, best: float) -> list[int]:
    """Greedy EI picks at least a quarter of the pool's median pairwise distance apart."""
    ei = expected_improvement(mean_M, sd_M, best)
    d = np.sqrt(np.maximum(((x_MxD[:, None, :] - x_MxD[None, :, :]) ** 2).sum(-1), 0.0))
    min_dist = 0.25 * float(np.median(d[np.triu_indices(len(d), 1)])) if len(d) > 1 else 0.0
    picked: list[int] = []
    for j in np.argsort(-ei):
        if all(d[j, i] >= min_dist for i in picked):
            picked.append(int(j))
        if len(picked) == n:
            break
    return picked


def choose(models_T: list, folds_TxF: list[list] | None, weights_T: np.ndarray, cand_MxK: np.ndarray, n: int,
           best: float | None = None, explore: float = 0.0, seed: int = 0) -> np.ndarray:
    """Indices of n candidates to train next, for the weighted sum of the targets (lower is better).

    `models_T`: the full model per target; `folds_TxF`: the fold models (the sd of models without
    a posterior). `best`: the best measured objective (default: the lowest predicted)."""
    if n < 1:
        raise RegmixError(f"--n must be >= 1, got {n}")
    if not 0 <= explore <= 1:
        raise RegmixError(f"--explore must be a share between 0 and 1, got {explore}")
    weights_T = np.asarray(weights_T, np.float64)
    mean = sum(wt * m.predict(cand_MxK) for wt, m in zip(weights_T, models_T))
    short = np.argsort(mean)[: min(len(mean), max(SHORTLIST, 4 * n))]
    sub = cand_MxK[short]
    joint = all(hasattr(m, "posterior_cov") for m in models_T)
    if joint:
        sd2 = sum(wt**2 * m.predict_sd(sub, noise=False)[1] ** 2 for wt, m in zip(weights_T, models_T))
    elif folds_TxF:
        spread = np.stack([sum(wt * fs[f].predict(sub) for wt, fs in zip(weights_T, folds_TxF))
                           for f in range(len(folds_TxF[0]))])
        sd2 = spread.var(axis=0, ddof=1)
    else:
        raise RegmixError("this model has no posterior and no fold models to measure uncertainty with")
    incumbent = float(mean.min()) if best is None else float(best)
    ei = expected_improvement(mean[short], np.sqrt(sd2), incumbent)
    pool = short[np.argsort(-ei)[: max(POOL, 2 * n)]]
    n_explore = int(round(explore * n))
    if joint:
        if n_explore:
            rest = np.setdiff1d(np.arange(len(cand_MxK)), pool)
            extra = np.random.default_rng(seed).choice(rest, min(len(rest), len(pool)), replace=False)
            pool = np.concatenate([pool, extra])
        cov = sum(wt**2 * m.posterior_cov(cand_MxK[pool]) for wt, m in zip(weights_T, models_T))
        picked = believer_batch(mean[pool], cov, n, incumbent, n_explore)
    else:
        pos = {int(i): k for k, i in enumerate(short)}
        sd_pool = np.sqrt(sd2[[pos[int(i)] for i in pool]])
        picked = spaced_batch(mean[pool], sd_pool, transform(cand_MxK[pool]), n, incumbent)
    return pool[picked]
