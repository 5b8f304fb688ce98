"""Fit a regressor on a sweep with honest, out-of-fold scores, and save/load it without pickle.

K-fold cross-validation: each fold's model is trained on the other folds only (its own early
stopping and round counts are chosen inside those rows), and predicts the held-out fold. The fold
models are kept: their spread at a mixture is the uncertainty `regmix optimize` reports. The final
model is refitted on every run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from regmix.errors import RegmixError
from regmix.regress.checks import _finite_list
from regmix.regress.interval import conformal_quantile, nonconformity, predict_scale
from regmix.regress.metrics import score
from regmix.regress.models import load_model, make_model
from regmix.tables import MixtureTable, write_table

FORMAT = 1


@dataclass(frozen=True)
class FitConfig:
    """How a regressor is fitted (`regmix fit` and the pipeline's fit stage)."""

    # One of regmix.regress.kinds.MODEL_KINDS. The GP ranks best out of sample on the RegMix table
    # at 64, 128 and 512 runs (benchmarks/learning_curve.py) of the single models; `stack` ranks a
    # little better still (Spearman +0.001-0.004) with no better top-1 regret, at 6-20x the fitting
    # time and without the GP's predictive sd (intervals, `regmix suggest`).
    kind: str = "gp"
    folds: int = 5  # out-of-fold scores from k-fold cross-validation
    seed: int = 0


@dataclass(eq=False)
class FittedModel:
    kind: str
    targets: list[str]
    domains: tuple[str, ...]
    columns: tuple[str, ...]
    prior_K: np.ndarray  # centre of the runs (mean training mixture): where the regressor is trusted
    full: list  # per target
    folds: list[list]  # per target, per fold
    cv: dict[str, dict[str, float]] = field(default_factory=dict)
    n_runs: int = 0
    seed: int = 0
    calibration: dict[str, list[float]] = field(default_factory=dict)  # per target: out-of-fold scores
    runs_NxK: np.ndarray | None = None  # the training mixtures, for "far from every run" (None in older files)
    run_ids: tuple[str, ...] = ()

    def interval(self, w_NxK: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prediction `y_NxT` and a conformal interval (lower, upper) that should hold a new run's
        target with probability `level` (see regress/interval.py)."""
        missing = [t for t in self.targets if t not in self.calibration]
        if missing:
            raise RegmixError(f"the model has no out-of-fold residuals for {missing[0]} (fitted by an older "
                              "regmix?): refit it with `regmix fit` to get intervals")
        pred, lower, upper = [], [], []
        for t, name in enumerate(self.targets):
            mean, scale = predict_scale(self.full[t], w_NxK)
            half = conformal_quantile(self.calibration[name], level) * scale
            pred.append(mean), lower.append(mean - half), upper.append(mean + half)
        return np.stack(pred, 1), np.stack(lower, 1), np.stack(upper, 1)

    def predict(self, w_NxK: np.ndarray, screen: bool = False) -> np.ndarray:
        """Predicted targets `y_NxT` of the full models (`screen`: a cheaper first-pass estimate
        where the model has one, e.g. one booster of a LightGBM bag)."""
        if screen:
            return np.stack([m.predict(w_NxK, screen=True) if getattr(m, "screens", False) else m.predict(w_NxK) for m in self.full], axis=1)
        return np.stack([m.predict(w_NxK) for m in self.full], axis=1)

    def predict_folds(self, w_NxK: np.ndarray) -> np.ndarray:
        """Predictions of every fold model, `y_FxNxT`."""
        n_folds = len(self.folds[0])
        return np.stack(
            [np.stack([self.folds[t][f].predict(w_NxK) for t in range(len(self.targets))], axis=1) for f in range(n_folds)]
        )

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        # a fresh, uniquely named folder of this call's own: never a user's OUT.partial, never another fit's
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".partial"))
        try:
            self._save_into(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _save_into(self, tmp: Path, directory: Path) -> None:
        meta = {
            "format": FORMAT,
            "kind": self.kind,
            "targets": self.targets,
            "domains": list(self.domains),
            "columns": list(self.columns),
            "prior": self.prior_K.tolist(),
            "cv": self.cv,
            "n_runs": self.n_runs,
            "seed": self.seed,
            "calibration": self.calibration,
            "runs": None if self.runs_NxK is None else np.round(self.runs_NxK, 8).tolist(),
            "run_ids": list(self.run_ids),
            "full": [m.save(tmp, f"t{t}.full") for t, m in enumerate(self.full)],
            "folds": [[m.save(tmp, f"t{t}.fold{f}") for f, m in enumerate(ms)] for t, ms in enumerate(self.folds)],
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=1))
        if directory.exists():
            stale = [p for p in directory.iterdir() if p.name == "model.json" or p.name.endswith(".lgb.txt")]
            for p in stale:
                p.unlink()
        directory.mkdir(parents=True, exist_ok=True)
        for p in tmp.iterdir():
            p.replace(directory / p.name)

    @classmethod
    def load(cls, directory: str | Path) -> "FittedModel":
        directory = Path(directory)
        path = directory / "model.json"
        if not path.exists():
            raise RegmixError(f"{directory}: no model.json (not a model written by `regmix fit`)")
        try:
            meta = json.loads(path.read_text())
            if meta.get("format") != FORMAT:
                raise RegmixError(f"{path}: unsupported model format {meta.get('format')!r}")
            n = len(meta["columns"])
            if not meta["targets"] or not all(isinstance(t, str) and t for t in meta["targets"]):
                raise RegmixError(f"{path}: field 'targets' must be a non-empty list of names")
            if len(meta["full"]) != len(meta["targets"]) or n != len(meta["domains"]) or n == 0:
                raise RegmixError(f"{path}: fields 'targets', 'full', 'domains' and 'columns' do not agree")
            return cls(
                kind=meta["kind"],
                targets=list(meta["targets"]),
                domains=tuple(meta["domains"]),
                columns=tuple(meta["columns"]),
                prior_K=np.asarray(meta["prior"], np.float64),
                full=[load_model(directory, m, n) for m in meta["full"]],
                folds=[[load_model(directory, m, n) for m in ms] for ms in meta["folds"]],
                cv=meta.get("cv", {}),
                n_runs=meta.get("n_runs", 0),
                seed=meta.get("seed", 0),
                calibration=_calibration(path, meta.get("calibration", {}), meta["targets"]),
                **_runs(path, meta.get("runs"), meta.get("run_ids", []), n),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise RegmixError(f"{path}: corrupt model file ({type(err).__name__}: {err})") from None
        except Exception as err:  # a LightGBM text file that fails to parse
            if isinstance(err, RegmixError):
                raise
            raise RegmixError(f"{directory}: cannot load model: {str(err).splitlines()[0]}") from None


def _runs(where: Path, runs, ids, k: int) -> dict:
    """The training mixtures a model.json keeps (optional: files from older versions have none)."""
    if runs is None:
        return {}
    if not isinstance(runs, list) or not isinstance(ids, list) or len(ids) != len(runs) or not runs:
        raise RegmixError(f"{where}: fields 'runs' and 'run_ids' must be lists of the same, non-zero length")
    rows = np.array([_finite_list(where, "runs", r, k) for r in runs], np.float64)
    if (rows < 0).any():
        raise RegmixError(f"{where}: field 'runs' holds a negative weight")
    return {"runs_NxK": rows, "run_ids": tuple(str(i)[:200] for i in ids)}


def _calibration(where: Path, value, targets: list[str]) -> dict[str, list[float]]:
    if not isinstance(value, dict) or not set(value) <= set(targets):
        raise RegmixError(f"{where}: field 'calibration' must map target names to lists of residual scores")
    out = {}
    for name, scores in value.items():
        scores = _finite_list(where, "calibration", scores, None)
        if not scores or min(scores) < 0:
            raise RegmixError(f"{where}: field 'calibration' of {name!r} must be a non-empty list of numbers >= 0")
        out[name] = scores
    return out


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """Balanced random fold assignment of n rows."""
    if folds < 2 or folds > n:
        raise RegmixError(f"--folds must be between 2 and the number of runs ({n}), got {folds}")
    return np.random.default_rng(seed).permutation(n) % folds


RUNS_PER_DOMAIN = 4  # on the RegMix table, 64 runs over 17 domains (3.8 per domain) rank at Spearman 0.94
WEAK_SPEARMAN = 0.6


def warn_if_untrustworthy(cv: dict[str, dict], n_runs: int, n_domains: int) -> None:
    """Say so where the fit should not be trusted to pick a mixture: few runs, or a weak ranking."""
    want = RUNS_PER_DOMAIN * n_domains
    if n_runs < want:
        warnings.warn(f"{n_runs} runs for {n_domains} domains: rankings are unreliable under about {want} "
                      f"({RUNS_PER_DOMAIN} per domain); sweep more proxies before trusting the optimum")
    for name, s in cv.items():
        if np.isfinite(s["spearman"]) and s["spearman"] < WEAK_SPEARMAN:
            warnings.warn(f"{name}: out-of-fold Spearman {s['spearman']:.2f} is weak (under {WEAK_SPEARMAN}): "
                          "the regressor ranks mixtures little better than chance here")


def fit_sweep(
    mixtures: MixtureTable,
    y_NxT: np.ndarray,
    targets: list[str],
    kind: str = FitConfig.kind,
    folds: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> tuple[FittedModel, pd.DataFrame]:
    """Cross-validate and fit one model per target; returns the model and out-of-fold predictions."""
    make_model(kind)  # unknown kind fails before any work
    w = mixtures.w_NxK
    n = len(w)
    fold_N = fold_ids(n, folds, seed)
    oof = np.zeros_like(y_NxT)
    scores = np.zeros_like(y_NxT)
    fold_models: list[list] = [[] for _ in targets]
    full = []
    steps = len(targets) * (folds + 1)
    with tqdm(total=steps, desc=f"fit {kind}", unit="model", disable=not progress, leave=False) as bar:
        for t in range(len(targets)):
            y = y_NxT[:, t]
            for f in range(folds):
                train, test = fold_N != f, fold_N == f
                model = make_model(kind).fit(w[train], y[train], seed + f)
                oof[test, t], scale = predict_scale(model, w[test])
                scores[test, t] = nonconformity(y[test], oof[test, t], scale)
                fold_models[t].append(model)
                bar.update()
            full.append(make_model(kind).fit(w, y, seed))
            bar.update()
    cv = {name: score(y_NxT[:, t], oof[:, t]) for t, name in enumerate(targets)}
    warn_if_untrustworthy(cv, len(y_NxT), len(mixtures.domains))
    fitted = FittedModel(
        kind=kind,
        targets=list(targets),
        domains=mixtures.domains,
        columns=mixtures.columns,
        prior_K=w.mean(axis=0),
        full=full,
        folds=fold_models,
        cv=cv,
        n_runs=n,
        seed=seed,
        calibration={name: scores[:, t].tolist() for t, name in enumerate(targets)},
        runs_NxK=w.copy(),
        run_ids=tuple(str(i) for i in mixtures.ids),
    )
    table = pd.DataFrame({mixtures.id_column: mixtures.ids, "fold": fold_N})
    for t, name in enumerate(targets):
        table[name] = y_NxT[:, t]
        table[f"{name}:oof"] = oof[:, t]
    return fitted, table


def save_fit(model: FittedModel, oof_table: pd.DataFrame, directory: str | Path) -> None:
    model.save(directory)
    write_table(oof_table, Path(directory) / "cv_predictions.csv")


def align_columns(model: FittedModel, table: MixtureTable) -> np.ndarray:
    """The table's weights in the model's domain order, matched by name (raw or prefix-stripped).

    A domain the model knows but the table lacks is an error; a domain the table has but the model
    does not know must carry zero weight everywhere."""
    by_name = {}
    for j, (raw, short) in enumerate(zip(table.columns, table.domains)):
        by_name.setdefault(raw, j)
        by_name.setdefault(short, j)
    idx = []
    for raw, short in zip(model.columns, model.domains):
        j = by_name.get(raw, by_name.get(short))
        if j is None:
            raise RegmixError(f"{table.path}: no column for domain '{short}' that the model was fitted on")
        idx.append(j)
    extra = sorted(set(range(len(table.columns))) - set(idx))
    for j in extra:
        nonzero = np.flatnonzero(table.w_NxK[:, j] > 0)
        if len(nonzero):
            raise RegmixError(
                f"{table.path}: {table.id_column} {table.ids[nonzero[0]]}: column '{table.columns[j]}' "
                "is a domain the model does not know, with non-zero weight"
            )
    return table.w_NxK[:, idx]
