"""Checks that say where an optimum should not be trusted: far from every trained run, or chosen
differently by different regressors fitted on the same sweep."""

from __future__ import annotations

import warnings

import numpy as np

FAR_TV = 0.05  # "far": more than this total-variation distance outside the convex hull of the trained runs
DISAGREE_TV = 0.2  # regressors "disagree" when their optima differ by more than this total-variation distance


def tv_distance(a_NxK: np.ndarray, b_MxK: np.ndarray) -> np.ndarray:
    """Total-variation distance (half the L1 distance, 0 to 1) between every row of a and every row of b."""
    a, b = np.atleast_2d(a_NxK), np.atleast_2d(b_MxK)
    out = np.empty((len(a), len(b)))
    for lo in range(0, len(a), 256):  # bounded memory for large tables
        out[lo : lo + 256] = 0.5 * np.abs(a[lo : lo + 256, None, :] - b[None, :, :]).sum(axis=2)
    return out


def hull_distance(w_K: np.ndarray, runs_NxK: np.ndarray) -> tuple[float, np.ndarray]:
    """Total-variation distance from `w` to the convex hull of the runs (0 inside it), and the mixing
    weights of the runs at the closest hull point. A linear program: min |w - runs' lambda|_1 over
    lambda >= 0, sum lambda = 1."""
    from scipy.optimize import linprog

    runs = np.asarray(runs_NxK, np.float64)
    n, k = runs.shape
    # variables: lambda (n), positive and negative parts of the residual (k each)
    cost = np.concatenate([np.zeros(n), np.ones(2 * k)])
    eq = np.zeros((k + 1, n + 2 * k))
    eq[:k, :n] = runs.T
    eq[:k, n : n + k] = np.eye(k)
    eq[:k, n + k :] = -np.eye(k)
    eq[k, :n] = 1.0
    rhs = np.concatenate([np.asarray(w_K, np.float64), [1.0]])
    res = linprog(cost, A_eq=eq, b_eq=rhs, bounds=(0, None), method="highs")
    if res.status != 0:
        return float("nan"), np.zeros(n)
    return 0.5 * float(res.fun), res.x[:n]


def nearest_run(w_K: np.ndarray, runs_NxK: np.ndarray) -> tuple[int, float]:
    d = tv_distance(w_K[None, :], runs_NxK)[0]
    i = int(np.argmin(d))
    return i, float(d[i])


def warn_if_far_from_runs(w_K: np.ndarray, runs_NxK: np.ndarray, ids, domains) -> dict:
    """Warn where the chosen mixture lies outside the region the trained runs cover (their convex hull, by more
    than FAR_TV): the regressor extrapolates there. Returns the figures (also written to mixture.json).

    Distance to the nearest single run is no guide: on a sweep of sparse mixtures the runs' own mean lies far
    from each of them and is still where the regressor knows most."""
    w = np.asarray(w_K, np.float64)
    runs = np.asarray(runs_NxK, np.float64)
    d, _ = hull_distance(w, runs)
    i, nearest = nearest_run(w, runs)
    far = bool(np.isfinite(d) and d > FAR_TV)
    if far:
        beyond = [f"{domains[j]} {w[j]:.3f} (runs reach {runs[:, j].max():.3f})" for j in np.argsort(runs.max(axis=0) - w)
                  if w[j] > runs[:, j].max() + 1e-9][:3]
        where = f"; beyond every run in {', '.join(beyond)}" if beyond else ""
        warnings.warn(f"the chosen mixture lies outside the trained runs: total-variation distance {d:.3f} from "
                      f"every mix of them (nearest run {ids[i]} at {nearest:.3f}){where}; the regressor extrapolates "
                      "there: train a proxy on it, sweep around it, or use --kl to stay near the runs")
    return {"hull_distance": round(d, 6), "nearest_run": str(ids[i]), "nearest_distance": round(nearest, 6), "far": far}


def compare_optima(optima: dict[str, np.ndarray]) -> tuple[np.ndarray, float, tuple[str, str]]:
    """Pairwise total-variation distances between the optima of several regressors, the largest of them
    and the pair that gives it; warns where that largest distance exceeds DISAGREE_TV."""
    names = list(optima)
    w = np.stack([np.asarray(optima[n], np.float64) for n in names])
    d = tv_distance(w, w)
    i, j = np.unravel_index(int(np.argmax(d)), d.shape)
    worst = float(d[i, j])
    if worst > DISAGREE_TV:
        warnings.warn(f"the regressors disagree: the optima of {names[i]} and {names[j]} differ by total-variation "
                      f"distance {worst:.2f} (over {DISAGREE_TV}); the sweep does not pin the mixture down; "
                      "sweep more proxies, or train proxies on both optima")
    return d, worst, (names[i], names[j])
