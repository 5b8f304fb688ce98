"""Regressors from mixture weights `w_NxK` to one target `y_N`.

Each model: `fit(w_NxK, y_N, seed)`, `predict(w_NxK)`, and a pickle-free `save(dir, stem)` /
`load(dir, stem, meta)` (JSON for parameters; LightGBM's own text format for trees).
- `lightgbm`: gradient-boosted trees; leaf sizes scale with the number of runs, and the number of
  boosting rounds is chosen by an inner cross-validation on the training rows only.
- `linear`: ridge regression on the weights (penalty chosen by inner leave-fold-out error).
- `mixing-law`: the exp-of-linear law of Data Mixing Laws, L(w) = c + k * exp(t . w).
- `ensemble`: the mean of the three.
- `gp`: a Gaussian process on sqrt(w) (regress/gp.py).
- `loglinear`: L = c + exp(b + t . w) with a Huber loss (regress/loglinear.py).
- `lightgbm-features`: LightGBM on log weights, presence indicators, the number of domains
  present and the entropy (`mixture_features`).
- `stack`: a non-negative blend of gp, lightgbm-features and loglinear learned out of fold
  (regress/stack.py).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lightgbm as lgb
import numpy as np
from scipy.optimize import least_squares

from regmix.errors import RegmixError

from regmix.regress.checks import _finite, _finite_list  # noqa: F401 (also used by the fuzz suite)
from regmix.regress.kinds import MODEL_KINDS
from regmix.regress.compiled import compiled_predictor
from regmix.regress.gp import GPModel
from regmix.regress.loglinear import LogLinearModel
from regmix.regress.stack import StackModel
from regmix.regress.treecheck import validate_tree_file


def lightgbm_params(n: int, seed: int, threads: int = 1) -> dict:
    """LightGBM settings adapted to `n` training runs (the default min_data_in_leaf=20 cannot split
    32 runs at all). One thread: on a few hundred rows OpenMP's spinning costs more than it gives."""
    return {
        "objective": "regression",
        "learning_rate": 0.1,
        "num_leaves": int(min(31, max(4, n // 8))),
        "min_data_in_leaf": int(max(2, min(20, n // 16))),
        "min_data_in_bin": 1,
        "feature_fraction": 0.7,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "lambda_l2": 1e-3,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": threads,
        "verbosity": -1,
    }


class LightGBMModel:
    """A small bag of boosters (seeds differ) averaged; rounds picked by inner CV on training rows."""

    kind = "lightgbm"
    screens = True  # predict(screen=True) is a cheaper first-pass estimate
    max_rounds = 3000
    patience = 30
    bag = 3

    def __init__(self, boosters: list[lgb.Booster] | None = None, rounds: int | None = None):
        self.boosters = boosters or []
        self.rounds = rounds
        self._compiled = None

    def fit(self, w_NxK: np.ndarray, y_N: np.ndarray, seed: int = 0) -> "LightGBMModel":
        n = len(y_N)
        params = lightgbm_params(n, seed)
        data = lgb.Dataset(w_NxK, y_N, params={"verbosity": -1, "min_data_in_bin": 1}, free_raw_data=False)
        folds = min(5, n // 4)
        if folds >= 2:
            # Rounds chosen on the training rows only: the rows being scored never steer training.
            result = lgb.cv(
                params, data, num_boost_round=self.max_rounds, nfold=folds, stratified=False, seed=seed,
                callbacks=[lgb.early_stopping(self.patience, verbose=False)],
            )
            rounds = len(next(iter(result.values())))
        else:
            rounds = 100
        self.rounds = int(rounds)
        self.boosters = [lgb.train({**params, "seed": seed + 7919 * i}, data, num_boost_round=self.rounds) for i in range(self.bag)]
        self._compiled = None
        return self

    def predict(self, w_NxK: np.ndarray, screen: bool = False) -> np.ndarray:
        """Mean of the bag; `screen=True` uses the first booster alone (a third of the cost), for
        a first pass over many candidates. Large inputs run on compiled trees when possible."""
        boosters = self.boosters[:1] if screen else self.boosters
        if len(w_NxK) >= 10_000:

            if self._compiled is None:
                self._compiled = {}
            if screen not in self._compiled:
                self._compiled[screen] = compiled_predictor(boosters)
            if self._compiled[screen] is not False:
                return self._compiled[screen](w_NxK)
        return np.mean([b.predict(w_NxK, num_threads=1) for b in boosters], axis=0)

    def save(self, directory: Path, stem: str) -> dict:
        files = []
        for i, b in enumerate(self.boosters):
            files.append(f"{stem}.b{i}.lgb.txt")
            b.save_model(str(directory / files[-1]))
        return {"kind": self.kind, "rounds": self.rounds, "files": files}

    @classmethod
    def load(cls, directory: Path, meta: dict, n_features: int | None = None) -> "LightGBMModel":
        paths = [contained_file(directory, f) for f in meta["files"]]
        if not paths:
            raise RegmixError(f"{directory / 'model.json'}: a LightGBM model names no tree files")
        for path in paths:
            validate_tree_file(path, n_features)
        return cls([lgb.Booster(model_file=str(path)) for path in paths], meta["rounds"])


EPS = 1e-4  # floor of log(w + EPS): below a 0.01% share a domain counts as absent


def mixture_features(w_NxK: np.ndarray) -> np.ndarray:
    """The weights plus log(w + EPS), presence (w > 0), the number of domains present and the
    mixture's entropy: what `lightgbm-features` splits on."""
    w = np.clip(np.asarray(w_NxK, np.float64), 0.0, None)
    present = (w > 0).astype(np.float64)
    entropy = -(w * np.log(np.where(w > 0, w, 1.0))).sum(1, keepdims=True)
    return np.concatenate([w, np.log(w + EPS), present, present.sum(1, keepdims=True), entropy], axis=1)


class FeatureLightGBMModel(LightGBMModel):
    """LightGBM on `mixture_features` of the weights instead of the raw weights."""

    kind = "lightgbm-features"

    def fit(self, w_NxK, y_N, seed: int = 0) -> "FeatureLightGBMModel":
        return super().fit(mixture_features(w_NxK), y_N, seed)

    def predict(self, w_NxK, screen: bool = False) -> np.ndarray:
        """Mean of the bag (`screen=True`: the first booster alone); compiled trees for large inputs."""
        return super().predict(mixture_features(w_NxK), screen)

    @classmethod
    def load(cls, directory: Path, meta: dict, n_features: int | None = None) -> "FeatureLightGBMModel":
        return super().load(directory, meta, None if n_features is None else 3 * n_features + 2)


class LinearModel:
    kind = "linear"
    alphas = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)

    def __init__(self, coef_K=None, intercept: float = 0.0, alpha: float = 0.0):
        self.coef_K = None if coef_K is None else np.asarray(coef_K, np.float64)
        self.intercept = intercept
        self.alpha = alpha

    @staticmethod
    def _solve(w, y, alpha):
        mu_w, mu_y = w.mean(axis=0), y.mean()
        wc = w - mu_w
        coef = np.linalg.solve(wc.T @ wc + alpha * len(y) * np.eye(w.shape[1]), wc.T @ (y - mu_y))
        return coef, float(mu_y - mu_w @ coef)

    def fit(self, w_NxK, y_N, seed: int = 0) -> "LinearModel":
        rng = np.random.default_rng(seed)
        fold_N = rng.permutation(len(y_N)) % max(2, min(5, len(y_N) // 2))
        errors = []
        for alpha in self.alphas:
            err = 0.0
            for f in np.unique(fold_N):
                tr, te = fold_N != f, fold_N == f
                coef, b = self._solve(w_NxK[tr], y_N[tr], alpha)
                err += np.sum((w_NxK[te] @ coef + b - y_N[te]) ** 2)
            errors.append(err)
        self.alpha = float(self.alphas[int(np.argmin(errors))])
        self.coef_K, self.intercept = self._solve(w_NxK, y_N, self.alpha)
        return self

    def predict(self, w_NxK) -> np.ndarray:
        return w_NxK @ self.coef_K + self.intercept

    def save(self, directory: Path, stem: str) -> dict:
        return {"kind": self.kind, "coef": self.coef_K.tolist(), "intercept": self.intercept, "alpha": self.alpha}

    @classmethod
    def load(cls, directory: Path, meta: dict, n_features: int | None = None) -> "LinearModel":
        where = directory / "model.json"
        coef = _finite_list(where, "coef", meta["coef"], n_features)
        return cls(coef, _finite(where, "intercept", meta["intercept"]), _finite(where, "alpha", meta["alpha"]))


class MixingLawModel:
    """L(w) = c + k * exp(t . w), fitted by least squares from several starts.

    The exponents are bounded (|t| <= T_MAX) and lightly ridge-penalised, so a sweep with few runs
    per domain cannot fit an exponent that explodes away from the runs."""

    kind = "mixing-law"
    T_MAX = 10.0
    RIDGE = 1e-3

    def __init__(self, c: float = 0.0, k: float = 1.0, t_K=None):
        self.c, self.k = c, k
        self.t_K = None if t_K is None else np.asarray(t_K, np.float64)

    @staticmethod
    def _law(p, w):
        c, log_k, t = p[0], p[1], p[2:]
        return c + np.exp(np.clip(log_k + w @ t, -50, 50))

    def fit(self, w_NxK, y_N, seed: int = 0) -> "MixingLawModel":
        rng = np.random.default_rng(seed)
        n, k = w_NxK.shape
        best = None
        scale = float(np.std(y_N)) or 1.0
        ridge = np.sqrt(self.RIDGE * n) * scale
        lower = np.concatenate([[-np.inf, -50.0], np.full(k, -self.T_MAX)])
        upper = np.concatenate([[np.inf, 50.0], np.full(k, self.T_MAX)])
        for start in range(6):
            c0 = float(np.min(y_N)) - scale * (0.5 + start * 0.5)
            t0 = np.clip(rng.normal(0, 0.5, k), -self.T_MAX + 1e-6, self.T_MAX - 1e-6)
            p0 = np.concatenate([[c0, np.log(max(np.mean(y_N) - c0, 1e-6))], t0])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = least_squares(
                    lambda p: np.concatenate([self._law(p, w_NxK) - y_N, ridge * p[2:]]),
                    p0, bounds=(lower, upper), method="trf", max_nfev=2000,
                )
            if best is None or res.cost < best.cost:
                best = res
        self.c, self.k, self.t_K = float(best.x[0]), float(np.exp(best.x[1])), best.x[2:]
        return self

    def predict(self, w_NxK) -> np.ndarray:
        return self.c + self.k * np.exp(np.clip(w_NxK @ self.t_K, -50, 50))

    def save(self, directory: Path, stem: str) -> dict:
        return {"kind": self.kind, "c": self.c, "k": self.k, "t": self.t_K.tolist()}

    @classmethod
    def load(cls, directory: Path, meta: dict, n_features: int | None = None) -> "MixingLawModel":
        where = directory / "model.json"
        t = _finite_list(where, "t", meta["t"], n_features)
        return cls(_finite(where, "c", meta["c"]), _finite(where, "k", meta["k"]), t)


class EnsembleModel:
    """Mean prediction of LightGBM, ridge and the mixing law."""

    kind = "ensemble"

    def __init__(self, members=None):
        self.members = members or [LightGBMModel(), LinearModel(), MixingLawModel()]

    def fit(self, w_NxK, y_N, seed: int = 0) -> "EnsembleModel":
        for m in self.members:
            m.fit(w_NxK, y_N, seed)
        return self

    def predict(self, w_NxK) -> np.ndarray:
        return np.mean([m.predict(w_NxK) for m in self.members], axis=0)

    def save(self, directory: Path, stem: str) -> dict:
        return {"kind": self.kind, "members": [m.save(directory, f"{stem}.m{i}") for i, m in enumerate(self.members)]}

    @classmethod
    def load(cls, directory: Path, meta: dict, n_features: int | None = None) -> "EnsembleModel":
        if not meta["members"]:
            raise RegmixError(f"{directory / 'model.json'}: an ensemble model has no members")
        return cls([load_model(directory, m, n_features) for m in meta["members"]])


_CLASSES = {c.kind: c for c in (GPModel, LightGBMModel, FeatureLightGBMModel, LogLinearModel, LinearModel, MixingLawModel,
                                 EnsembleModel, StackModel)}


def make_model(kind: str):
    if kind not in _CLASSES:
        raise RegmixError(f"unknown model '{kind}' (choices: {', '.join(MODEL_KINDS)})")
    return _CLASSES[kind]()




def contained_file(directory: Path, name) -> Path:
    """A file a model.json names: a plain relative name that stays inside the model's folder."""
    where = directory / "model.json"
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts or "\\" in name:
        raise RegmixError(f"{where}: file name {str(name)[:80]!r} must be a plain name inside the model folder")
    path = directory / name
    try:
        inside = path.resolve(strict=True).is_relative_to(directory.resolve())
    except (OSError, RuntimeError):
        raise RegmixError(f"{where}: names a missing file {name[:80]!r}") from None
    if not inside:
        raise RegmixError(f"{where}: file {name[:80]!r} leads outside the model folder")
    return path


def load_model(directory: Path, meta: dict, n_features: int | None = None):
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind not in _CLASSES:
        raise RegmixError(f"{directory}: unknown model kind {str(kind)[:40]!r} in model.json")
    return _CLASSES[kind].load(directory, meta, n_features)


StackModel.make_member, StackModel.load_member = staticmethod(make_model), staticmethod(load_model)
