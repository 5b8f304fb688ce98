"""Checks of numbers read from a model.json: finite, and as many as the model needs."""

from __future__ import annotations

import math
from pathlib import Path

from regmix.errors import RegmixError


def _finite(where: Path, field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RegmixError(f"{where}: field '{field}' must be a finite number, got {str(value)[:40]!r}")
    return float(value)


def _finite_list(where: Path, field: str, values, n: int | None) -> list[float]:
    if not isinstance(values, list):
        raise RegmixError(f"{where}: field '{field}' must be a list of numbers")
    if n is not None and len(values) != n:
        raise RegmixError(f"{where}: field '{field}' has {len(values)} numbers, the model has {n} domains")
    return [_finite(where, field, v) for v in values]
