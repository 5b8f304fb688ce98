"""Learning curve of the regressors on the embedded RegMix table (512 1M-proxy runs, the Pile).

For each model and number of runs n: fit on n random runs, score on the runs left out: Spearman
of predicted vs true loss, and the top-1 regret (true loss of the left-out run the model ranks
best, minus the best left-out run). Mean and sd over seeded random subsets. n = 512 leaves no run
out, so there each seed is a 5-fold cross-validation over all 512 runs (a fresh fold split per
seed) scored on its out-of-fold predictions.

    nice python benchmarks/learning_curve.py --out bench-out/lc            # Pile-CC, all models
    nice python benchmarks/learning_curve.py --all-targets --models gp lightgbm --out bench-out/lc13

    nice python benchmarks/learning_curve.py --all-targets --sizes 16 32 64 --subsets 5 \
        --models gp gp-shared gp-shared-prior --out bench-out/lc-shared   # multi-target sharing
    nice python benchmarks/learning_curve.py --models stack --stack-members gp lightgbm loglinear --out bench-out/lc-stack

gp-shared (one GP kernel fitted to all 13 losses at once) and gp-shared-prior (one GP per loss,
its log hyperparameters pulled towards gp-shared's) exist only here: both ranked worse than one GP
per loss (mean Spearman over the 13 losses at 16/32/64 runs: 0.64/0.87/0.93 and 0.82/0.94/0.975
vs 0.87/0.93/0.976), so they are not regressors of `regmix fit`.

Writes learning_curve.csv, learning_curve.md and learning_curve_subsets.csv (one row per
subset, for paired comparisons of models on the same runs) under --out.

    nice python benchmarks/learning_curve.py --sweep runs/demo/sweep --sizes 16 32 64 96 128 --out bench-out/lc-demo

runs the same on a sweep of your own (e.g. the demo's 128 proxies; the target its --target column; at the
sweep's whole size, 5-fold CV).

    nice python benchmarks/learning_curve.py --coverage 0.8 --models gp lightgbm --out bench-out/cov

measures instead the out-of-fold coverage of `regmix fit`'s conformal intervals: fit (5-fold) on n
random runs, and count the left-out runs inside the interval (at 512: an outer 5-fold split).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread: the machine is shared
import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from regmix.regress.gp import GPModel, _nlml, fit_hyperparameters, transform  # noqa: E402
from regmix.regress.kinds import MODEL_KINDS  # noqa: E402
from regmix.regress.models import make_model  # noqa: E402
from regmix.tables import EMBEDDED_TARGET, embedded_tables, load_metrics, load_sweep  # noqa: E402

SIZES = (16, 32, 64, 128, 256, 512)


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    rho = float(stats.spearmanr(y_true, y_pred).statistic) if np.ptp(y_pred) > 0 else float("nan")
    return rho, float(y_true[int(np.argmin(y_pred))] - y_true.min())


SHARED = "gp-shared"  # benchmark only: one GP kernel fitted jointly to all 13 losses (regress/gp.fit_shared)
_shared_cache: dict = {}


SHARED_PRIOR = "gp-shared-prior"  # benchmark only: per-target GP, log-hyperparameters pulled towards gp-shared's
PRIOR_WEIGHT = 0.5  # penalty 0.5 * PRIOR_WEIGHT * |p - p_shared|^2 on the log hyperparameters


def fit_shared(w: np.ndarray, y_NxT: np.ndarray, seed: int) -> list[GPModel]:
    """One GP per target, all with the same hyperparameters (lengthscales, signal and noise
    variance), fitted jointly to the standardised targets: the sum of their log marginal
    likelihoods, from the starts GPModel uses."""
    x = transform(w)
    d = x.shape[1]
    z = (y_NxT - y_NxT.mean(0)) / np.where(y_NxT.std(0) > 0, y_NxT.std(0), 1.0)
    p = fit_hyperparameters(x, z, seed, GPModel.starts, GPModel.max_iter)
    return [GPModel(w, y_NxT[:, t], p[:d], p[d], p[d + 1], float(y_NxT[:, t].mean()), float(y_NxT[:, t].std()) or 1.0)
            for t in range(y_NxT.shape[1])]


def fit_with_prior(w: np.ndarray, y: np.ndarray, centre: GPModel, seed: int) -> GPModel:
    """A one-target GP whose negative log marginal likelihood is penalised towards `centre`'s
    hyperparameters (a Gaussian prior on the log lengthscales, signal and noise variances)."""
    from scipy.optimize import minimize

    x = transform(w)
    z = (y - y.mean()) / (y.std() or 1.0)
    sq = (x.T[:, :, None] - x.T[:, None, :]) ** 2
    p_c = np.concatenate([centre.log_ls_D, [centre.log_sf2, centre.log_sn2]])

    def objective(p):
        value, grad = _nlml(p, sq, z)
        return value + 0.5 * PRIOR_WEIGHT * np.sum((p - p_c) ** 2), grad + PRIOR_WEIGHT * (p - p_c)

    res = minimize(objective, p_c, jac=True, method="L-BFGS-B", options={"maxiter": 200})
    d = x.shape[1]
    return GPModel(w, y, res.x[:d], res.x[d], res.x[d + 1], float(y.mean()), float(y.std()) or 1.0)


def fit_predict(kind: str, w: np.ndarray, y_all: np.ndarray, t: int, train, test, seed: int) -> np.ndarray:
    """Fit on the `train` rows of target t and predict the `test` rows. gp-shared fits its kernel
    on every target's training losses (all 13 are measured at every run); one fit serves all t."""
    if kind not in (SHARED, SHARED_PRIOR):
        return make_model(kind).fit(w[train], y_all[train, t], seed).predict(w[test])
    key = (train.tobytes(), seed)
    if key not in _shared_cache:
        if len(train) > 128:  # large fits: keep only the latest (memory)
            _shared_cache.clear()
        _shared_cache[key] = fit_shared(w[train], y_all[train], seed)
    shared = _shared_cache[key][t]
    if kind == SHARED_PRIOR:
        shared = fit_with_prior(w[train], y_all[train, t], shared, seed)
    return shared.predict(w[test])


def one(kind: str, w: np.ndarray, y_all: np.ndarray, t: int, n: int, seed: int) -> tuple[float, float]:
    y = y_all[:, t]
    rng = np.random.default_rng(1000 + seed)
    if n < len(y):
        idx = rng.permutation(len(y))
        train, test = idx[:n], idx[n:]
        return scores(y[test], fit_predict(kind, w, y_all, t, train, test, seed))
    fold = rng.permutation(len(y)) % 5
    oof = np.empty_like(y)
    for f in range(5):
        oof[fold == f] = fit_predict(kind, w, y_all, t, np.flatnonzero(fold != f), np.flatnonzero(fold == f), seed + f)
    return scores(y, oof)


def coverage(kind: str, mixtures, y_N: np.ndarray, n: int, seed: int, level: float) -> tuple[float, float]:
    """Share of left-out runs inside the interval, and the interval's mean width."""
    from regmix.regress.fit import fit_sweep

    rng = np.random.default_rng(2000 + seed)
    idx = rng.permutation(len(y_N))
    if n >= len(y_N):
        n = len(y_N) - len(y_N) // 5
    train, test = idx[:n], idx[n:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = fit_sweep(mixtures.subset(train), y_N[train, None], ["y"], kind=kind, folds=5, seed=seed, progress=False)
    _, lo, hi = model.interval(mixtures.w_NxK[test], level)
    inside = (y_N[test] >= lo[:, 0]) & (y_N[test] <= hi[:, 0])
    return float(inside.mean()), float(np.mean(hi - lo))


def main_coverage(args, mixtures, y_NxT, names) -> int:
    rows = []
    for kind in args.models:
        for n in args.sizes:
            reps = args.subsets if n < 256 else min(args.subsets, args.large_subsets)
            res = np.array([coverage(kind, mixtures, y_NxT[:, 0], n, s, args.coverage) for s in range(reps)])
            rows.append({"model": kind, "runs": n, "subsets": reps, "level": args.coverage,
                         "coverage_mean": res[:, 0].mean(), "coverage_sd": res[:, 0].std(ddof=1) if reps > 1 else 0.0,
                         "width_mean": res[:, 1].mean()})
            r = rows[-1]
            print(f"{kind:>16} n={n:>3} x{reps:<2} coverage {r['coverage_mean']:.3f} +- {r['coverage_sd']:.3f} "
                  f"(nominal {args.coverage}) width {r['width_mean']:.4f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "coverage.csv", index=False)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODEL_KINDS), choices=[*MODEL_KINDS, SHARED, SHARED_PRIOR])
    p.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    p.add_argument("--subsets", type=int, default=10, help="random subsets per size")
    p.add_argument("--large-subsets", type=int, default=3,
                   help="subsets at n >= 256 (each 512 one is a 5-fold CV): keeps the default run short")
    p.add_argument("--stack-members", nargs="+", choices=MODEL_KINDS, help="members of the stack model (default: its own)")
    p.add_argument("--all-targets", action="store_true", help="all 13 losses instead of Pile-CC")
    p.add_argument("--sweep", metavar="DIR", help="a `regmix sweep` folder (mixtures.csv, metrics.csv) instead of the "
                   "embedded table; sizes up to its number of runs")
    p.add_argument("--target", default="pydocs_val_loss", help="with --sweep: the first target (its metrics.csv column)")
    p.add_argument("--coverage", type=float, metavar="LEVEL", help="measure interval coverage instead (first target)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.stack_members:
        from regmix.regress.stack import StackModel

        StackModel.member_kinds = tuple(args.stack_members)
    if args.sweep:
        paths = Path(args.sweep) / "mixtures.csv", Path(args.sweep) / "metrics.csv"
        every = [c for c in load_metrics(paths[1]).columns if c.endswith("_val_loss")]
        mix, y_NxT, names = load_sweep(*paths, [args.target] + [c for c in every if c != args.target])
        args.sizes = [n for n in args.sizes if n <= len(y_NxT)]
    else:
        every = [c for c in load_metrics(embedded_tables()[1]).columns]
        mix, y_NxT, names = load_sweep(None, None, [EMBEDDED_TARGET] + [c for c in every if c != EMBEDDED_TARGET])
    if args.coverage:
        return main_coverage(args, mix, y_NxT, names)
    w = mix.w_NxK
    rows, subsets = [], []
    scored = range(len(names)) if args.all_targets else [0]
    for t in scored:
        name = names[t]
        for kind in args.models:
            for n in args.sizes:
                reps = args.subsets if n < 256 else min(args.subsets, args.large_subsets)
                start = time.perf_counter()
                res = np.array([one(kind, w, y_NxT, t, n, s) for s in range(reps)])
                subsets += [{"target": name, "model": kind, "runs": n, "subset": s, "spearman": r[0], "regret": r[1]}
                            for s, r in enumerate(res)]
                rows.append({
                    "target": name.removeprefix("metric/the_pile_").removesuffix("_val_loss"), "model": kind, "runs": n,
                    "subsets": reps, "spearman_mean": np.nanmean(res[:, 0]), "spearman_sd": np.nanstd(res[:, 0], ddof=1) if reps > 1 else 0.0,
                    "regret_mean": res[:, 1].mean(), "regret_sd": res[:, 1].std(ddof=1) if reps > 1 else 0.0,
                    "seconds_per_fit": (time.perf_counter() - start) / (reps * (5 if n >= len(w) else 1)),
                })
                r = rows[-1]
                print(f"{r['target']:>18} {kind:>16} n={n:>3} x{reps:<2} spearman {r['spearman_mean']:.3f} +- "
                      f"{r['spearman_sd']:.3f}  regret {r['regret_mean']:.4f}  {r['seconds_per_fit']:.1f}s/fit", flush=True)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "learning_curve.csv", index=False)
    pd.DataFrame(subsets).to_csv(out / "learning_curve_subsets.csv", index=False)  # for paired comparisons
    (out / "learning_curve.md").write_text(markdown(frame))
    print(markdown(frame))
    return 0


def markdown(frame: pd.DataFrame) -> str:
    """One table per target: model x runs, cells 'spearman +- sd / regret'; then a note on subsets."""
    parts = []
    for target, block in frame.groupby("target", sort=False):
        sizes = sorted(block["runs"].unique())
        lines = [f"### {target}: Spearman mean +- sd (top-1 regret) on left-out runs", "",
                 "| model | " + " | ".join(str(s) for s in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
        for kind, rows in block.groupby("model", sort=False):
            cells = {r.runs: f"{r.spearman_mean:.3f} +- {r.spearman_sd:.3f} ({r.regret_mean:.3f})" for r in rows.itertuples()}
            lines.append(f"| {kind} | " + " | ".join(cells.get(s, "") for s in sizes) + " |")
        reps = block.groupby("runs")["subsets"].first().to_dict()
        lines += ["", "subsets per size: " + ", ".join(f"{k}: {v}" for k, v in reps.items())
                  + " (a size equal to the number of runs: each subset is a 5-fold CV over them all)", ""]
        parts.append("\n".join(lines))
    if frame["target"].nunique() > 1:
        mean = frame.groupby(["model", "runs"], sort=False)["spearman_mean"].mean().unstack()
        lines = ["### mean Spearman over targets", "", "| model | " + " | ".join(map(str, mean.columns)) + " |",
                 "|---" * (len(mean.columns) + 1) + "|"]
        lines += [f"| {kind} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for kind, row in mean.iterrows()]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
