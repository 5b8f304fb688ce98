"""Agreement between predictions and measurements: Spearman rho, Pearson r, MAE, MSE."""

from __future__ import annotations

import numpy as np
from scipy import stats


def score(y_true_N: np.ndarray, y_pred_N: np.ndarray) -> dict[str, float]:
    y_true_N = np.asarray(y_true_N, np.float64)
    y_pred_N = np.asarray(y_pred_N, np.float64)
    err = y_pred_N - y_true_N
    constant = np.ptp(y_true_N) == 0 or np.ptp(y_pred_N) == 0
    return {
        "spearman": float("nan") if constant else float(stats.spearmanr(y_true_N, y_pred_N).statistic),
        "pearson": float("nan") if constant else float(np.corrcoef(y_true_N, y_pred_N)[0, 1]),
        "mae": float(np.mean(np.abs(err))),
        "mse": float(np.mean(err**2)),
        "n_runs": int(len(y_true_N)),
    }
