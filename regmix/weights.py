"""Mixture weights as files show them."""

from __future__ import annotations

import numpy as np


def tidy_weights(w_NxK: np.ndarray, decimals: int = 6) -> np.ndarray:
    """Weights for files: rows rounded to `decimals` places that still sum to exactly 1 on that grid
    (largest remainder: floor every weight, then give the missing units to the largest fractions),
    so a file shows 0.17942, not 0.17941999999999989."""
    w = np.atleast_2d(np.asarray(w_NxK, np.float64))
    units = 10 ** decimals
    scaled = w / w.sum(axis=1, keepdims=True) * units
    base = np.floor(scaled + 1e-9)
    short = (units - base.sum(axis=1)).astype(np.int64)
    order = np.argsort(-(scaled - base), axis=1, kind="stable")
    rank = np.argsort(order, axis=1, kind="stable")
    base += rank < short[:, None]
    out = np.round(base / units, decimals)
    return out if np.ndim(w_NxK) == 2 else out[0]
