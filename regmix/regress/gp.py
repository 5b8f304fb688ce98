"""A Gaussian process from mixture weights to one target, on x = sqrt(w).

On sqrt(w) the Euclidean distance is the Hellinger distance between mixtures, and a domain's
weight matters most near zero, where sqrt is steep. (An isometric log-ratio of w + 1e-3 was tried
and ranked worse at every size on the RegMix table: Spearman 0.86 vs 0.975 at 64 runs, 0.95 vs
0.987 at 256.) Kernel: squared-exponential with one lengthscale per coordinate (ARD) plus a learned
noise, y standardised. Hyperparameters maximise the log marginal likelihood (L-BFGS-B with the
analytic gradient) from a few seeded starts.

Prediction of many candidates: alpha = K^-1 y is precomputed, and the cross-kernel is built in
float32 chunks from |x|^2 + |z|^2 - 2 x.z (one BLAS matrix product). The `screen` pass for a
first look over a million candidates uses a subset of regressors on M inducing runs (a cheaper
estimate whose shortlist the full model rescores).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from regmix.errors import RegmixError
from regmix.regress.checks import _finite, _finite_list

CHUNK = 16_384
SCREEN_RUNS = 96  # inducing runs of the screening approximation


def transform(w_NxK: np.ndarray, how: str = "sqrt") -> np.ndarray:
    return np.sqrt(np.clip(np.asarray(w_NxK, np.float64), 0.0, None))


def sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of a and of b (never below 0)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0, out=d)


def fit_hyperparameters(x_NxD: np.ndarray, z, seed: int, starts: int, max_iter: int) -> np.ndarray | None:
    """Log lengthscales, signal and noise variances maximising the marginal likelihood of the
    standardised targets z (one per run, or an NxT matrix of targets sharing them): the best of
    `starts` L-BFGS starts (2 over 256 runs, where the starts agree and each costs seconds); None
    when no start could be evaluated."""
    n, d = x_NxD.shape
    sq_DxNxN = (x_NxD.T[:, :, None] - x_NxD.T[:, None, :]) ** 2
    spread = np.maximum(x_NxD.std(axis=0), 1e-3)
    base = np.log(spread * math.sqrt(d))
    lo = np.concatenate([base - 7.0, [math.log(1e-2), math.log(1e-6)]])
    hi = np.concatenate([base + 5.0, [math.log(1e2), math.log(2.0)]])
    rng = np.random.default_rng(seed)
    best = None
    for s in range(starts if n <= 256 else 2):
        ls0 = base + (0.0 if s == 0 else rng.normal(0.0, 0.7, d))
        p0 = np.clip(np.concatenate([ls0, [0.0, math.log(0.05 if s == 0 else rng.uniform(0.01, 0.3))]]), lo, hi)
        res = minimize(_nlml, p0, args=(sq_DxNxN, z), jac=True, method="L-BFGS-B",
                       bounds=list(zip(lo, hi)), options={"maxiter": max_iter})
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    return None if best is None else best.x


class GPModel:
    kind = "gp"
    screens = True  # predict(screen=True) is a cheaper first-pass estimate
    how = "sqrt"
    starts = 3
    max_iter = 200

    def __init__(self, w_NxK=None, y_N=None, log_ls_D=None, log_sf2: float = 0.0, log_sn2: float = -4.0,
                 y_mean: float = 0.0, y_std: float = 1.0):
        self.log_ls_D = None if log_ls_D is None else np.asarray(log_ls_D, np.float64)
        self.log_sf2, self.log_sn2 = float(log_sf2), float(log_sn2)
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.w_NxK = None if w_NxK is None else np.asarray(w_NxK, np.float64)
        self.y_N = None if y_N is None else np.asarray(y_N, np.float64)
        if self.w_NxK is not None and self.log_ls_D is not None:
            self._prepare()

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, w_NxK: np.ndarray, y_N: np.ndarray, seed: int = 0) -> "GPModel":
        # One BLAS thread: on a few hundred runs threads contend more than they help (10x slower
        # Cholesky factors measured on a loaded 2-core machine).
        with threadpool_limits(1):
            return self._fit(w_NxK, y_N, seed)

    def _fit(self, w_NxK: np.ndarray, y_N: np.ndarray, seed: int) -> "GPModel":
        x = transform(w_NxK, self.how)
        d = x.shape[1]
        self.y_mean = float(np.mean(y_N))
        self.y_std = float(np.std(y_N)) or 1.0
        z = (np.asarray(y_N, np.float64) - self.y_mean) / self.y_std
        p = fit_hyperparameters(x, z, seed, self.starts, self.max_iter)
        if p is None:
            raise RegmixError("gp: the marginal likelihood could not be evaluated (singular kernel)")
        self.log_ls_D, self.log_sf2, self.log_sn2 = p[:d], float(p[d]), float(p[d + 1])
        self.w_NxK, self.y_N = np.asarray(w_NxK, np.float64), np.asarray(y_N, np.float64)
        self._prepare()
        return self

    def _prepare(self) -> None:
        """Cholesky factor, alpha = K^-1 y and the float32 scaled inputs used by predict."""
        x = transform(self.w_NxK, self.how) / np.exp(self.log_ls_D)
        k = np.exp(self.log_sf2) * np.exp(-0.5 * sq_dist(x, x))
        k[np.diag_indices_from(k)] += np.exp(self.log_sn2) + 1e-8
        try:
            self._chol = cho_factor(k, lower=True)
        except np.linalg.LinAlgError:
            raise RegmixError("gp: kernel matrix is not positive definite (corrupt or degenerate model)") from None
        z = (self.y_N - self.y_mean) / self.y_std
        self._alpha = cho_solve(self._chol, z)
        self._x = x
        self._x32 = x.astype(np.float32)
        self._x32_sq = (self._x32 * self._x32).sum(1)
        self._alpha32 = (self._alpha * np.exp(self.log_sf2)).astype(np.float32)
        self._screen = None

    # -- prediction ------------------------------------------------------------------------------
    def _cross(self, w_NxK: np.ndarray) -> np.ndarray:
        q = transform(w_NxK, self.how) / np.exp(self.log_ls_D)
        return np.exp(self.log_sf2) * np.exp(-0.5 * sq_dist(q, self._x))

    def predict(self, w_NxK: np.ndarray, screen: bool = False) -> np.ndarray:
        w_NxK = np.asarray(w_NxK, np.float64)
        if screen and len(w_NxK) >= 10_000 and len(self._x) > SCREEN_RUNS:
            return self._predict_screen(w_NxK)
        if len(w_NxK) < 10_000:  # small inputs: float64, exact
            return self._cross(w_NxK) @ self._alpha * self.y_std + self.y_mean
        return self._chunked(w_NxK, self._x32, self._x32_sq, self._alpha32)

    def _chunked(self, w_NxK, x32, x32_sq, alpha32) -> np.ndarray:
        inv_ls = (1.0 / np.exp(self.log_ls_D)).astype(np.float32)
        out = np.empty(len(w_NxK))
        for lo in range(0, len(w_NxK), CHUNK):
            q = transform(w_NxK[lo : lo + CHUNK], self.how).astype(np.float32) * inv_ls
            d = q @ x32.T
            d *= np.float32(2.0)
            d -= (q * q).sum(1)[:, None]
            d -= x32_sq[None, :]
            np.minimum(d, 0.0, out=d)
            d *= np.float32(0.5)
            np.exp(d, out=d)
            out[lo : lo + CHUNK] = d @ alpha32
        return out * self.y_std + self.y_mean

    def _predict_screen(self, w_NxK: np.ndarray) -> np.ndarray:
        """Subset of regressors on SCREEN_RUNS inducing runs (farthest-point picked, fixed)."""
        if self._screen is None:
            idx = _farthest_points(self._x, SCREEN_RUNS)
            xm = self._x[idx]
            sf2, sn2 = np.exp(self.log_sf2), np.exp(self.log_sn2)
            kmn = sf2 * np.exp(-0.5 * sq_dist(xm, self._x))
            kmm = sf2 * np.exp(-0.5 * sq_dist(xm, xm))
            z = (self.y_N - self.y_mean) / self.y_std
            a = kmn @ kmn.T + sn2 * kmm + 1e-8 * sf2 * np.eye(len(idx))
            alpha_m = np.linalg.solve(a, kmn @ z)
            xm32 = xm.astype(np.float32)
            self._screen = (xm32, (xm32 * xm32).sum(1), (alpha_m * sf2).astype(np.float32))
        return self._chunked(w_NxK, *self._screen)

    def predict_sd(self, w_NxK: np.ndarray, noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation (with the learned noise: of a new run's loss)."""
        out_mean, out_sd = [], []
        for lo in range(0, len(w_NxK), 4096):
            ks = self._cross(np.asarray(w_NxK[lo : lo + 4096], np.float64))
            out_mean.append(ks @ self._alpha * self.y_std + self.y_mean)
            v = solve_triangular(self._chol[0], ks.T, lower=True)
            var = np.exp(self.log_sf2) - (v * v).sum(0) + (np.exp(self.log_sn2) if noise else 0.0)
            out_sd.append(np.sqrt(np.maximum(var, 1e-12)) * self.y_std)
        return np.concatenate(out_mean), np.concatenate(out_sd)

    def posterior_cov(self, w_MxK: np.ndarray) -> np.ndarray:
        """Latent posterior covariance among M mixtures (in target units squared)."""
        ks = self._cross(w_MxK)
        v = solve_triangular(self._chol[0], ks.T, lower=True)
        q = transform(w_MxK, self.how) / np.exp(self.log_ls_D)
        prior = np.exp(self.log_sf2) * np.exp(-0.5 * sq_dist(q, q))
        return (prior - v.T @ v) * self.y_std**2

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: Path, stem: str) -> dict:
        return {
            "kind": self.kind, "transform": self.how, "w": self.w_NxK.tolist(), "y": self.y_N.tolist(),
            "log_lengthscales": self.log_ls_D.tolist(), "log_signal_var": self.log_sf2,
            "log_noise_var": self.log_sn2, "y_mean": self.y_mean, "y_std": self.y_std,
        }

    @classmethod
    def load(cls, directory: Path, meta: dict, n_features: int | None = None) -> "GPModel":
        where = directory / "model.json"
        if meta.get("transform") != cls.how:
            raise RegmixError(f"{where}: field 'transform' of a {cls.kind} model must be '{cls.how}'")
        rows = meta["w"]
        if not isinstance(rows, list) or len(rows) < 2:
            raise RegmixError(f"{where}: field 'w' must list at least 2 training mixtures")
        w = np.array([_finite_list(where, "w", r, n_features) for r in rows], np.float64)
        if w.ndim != 2 or (w < 0).any():
            raise RegmixError(f"{where}: field 'w' must be rows of non-negative weights of equal length")
        y = _finite_list(where, "y", meta["y"], len(w))
        dims = w.shape[1]
        ls = _finite_list(where, "log_lengthscales", meta["log_lengthscales"], None)
        if len(ls) != dims:
            raise RegmixError(f"{where}: field 'log_lengthscales' has {len(ls)} numbers, need {dims}")
        scalars = {f: _finite(where, f, meta[f]) for f in ("log_signal_var", "log_noise_var", "y_mean", "y_std")}
        if any(abs(v) > 50 for v in [*ls, scalars["log_signal_var"], scalars["log_noise_var"]]):
            raise RegmixError(f"{where}: a log hyperparameter of the {cls.kind} model is out of range")
        if scalars["y_std"] <= 0:
            raise RegmixError(f"{where}: field 'y_std' must be positive")
        return cls(w, y, ls, scalars["log_signal_var"], scalars["log_noise_var"], scalars["y_mean"], scalars["y_std"])


def _nlml(p: np.ndarray, sq_DxNxN: np.ndarray, z_N: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log marginal likelihood and its gradient in (log lengthscales, log sf2, log sn2).
    `z_N` may be `z_NxM`: the sum over M targets of one kernel (benchmarks/learning_curve.py's
    gp-shared, which ranked worse than one kernel per target)."""
    d = len(sq_DxNxN)
    inv_l2 = np.exp(-2.0 * p[:d])
    sf2, sn2 = math.exp(p[d]), math.exp(p[d + 1])
    scaled = np.tensordot(inv_l2, sq_DxNxN, axes=1)
    kf = sf2 * np.exp(-0.5 * scaled)
    k = kf.copy()
    k[np.diag_indices_from(k)] += sn2 + 1e-8
    try:
        c = cho_factor(k, lower=True)
    except np.linalg.LinAlgError:
        return 1e25, np.zeros_like(p)
    alpha = cho_solve(c, z_N)
    n, m = len(z_N), (1 if z_N.ndim == 1 else z_N.shape[1])  # z_NxM: M targets sharing one kernel
    value = 0.5 * np.sum(z_N * alpha) + m * (np.log(np.diag(c[0])).sum() + 0.5 * n * math.log(2 * math.pi))
    w_inner = (np.outer(alpha, alpha) if m == 1 else alpha @ alpha.T) - m * cho_solve(c, np.eye(n))
    wk = w_inner * kf
    grad = np.empty_like(p)
    grad[:d] = -0.5 * np.tensordot(sq_DxNxN, wk, axes=([1, 2], [0, 1])) * inv_l2
    grad[d] = -0.5 * wk.sum()
    grad[d + 1] = -0.5 * sn2 * np.trace(w_inner)
    return float(value), grad


def _farthest_points(x_NxD: np.ndarray, m: int) -> np.ndarray:
    """Greedy farthest-point subset (deterministic: starts at the run nearest the centre)."""
    start = int(np.argmin(((x_NxD - x_NxD.mean(0)) ** 2).sum(1)))
    idx = [start]
    dist = ((x_NxD - x_NxD[start]) ** 2).sum(1)
    for _ in range(m - 1):
        j = int(np.argmax(dist))
        idx.append(j)
        dist = np.minimum(dist, ((x_NxD - x_NxD[j]) ** 2).sum(1))
    return np.array(idx)
