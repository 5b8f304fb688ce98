"""Calibrated prediction intervals: split-conformal on the out-of-fold residuals of `regmix fit`.

Each run's nonconformity score is its out-of-fold |residual|, divided by the fold model's
predictive standard deviation where the model has one (the Gaussian process), so intervals widen
away from the runs. The interval at a new mixture is prediction +- q * scale, q the conformal
quantile of the scores (the ceil((n+1) level)-th smallest), scale the full model's sd or 1. Out of
fold on the embedded table this covers close to the nominal share of held-out runs
(benchmarks/learning_curve.py --coverage).
"""

from __future__ import annotations

import math

import numpy as np

from regmix.errors import RegmixError


def has_sd(model) -> bool:
    return hasattr(model, "predict_sd")


def predict_scale(model, w_NxK: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and the scale its nonconformity score is measured in (sd, or 1)."""
    if has_sd(model):
        return model.predict_sd(w_NxK)
    return model.predict(w_NxK), np.ones(len(w_NxK))


def nonconformity(y_N: np.ndarray, pred_N: np.ndarray, scale_N: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(y_N) - np.asarray(pred_N)) / np.maximum(scale_N, 1e-12)


def conformal_quantile(scores_N: np.ndarray, level: float) -> float:
    if not 0 < level < 1:
        raise RegmixError(f"--interval must be a coverage between 0 and 1 (e.g. 0.8), got {level}")
    s = np.sort(np.asarray(scores_N, np.float64))
    if len(s) == 0:
        raise RegmixError("the model has no out-of-fold residuals to calibrate an interval")
    rank = min(len(s), math.ceil((len(s) + 1) * level))
    return float(s[rank - 1])
