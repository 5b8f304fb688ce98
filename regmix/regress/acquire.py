"""Which mixtures to train next: expected improvement with a batch rule, a D-optimal design, or both.

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

The D-optimal strategy ignores the loss: it picks, greedily from all candidates, the mixtures that
most raise log det of the information matrix X^T X of a log-linear law's design, the trained runs
included. The law regmix fits (regress/loglinear.py), L = c + exp(b + t . w), is linear in the
weights once linearised (log(L - c) = b + t . w, and on the simplex b + t . w = sum_k (b + t_k) w_k),
so its X holds the weights ('weights'). Its power-law form L = c + exp(b + sum_k t_k log(w_k + EPS))
has X = [1, log(w + EPS)] ('log-weights', the default): that design also values how small a
weight is, not only how large, and its runs rank the remaining mixtures a little better than
random runs or the weights' design do (benchmarks/active_design.py: Spearman 0.988 vs 0.985 at
128 runs on the RegMix pool). Adding x multiplies det by 1 + x^T M^-1 x
(its leverage), so each greedy pick is the candidate of largest leverage, followed by a
Sherman-Morrison update. Such designs sit on the space's extremes and replicate them; picks are
kept a minimum Hellinger distance from the trained runs and from each other (as spaced_batch keeps
EI picks apart), so a batch spreads instead. 'mixed' takes the first share of the batch by EI
(a quarter by default: on the RegMix pool it finds the best run as soon as EI does and ranks as
well as random runs; half ranks worse), the rest D-optimal given the trained runs and those picks.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from regmix.errors import RegmixError
from regmix.regress.gp import sq_dist, transform

STRATEGIES = ("ei", "doptimal", "mixed")
DESIGNS = ("log-weights", "weights")  # features of the D-optimal design; the first is the default
EI_SHARE = 0.25  # of a mixed batch, chosen by EI
EPS = 1e-3  # log(w + EPS): a domain left out counts as a weight of about a thousandth
RIDGE = 1e-6  # added to the information matrix's diagonal, so fewer runs than domains still invert
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


def design_features(w_NxK: np.ndarray, design: str = DESIGNS[0]) -> np.ndarray:
    """A log-linear law's linearised design (see the module docstring): the weights, or an intercept
    and the log weights."""
    if design not in DESIGNS:
        raise RegmixError(f"--design-features must be one of {', '.join(DESIGNS)}, got {design!r}")
    w = np.atleast_2d(np.asarray(w_NxK, np.float64))
    if design == "weights":
        return w
    return np.hstack([np.ones((len(w), 1)), np.log(np.clip(w, 0.0, None) + EPS)])


def log_det_information(x_NxD: np.ndarray, ridge: float = RIDGE) -> float:
    """log det(X^T X + ridge I), the D-criterion of a design."""
    x = np.atleast_2d(np.asarray(x_NxD, np.float64))
    sign, value = np.linalg.slogdet(x.T @ x + ridge * np.eye(x.shape[1]))
    return float(value) if sign > 0 else -np.inf


def d_optimal_batch(trained_NxD: np.ndarray | None, cand_MxD: np.ndarray, n: int, exclude=(),
                    ridge: float = RIDGE, spacing: np.ndarray | None = None,
                    trained_spacing: np.ndarray | None = None) -> list[int]:
    """Greedy D-optimal picks: n candidates, each the one that most raises log det of the
    information matrix of the trained runs and the picks so far. Candidates that repeat an earlier
    candidate (to 6 decimals) or are in `exclude` are never picked; ties go to the first index.

    `spacing` (the candidates in a space with a metric, e.g. sqrt weights) keeps picks apart: none
    within a quarter of the candidates' median pairwise distance of an earlier pick or of a trained
    run (`trained_spacing`, the same coordinates), while any candidate that far away is left. The
    law's design alone would replicate the space's extreme points, which teaches a regressor of
    any other shape little."""
    cand = np.asarray(cand_MxD, np.float64)
    d = cand.shape[1]
    info = ridge * np.eye(d)
    if trained_NxD is not None and len(trained_NxD):
        x = np.asarray(trained_NxD, np.float64)
        info += x.T @ x
    inv = np.linalg.inv(info)
    lev = np.einsum("md,de,me->m", cand, inv, cand)
    blocked = np.ones(len(cand), bool)
    blocked[np.unique(np.round(cand, 6), axis=0, return_index=True)[1]] = False
    blocked[np.asarray(list(exclude), np.int64)] = True
    near = np.zeros(len(cand), bool)
    if spacing is not None:
        spacing = np.asarray(spacing, np.float64)
        head = spacing[:500]
        pair = np.sqrt(sq_dist(head, head)[np.triu_indices(len(head), 1)])
        min_dist2 = (0.25 * float(np.median(pair))) ** 2 if len(pair) else 0.0
        if trained_spacing is not None and len(trained_spacing):
            runs = np.asarray(trained_spacing, np.float64)
            for lo in range(0, len(spacing), 8192):
                near[lo:lo + 8192] = (sq_dist(spacing[lo:lo + 8192], runs) < min_dist2).any(1)
    picked: list[int] = []
    for _ in range(min(n, int((~blocked).sum()))):
        open_ = ~blocked & ~near
        gain = np.where(open_ if open_.any() else ~blocked, lev, -np.inf)
        j = int(np.argmax(gain))
        picked.append(j)
        blocked[j] = True
        if spacing is not None:
            near |= ((spacing - spacing[j]) ** 2).sum(1) < min_dist2
        u = inv @ cand[j]
        denom = 1.0 + float(cand[j] @ u)
        lev -= (cand @ u) ** 2 / denom
        inv -= np.outer(u, u) / denom
    return picked


def choose(models_T: list, folds_TxF: list[list] | None, weights_T: np.ndarray, cand_MxK: np.ndarray, n: int,
           best: float | None = None, explore: float = 0.0, seed: int = 0, strategy: str = "ei",
           runs_NxK: np.ndarray | None = None, design: str = DESIGNS[0], ei_share: float = EI_SHARE) -> np.ndarray:
    """Indices of n candidates to train next, for the weighted sum of the targets (lower is better).

    `models_T`: the full model per target; `folds_TxF`: the fold models (the sd of models without
    a posterior). `best`: the best measured objective (default: the lowest predicted). `strategy`:
    'ei', 'doptimal' or 'mixed' (`ei_share` of the batch by EI, at least one pick, the rest D-optimal);
    `runs_NxK`: the trained mixtures, which the D-optimal design builds on; `design`: its features,
    one of DESIGNS."""
    if n < 1:
        raise RegmixError(f"--n must be >= 1, got {n}")
    if not 0 <= explore <= 1:
        raise RegmixError(f"--explore must be a share between 0 and 1, got {explore}")
    if not 0 <= ei_share <= 1:
        raise RegmixError(f"--ei-share must be a share between 0 and 1, got {ei_share}")
    if strategy not in STRATEGIES:
        raise RegmixError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    design_features(np.ones((1, 1)), design)  # an unknown design fails before any work
    if strategy == "doptimal" and explore:
        raise RegmixError("--explore shares out an EI batch: use it with --strategy ei or mixed, not doptimal")
    if strategy != "ei" and runs_NxK is None:
        raise RegmixError("the model keeps no training mixtures (fitted by an older regmix?): refit it with "
                          "`regmix fit` for a D-optimal design")
    runs_NxK = None if runs_NxK is None else np.atleast_2d(np.asarray(runs_NxK, np.float64))
    if strategy == "doptimal":
        return np.asarray(d_optimal_batch(design_features(runs_NxK, design), design_features(cand_MxK, design), n,
                                          spacing=transform(cand_MxK), trained_spacing=transform(runs_NxK)), np.int64)
    n_ei = n if strategy == "ei" else min(n, max(1, int(np.floor(ei_share * n + 0.5))))
    picked = ei_batch(models_T, folds_TxF, weights_T, cand_MxK, n_ei, best, explore, seed)
    if strategy == "ei" or n_ei == n:
        return picked
    known = np.concatenate([runs_NxK, cand_MxK[picked]])
    rest = d_optimal_batch(design_features(known, design), design_features(cand_MxK, design), n - n_ei, exclude=picked,
                           spacing=transform(cand_MxK), trained_spacing=transform(known))
    return np.concatenate([picked, np.asarray(rest, np.int64)])


def ei_batch(models_T: list, folds_TxF: list[list] | None, weights_T: np.ndarray, cand_MxK: np.ndarray, n: int,
             best: float | None, explore: float, seed: int) -> np.ndarray:
    """Expected-improvement batch of n candidates (believer for the GP, spaced otherwise)."""
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
