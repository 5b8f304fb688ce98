"""Sweep tables: mixtures (run id, domain weights) and metrics (run id, measured values), joined on id.

Formats read: CSV and parquet. The id column is `run` or `run_id` when present (Olmix's
`ratios.csv`/`metrics.csv`), else the first column (RegMix's `index`). Metadata columns such as
`name` or `index` are neither domains nor metrics. A common prefix of the domain columns
(`train_the_pile_`) is stripped for display and for matching domains by name.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from regmix.errors import RegmixError
from regmix.files import replacing

ID_COLUMNS = ("run", "run_id")
METADATA_COLUMNS = {"index", "name", "run_name", "label", "group", "seed", "step", "status", "wandb_id", "path"}
SUM_TOLERANCE = 1e-2


@dataclass(frozen=True, eq=False)
class MixtureTable:
    path: str
    id_column: str
    ids: np.ndarray  # (N,) str
    columns: tuple[str, ...]  # raw domain column names
    domains: tuple[str, ...]  # display names (common prefix stripped)
    w_NxK: np.ndarray

    def subset(self, rows: np.ndarray) -> "MixtureTable":
        return MixtureTable(self.path, self.id_column, self.ids[rows], self.columns, self.domains, self.w_NxK[rows])


@dataclass(frozen=True, eq=False)
class MetricTable:
    path: str
    id_column: str
    ids: np.ndarray  # (N,) str
    columns: tuple[str, ...]
    values_NxT: np.ndarray

    def column(self, name: str) -> np.ndarray:
        return self.values_NxT[:, self.columns.index(name)]

    def subset(self, rows: np.ndarray) -> "MetricTable":
        return MetricTable(self.path, self.id_column, self.ids[rows], self.columns, self.values_NxT[rows])


# -- embedded data ---------------------------------------------------------------------------------
def embedded_tables() -> tuple[Path, Path]:
    """Paths of RegMix's released 1M-proxy sweep on the Pile (512 runs, 17 domains, MIT)."""
    root = Path(str(resources.files("regmix") / "data" / "regmix_pile"))
    return root / "train_mixture_1m.csv", root / "train_pile_loss_1m.csv"


EMBEDDED_TARGET = "metric/the_pile_pile_cc_val_loss"


# -- reading ---------------------------------------------------------------------------------------
def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a CSV or parquet table with every cell as text (parsing is checked per cell later)."""
    path = Path(path)
    if not path.exists():
        raise RegmixError(f"{path}: file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            frame = frame.astype(object).where(frame.notna(), None)
            frame = frame.map(lambda v: None if v is None else str(v))
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
            header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False,
                                 skipinitialspace=True).iloc[0].str.strip()
            dup = header[header.duplicated()].unique()
            if len(dup):
                raise RegmixError(f"{path}: duplicate column name(s): {_few(dup)}")
            if (header == "").any():
                raise RegmixError(f"{path}: column {int(np.flatnonzero(header == '')[0]) + 1} has an empty name")
    except pd.errors.EmptyDataError:
        raise RegmixError(f"{path}: empty table (no header)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RegmixError(f"{path}: cannot parse table: {first}") from None
    if frame.shape[1] < 2:
        raise RegmixError(f"{path}: need an id column and at least one value column, found {frame.shape[1]} column(s)")
    if len(frame) == 0:
        raise RegmixError(f"{path}: empty table (header only, no rows)")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _id_column(frame: pd.DataFrame) -> str:
    for name in ID_COLUMNS:
        if name in frame.columns:
            return name
    return frame.columns[0]


def _ids(frame: pd.DataFrame, id_col: str, path: Path) -> np.ndarray:
    ids = frame[id_col].astype(str).str.strip()
    if (ids == "").any():
        row = int(np.flatnonzero((ids == "").to_numpy())[0]) + 2
        raise RegmixError(f"{path}: line {row}: empty run id in column '{id_col}'")
    dup = ids[ids.duplicated()].unique()
    if len(dup):
        raise RegmixError(f"{path}: duplicate run ids in column '{id_col}': {_few(dup)}")
    return ids.to_numpy(dtype=str)


def _numeric(frame: pd.DataFrame, columns: list[str], ids: np.ndarray, path: Path, id_col: str) -> np.ndarray:
    """Parse columns as floats; a non-empty cell that is not a number is an error naming it."""
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, col in enumerate(columns):
        raw = frame[col].astype(str).str.strip()
        missing = raw.str.lower().isin(["", "nan", "none", "null", "na"])
        values = pd.to_numeric(raw.where(~missing, "nan"), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values) & ~missing.to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise RegmixError(f"{path}: {id_col} {ids[i]}, column '{col}': not a number: {raw.iloc[i][:60]!r}")
        out[:, j] = values
    return out


def _value_columns(frame: pd.DataFrame, id_col: str) -> list[str]:
    return [c for c in frame.columns if c != id_col and c.lower() not in METADATA_COLUMNS]


def common_prefix(names) -> str:
    """The shared prefix of the names, cut back to its last separator (`_`, `/`, `.`, `:`)."""
    names = list(names)
    if len(names) < 2:
        return ""
    prefix = os.path.commonprefix(names)
    cut = max(prefix.rfind(ch) for ch in "_/.:")
    return prefix[: cut + 1] if cut >= 0 else ""


def display_names(columns) -> tuple[str, ...]:
    prefix = common_prefix(columns)
    return tuple(c[len(prefix):] for c in columns)


def _read_numeric_table(path: Path, what: str) -> tuple[str, np.ndarray, list[str], np.ndarray]:
    """Id column, ids, value column names and parsed values of a table."""
    frame = read_frame(path)
    id_col = _id_column(frame)
    ids = _ids(frame, id_col, path)
    columns = _value_columns(frame, id_col)
    if not columns:
        raise RegmixError(f"{path}: no {what} columns besides the id column '{id_col}'")
    return id_col, ids, columns, _numeric(frame, columns, ids, path, id_col)


def load_mixtures(path: str | Path, tolerance: float = SUM_TOLERANCE, renormalize: bool = False) -> MixtureTable:
    """Read a mixtures table and check every row: no negative or NaN weights, sum 1 within tolerance
    (rows inside it are renormalised; with `renormalize` every positive row is)."""
    path = Path(path)
    id_col, ids, columns, w = _read_numeric_table(path, "domain")
    nan_rows, nan_cols = np.nonzero(~np.isfinite(w))
    if len(nan_rows):
        i, j = nan_rows[0], nan_cols[0]
        what = "is missing or NaN" if np.isnan(w[i, j]) else "is infinite"
        raise RegmixError(f"{path}: {id_col} {ids[i]}, column '{columns[j]}': weight {what}")
    neg_rows, neg_cols = np.nonzero(w < 0)
    if len(neg_rows):
        i, j = neg_rows[0], neg_cols[0]
        raise RegmixError(f"{path}: {id_col} {ids[i]}, column '{columns[j]}': negative weight {w[i, j]:g}")
    with np.errstate(over="ignore"):
        sums = w.sum(axis=1)
    if not np.all(np.isfinite(sums)):
        i = int(np.flatnonzero(~np.isfinite(sums))[0])
        raise RegmixError(f"{path}: {id_col} {ids[i]}: weights sum to infinity")
    if np.any(sums <= 0):
        i = int(np.flatnonzero(sums <= 0)[0])
        raise RegmixError(f"{path}: {id_col} {ids[i]}: weights sum to 0")
    off = np.abs(sums - 1.0) > tolerance
    if off.any() and not renormalize:
        i = int(np.flatnonzero(off)[0])
        raise RegmixError(
            f"{path}: {id_col} {ids[i]}: weights sum to {sums[i]:.6g}, not 1 within {tolerance:g} "
            f"({int(off.sum())} such row(s); pass --renormalize to rescale them)"
        )
    w = w / sums[:, None]
    return MixtureTable(str(path), id_col, ids, tuple(columns), display_names(columns), w)


def load_metrics(path: str | Path) -> MetricTable:
    path = Path(path)
    id_col, ids, columns, values = _read_numeric_table(path, "metric")
    values[~np.isfinite(values)] = np.nan  # inf loss = diverged run
    return MetricTable(str(path), id_col, ids, tuple(columns), values)


def join(mixtures: MixtureTable, metrics: MetricTable) -> tuple[MixtureTable, MetricTable]:
    """Align both tables on run id; ids present in only one of them are an error listing a few."""
    only_mix = np.setdiff1d(mixtures.ids, metrics.ids)
    only_met = np.setdiff1d(metrics.ids, mixtures.ids)
    if len(only_mix) or len(only_met):
        parts = []
        if len(only_mix):
            parts.append(f"{len(only_mix)} id(s) in {mixtures.path} but not in {metrics.path}: {_few(only_mix)}")
        if len(only_met):
            parts.append(f"{len(only_met)} id(s) in {metrics.path} but not in {mixtures.path}: {_few(only_met)}")
        raise RegmixError("; ".join(parts))
    order = {run: i for i, run in enumerate(metrics.ids)}
    rows = np.array([order[r] for r in mixtures.ids], dtype=np.int64)
    return mixtures, metrics.subset(rows)


def resolve_target(name: str, columns, where: str = "metrics") -> str:
    """A target named by its full column name, its prefix-stripped name, or an unambiguous part."""
    columns = list(columns)
    if name in columns:
        return name
    short = dict(zip(display_names(columns), columns))
    if name in short:
        return short[name]
    matches = [c for c in columns if name.lower() in c.lower()]
    if len(matches) == 1:
        return matches[0]
    # Prefer whole-word matches (`pile_cc` over `pile_cc_extra`) before calling it ambiguous.
    pattern = re.compile(rf"(^|[^a-z0-9]){re.escape(name.lower())}([^a-z0-9]|$)")
    exact = [c for c in matches if pattern.search(c.lower())]
    if len(exact) == 1:
        return exact[0]
    if not matches:
        raise RegmixError(f"{where}: unknown target '{name}' (choices: {_few(columns, 20)})")
    raise RegmixError(f"{where}: ambiguous target '{name}' matches {_few(matches, 20)}")


def load_sweep(
    mixtures_path: str | Path | None,
    metrics_path: str | Path | None,
    targets: list[str],
    renormalize: bool = False,
) -> tuple[MixtureTable, np.ndarray, list[str]]:
    """Load and join a sweep; returns the mixtures, `y_NxT` for the resolved targets and their names.

    Without paths the embedded RegMix table is used. Runs whose target is NaN (diverged) are
    dropped with a warning that counts them."""
    if (mixtures_path is None) != (metrics_path is None):
        raise RegmixError("give both --mixtures and --metrics, or neither for the embedded RegMix table")
    if mixtures_path is None:
        mixtures_path, metrics_path = embedded_tables()
    mix = load_mixtures(mixtures_path, renormalize=renormalize)
    met = load_metrics(metrics_path)
    mix, met = join(mix, met)
    names = [resolve_target(t, met.columns, str(metrics_path)) for t in targets]
    y = np.stack([met.column(n) for n in names], axis=1)
    bad = np.isnan(y).any(axis=1)
    if bad.any():
        warnings.warn(f"{metrics_path}: {int(bad.sum())} run(s) with a NaN target (diverged?) excluded from the fit")
        mix = mix.subset(np.flatnonzero(~bad))
        y = y[~bad]
    if len(y) < 4:
        raise RegmixError(f"{metrics_path}: only {len(y)} usable run(s); need at least 4 to fit")
    return mix, y, names


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """Write CSV or parquet atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    with replacing(path) as tmp:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)


def _few(values, k: int = 5) -> str:
    values = [str(v) for v in values]
    more = f", ... ({len(values)} in all)" if len(values) > k else ""
    return ", ".join(values[:k]) + more
