"""Stacking: a non-negative linear blend of regressors, its weights learned out of fold.

Each member (by default the Gaussian process, LightGBM on transformed features and the log-linear
law) is fitted K times on the training rows less one inner fold and predicts that fold;
non-negative least squares of the centred targets on these out-of-fold predictions gives the blend
weights (plus an intercept), so a member earns weight only by what it adds on runs it did not see.
The members are then refitted on every training row.

On the RegMix table (benchmarks/learning_curve.py) the blend ranks a little better than the GP
alone at 32-512 runs (Spearman +0.001 to +0.004, better on every paired subset at 64, 128 and 512)
with about the same top-1 regret, at 6-20x the fitting time and without the GP's predictive sd, so
the GP stays `regmix fit`'s default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from regmix.errors import RegmixError
from regmix.regress.checks import _finite, _finite_list

# LightGBM on the transformed features rather than the raw weights: the blend ranked better with it at
# 16-256 runs on the RegMix table (e.g. top-1 regret 0.027 vs 0.042 at 128 runs).
MEMBERS = ("gp", "lightgbm-features", "loglinear")


def blend_weights(p_NxM: np.ndarray, y_N: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative weights and an intercept minimising the squared error of p @ weights + b."""
    mu_p, mu_y = p_NxM.mean(0), float(y_N.mean())
    coef, _ = nnls(p_NxM - mu_p, y_N - mu_y)
    if not np.any(coef > 0):  # no member tracks the target: fall back to their mean
        coef = np.full(p_NxM.shape[1], 1.0 / p_NxM.shape[1])
    return coef, float(mu_y - mu_p @ coef)


class StackModel:
    kind = "stack"
    inner_folds = 5
    member_kinds = MEMBERS  # benchmarks/learning_curve.py --stack-members measures other sets
    # regress/models.py sets these to its make_model and load_model (the registry of kinds holds
    # this class, so this module cannot import it)
    make_member = None
    load_member = None

    def __init__(self, members=None, weights_M=None, intercept: float = 0.0):
        self.members = members
        self.weights_M = None if weights_M is None else np.asarray(weights_M, np.float64)
        self.intercept = float(intercept)

    def fit(self, w_NxK, y_N, seed: int = 0) -> "StackModel":
        make_model = type(self).make_member
        w_NxK, y_N = np.asarray(w_NxK, np.float64), np.asarray(y_N, np.float64)
        n = len(y_N)
        folds = max(2, min(self.inner_folds, n // 4))
        fold_N = np.random.default_rng(seed + 104_729).permutation(n) % folds
        oof_NxM = np.zeros((n, len(self.member_kinds)))
        for f in range(folds):
            train, test = fold_N != f, fold_N == f
            for j, kind in enumerate(self.member_kinds):
                oof_NxM[test, j] = make_model(kind).fit(w_NxK[train], y_N[train], seed + f).predict(w_NxK[test])
        self.weights_M, self.intercept = blend_weights(oof_NxM, y_N)
        self.members = [make_model(kind).fit(w_NxK, y_N, seed) for kind in self.member_kinds]
        return self

    screens = True  # predict(screen=True): each member's own cheaper first-pass estimate

    def predict(self, w_NxK, screen: bool = False) -> np.ndarray:
        out = np.full(len(w_NxK), self.intercept)
        for wt, m in zip(self.weights_M, self.members):
            if wt > 0:  # a member with no weight is not evaluated
                out += wt * (m.predict(w_NxK, screen=True) if screen and getattr(m, "screens", False) else m.predict(w_NxK))
        return out

    def save(self, directory: Path, stem: str) -> dict:
        return {"kind": self.kind, "weights": self.weights_M.tolist(), "intercept": self.intercept,
                "members": [m.save(directory, f"{stem}.m{i}") for i, m in enumerate(self.members)]}

    @classmethod
    def load(cls, directory: Path, meta: dict, n_features: int | None = None) -> "StackModel":
        load_model = cls.load_member
        where = directory / "model.json"
        members = meta["members"]
        if not isinstance(members, list) or not members:
            raise RegmixError(f"{where}: a stack model has no members")
        weights = _finite_list(where, "weights", meta["weights"], None)
        if len(weights) != len(members) or min(weights) < 0:
            raise RegmixError(f"{where}: field 'weights' of a stack model must be one non-negative number per member")
        if any(isinstance(m, dict) and m.get("kind") == cls.kind for m in members):
            raise RegmixError(f"{where}: a stack model cannot hold another stack")
        return cls([load_model(directory, m, n_features) for m in members], weights,
                   _finite(where, "intercept", meta["intercept"]))
