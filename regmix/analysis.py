"""The computations behind the analysis notebooks and `regmix report`: plain tables and arrays from a
sweep and a fitted model, which `regmix.plots` draws. Everything random takes an explicit seed.

Partial dependence on a mixture keeps it on the simplex: setting domain k to weight v rescales the
other domains in proportion, so they sum to 1 - v (a plain partial dependence would score mixtures
that do not sum to 1, where the regressor has never seen data).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from regmix.errors import RegmixError
from regmix.regress.fit import FittedModel, align_columns
from regmix.regress.models import make_model
from regmix.sample import sample_mixtures
from regmix.space import MixtureSpace
from regmix.tables import MixtureTable, embedded_tables, join, load_metrics, load_mixtures

EMBEDDED = "embedded"


# -- loading ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Sweep:
    """A sweep's runs: mixtures and every measured metric, joined on run id; `unit` of the losses."""

    mixtures: MixtureTable
    metrics: pd.DataFrame  # one row per run (same order as mixtures), one column per metric
    unit: str
    source: str


def sweep_tables(source: str | Path | None = None) -> tuple[Path, Path]:
    """(mixtures, metrics) paths: the embedded RegMix table (None or "embedded"), a sweep folder
    (`regmix sweep`'s mixtures.csv/metrics.csv, Olmix's ratios.csv/metrics.csv)."""
    if source is None or str(source) == EMBEDDED:
        return embedded_tables()
    folder = Path(source)
    if not folder.is_dir():
        raise RegmixError(f"--sweep {folder}: not a folder (give a sweep folder, or 'embedded')")
    for mix_name in ("mixtures.csv", "ratios.csv", "mixtures.parquet"):
        for met_name in ("metrics.csv", "metrics.parquet"):
            if (folder / mix_name).exists() and (folder / met_name).exists():
                return folder / mix_name, folder / met_name
    raise RegmixError(f"--sweep {folder}: no mixtures.csv (or ratios.csv) and metrics.csv in it")


def loss_unit(source: str | Path | None) -> str:
    """Unit of the sweep's losses: nats/token for RegMix's table (GPT-NeoX tokens), nats/byte for a
    sweep on a byte-level token store, else nats/token of the store's tokenizer."""
    if source is None or str(source) == EMBEDDED:
        return "nats/token"
    try:
        import json

        record = json.loads((Path(source) / "sweep.json").read_text())
        tokenizer = record.get("store", {}).get("tokenizer")
    except (OSError, ValueError, AttributeError):
        tokenizer = None
    return "nats/byte" if tokenizer == "byte" else "nats/token"


def load_analysis_sweep(source: str | Path | None = None) -> Sweep:
    """A sweep for analysis: every run with its mixture and all of its metrics."""
    mix_path, met_path = sweep_tables(source)
    mix, met = join(load_mixtures(mix_path), load_metrics(met_path))
    short = _short_names(met.columns)
    metrics = pd.DataFrame(met.values_NxT, columns=list(met.columns))
    metrics.attrs["short"] = dict(zip(met.columns, short))
    return Sweep(mix, metrics, loss_unit(source), EMBEDDED if source is None else str(source))


def _short_names(columns) -> list[str]:
    """'metric/the_pile_pile_cc_val_loss' -> 'pile_cc'; 'web_val_loss' -> 'web'."""
    from regmix.tables import common_prefix

    cols = list(columns)
    prefix = common_prefix(cols) if len(cols) > 1 else ""
    out = []
    for c in cols:
        s = c[len(prefix):] if prefix and len(c) > len(prefix) else c
        out.append(s.removesuffix("_val_loss"))
    return out


def short_name(sweep: Sweep, column: str) -> str:
    return sweep.metrics.attrs.get("short", {}).get(column, column.removesuffix("_val_loss"))


def loss_frame(sweep: Sweep, loss_only: bool = True) -> pd.DataFrame:
    """The sweep's metrics with short column names (losses only: no bits-per-byte or means)."""
    cols = [c for c in sweep.metrics.columns if not loss_only or c.endswith("val_loss") and not c.startswith("mean")]
    frame = sweep.metrics[cols or list(sweep.metrics.columns)].copy()
    frame.columns = [short_name(sweep, c) for c in frame.columns]
    return frame


def model_weights(model: FittedModel, sweep: Sweep) -> np.ndarray:
    """The sweep's weights in the model's domain order, `w_NxK`."""
    return align_columns(model, sweep.mixtures)


# -- fit quality -----------------------------------------------------------------------------------
def subset(sweep: Sweep, n: int, seed: int = 0) -> Sweep:
    """n runs of the sweep drawn at random (for quick looks and small test settings)."""
    if n >= len(sweep.metrics):
        return sweep
    rows = np.sort(np.random.default_rng(seed).choice(len(sweep.metrics), n, replace=False))
    metrics = sweep.metrics.iloc[rows].reset_index(drop=True)
    metrics.attrs = dict(sweep.metrics.attrs)
    return Sweep(sweep.mixtures.subset(rows), metrics, sweep.unit, sweep.source)


def target_column(sweep: Sweep, name: str) -> str:
    """A metric column by its name or an unambiguous part of it ('pile_cc')."""
    from regmix.tables import resolve_target

    return resolve_target(name, list(sweep.metrics.columns), sweep.source)


def fit_models(sweep: Sweep, targets: list[str], kinds=("lightgbm", "linear"), folds: int = 5, seed: int = 0):
    """One cross-validated fit per regressor kind: {kind: (model, out-of-fold table)} (see join_oof)."""
    import warnings

    from regmix.regress.fit import fit_sweep

    cols = [target_column(sweep, t) for t in targets]
    y = sweep.metrics[cols].to_numpy()
    keep = ~np.isnan(y).any(axis=1)
    mix = sweep.mixtures.subset(np.flatnonzero(keep))
    out = {}
    for kind in kinds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the few-runs warning: the learning curve shows it
            model, cv = fit_sweep(mix, y[keep], cols, kind, folds, seed, progress=False)
        out[kind] = (model, join_oof(cv, model, sweep))
    return out


def cv_frame(fits: dict) -> pd.DataFrame:
    """Out-of-fold scores of every fit: one row per (regressor, target)."""
    rows = [{"regressor": kind, "target": t, **s} for kind, (m, _) in fits.items() for t, s in m.cv.items()]
    return pd.DataFrame(rows)


def join_oof(cv: pd.DataFrame, model: FittedModel, sweep: Sweep, where: str = "out-of-fold table") -> pd.DataFrame:
    """Out-of-fold predictions joined with the sweep's weights: run, <domain>..., then per target
    `<t>` (measured), `<t>:oof` and `<t>:residual` (prediction - truth)."""
    missing = [c for t in model.targets for c in (t, f"{t}:oof") if c not in cv.columns]
    if missing:
        raise RegmixError(f"{where}: no column '{missing[0]}' for the model's targets")
    w = pd.DataFrame(model_weights(model, sweep), columns=list(model.domains))
    w.insert(0, "run", sweep.mixtures.ids.astype(str))
    cv = cv.rename(columns={cv.columns[0]: "run"}).drop(columns=["fold"], errors="ignore")
    table = w.merge(cv.assign(run=cv["run"].astype(str)), on="run")
    if table.empty:
        raise RegmixError(f"{where}: no run id in common with the sweep {sweep.source} (fitted on another sweep?)")
    for t in model.targets:
        table[f"{t}:residual"] = table[f"{t}:oof"] - table[t]
    return table


def oof_table(model_dir: str | Path, model: FittedModel, sweep: Sweep) -> pd.DataFrame:
    """join_oof of the fit's cv_predictions.csv (written by `regmix fit`)."""
    path = Path(model_dir) / "cv_predictions.csv"
    if not path.exists():
        raise RegmixError(f"{path}: not found (a model folder written by `regmix fit` has it)")
    return join_oof(pd.read_csv(path, dtype={0: str}), model, sweep, str(path))


def learning_curve(
    w_NxK: np.ndarray,
    y_N: np.ndarray,
    sizes=(32, 64, 128, 256),
    repeats: int = 3,
    kinds=("linear", "lightgbm"),
    top_k: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Fit on n random runs, score on the runs left out: Spearman and top-k regret per (kind, n, repeat).

    Regret: mean measured loss of the k held-out runs the model ranks best, minus the mean of the k
    truly best held-out runs (0 = it picks the best runs; in the target's unit)."""
    w_NxK, y_N = np.asarray(w_NxK, float), np.asarray(y_N, float)
    n_all = len(y_N)
    rng = np.random.default_rng(seed)
    rows = []
    sizes = [n for n in sizes if 8 <= n <= n_all - max(top_k, 8)]
    if not sizes:
        raise RegmixError(f"learning curve: {n_all} runs are too few for subsets (need at least {16 + top_k})")
    for n in sizes:
        for r in range(repeats):
            perm = rng.permutation(n_all)
            train, test = perm[:n], perm[n:]
            for kind in kinds:
                pred = make_model(kind).fit(w_NxK[train], y_N[train], seed + r).predict(w_NxK[test])
                y = y_N[test]
                k = min(top_k, len(test))
                regret = y[np.argsort(pred)[:k]].mean() - np.sort(y)[:k].mean()
                rho = stats.spearmanr(y, pred).statistic if np.ptp(pred) > 0 else float("nan")
                rows.append({"kind": kind, "n_runs": n, "repeat": r, "spearman": float(rho), "regret": float(regret)})
    return pd.DataFrame(rows)


# -- per-domain effects ----------------------------------------------------------------------------
def shap_contributions(model: FittedModel, w_NxK: np.ndarray, target: int = 0) -> np.ndarray:
    """SHAP contribution of each domain to the predicted target, `phi_NxK` (the bias dropped).

    LightGBM: TreeSHAP via `Booster.predict(pred_contrib=True)`, averaged over the bag. Linear: the
    exact linear SHAP, coef_k * (w_k - mean w_k). Other kinds have no additive decomposition here."""
    w = np.asarray(w_NxK, float)
    m = model.full[target]
    if hasattr(m, "boosters"):
        return np.mean([b.predict(w, pred_contrib=True, num_threads=1)[:, :-1] for b in m.boosters], axis=0)
    if getattr(m, "coef_K", None) is not None:
        return (w - w.mean(axis=0)) * m.coef_K
    raise RegmixError(f"SHAP contributions need a lightgbm or linear model, not {model.kind}")


def _predict(m, w_NxK: np.ndarray) -> np.ndarray:
    """One target's prediction; LightGBM through its own predict: compiling thousands of trees to
    native code costs more than these few thousand rows do."""
    if hasattr(m, "boosters"):
        return np.mean([b.predict(w_NxK, num_threads=1) for b in m.boosters], axis=0)
    return m.predict(w_NxK)


def _set_share(w_NxK: np.ndarray, k: int, v: float) -> np.ndarray:
    """Each row with domain k at weight v, the others rescaled in proportion to sum 1 - v."""
    w = w_NxK.copy()
    rest = 1.0 - w[:, k]
    scale = np.where(rest > 1e-12, (1.0 - v) / np.maximum(rest, 1e-12), 0.0)
    w *= scale[:, None]
    w[:, k] = v
    fill = rest <= 1e-12  # a row that was all domain k: spread the rest evenly
    if fill.any():
        others = np.arange(w.shape[1]) != k
        w[np.ix_(fill, others)] = (1.0 - v) / others.sum()
    return w


def pd_grid(w_NxK: np.ndarray, k: int, points: int = 12) -> np.ndarray:
    """Grid of weights for domain k over the range the runs cover (1st to 99th percentile)."""
    lo, hi = np.quantile(w_NxK[:, k], [0.01, 0.99])
    return np.linspace(lo, max(hi, lo + 1e-6), points)


def partial_dependence(model: FittedModel, w_NxK: np.ndarray, domains=None, target: int = 0, points: int = 10,
                       background: int = 100, seed: int = 0) -> pd.DataFrame:
    """Mean predicted target when one domain's weight is set to each grid value (others rescaled):
    columns domain, weight, predicted, plus `ice_lo`/`ice_hi` (10th/90th percentile over the runs)."""
    w = np.asarray(w_NxK, float)
    rng = np.random.default_rng(seed)
    bg = w[rng.choice(len(w), min(background, len(w)), replace=False)]
    names = list(model.domains)
    domains = list(domains if domains is not None else names)
    grids = [pd_grid(w, names.index(d), points) for d in domains]
    batch = np.concatenate([_set_share(bg, names.index(d), v) for d, g in zip(domains, grids) for v in g])
    pred = _predict(model.full[target], batch).reshape(len(domains), points, len(bg))
    rows = []
    for d, g, p_GxB in zip(domains, grids, pred):
        for v, p in zip(g, p_GxB):
            rows.append({"domain": d, "weight": float(v), "predicted": float(p.mean()),
                         "ice_lo": float(np.quantile(p, 0.1)), "ice_hi": float(np.quantile(p, 0.9))})
    return pd.DataFrame(rows)


def top_domains(model: FittedModel, w_NxK: np.ndarray, n: int = 6, target: int = 0) -> list[str]:
    """The n domains with the largest mean |SHAP| (largest |coef| x spread for other kinds)."""
    try:
        imp = np.abs(shap_contributions(model, w_NxK, target)).mean(axis=0)
    except RegmixError:
        imp = np.array([np.ptp(partial_dependence(model, w_NxK, [d], target, points=5)["predicted"]) for d in model.domains])
    return [model.domains[i] for i in np.argsort(-imp)[:n]]


def interaction_strength(model: FittedModel, w_NxK: np.ndarray, domains: list[str], target: int = 0,
                         points: int = 5, background: int = 40, seed: int = 0) -> pd.DataFrame:
    """Friedman's H^2 for each pair of `domains`: the share of the pair's joint partial dependence that
    the two one-domain effects do not explain (0 = additive; LightGBM has no pairwise SHAP built in).
    Pairs set both weights on a grid (shrunk where the two would sum past 1), the other domains
    rescaled to the remainder."""
    w = np.asarray(w_NxK, float)
    rng = np.random.default_rng(seed)
    bg = w[rng.choice(len(w), min(background, len(w)), replace=False)]
    names = list(model.domains)
    idx = [names.index(d) for d in domains]
    grids = {k: pd_grid(w, k, points) for k in idx}
    pairs = [(a, b) for a in range(len(idx)) for b in range(a + 1, len(idx))]
    batch = []
    for a, b in pairs:
        i, j = idx[a], idx[b]
        gi, gj = grids[i], grids[j]
        top = gi[-1] + gj[-1]
        if top > 1:  # keep every cell a mixture: the pair's two shares sum to at most 1
            gi, gj = gi / top, gj / top
        others = np.ones(len(names), bool)
        others[[i, j]] = False
        for vi in gi:
            for vj in gj:
                x = bg.copy()
                x[:, others] *= ((1.0 - vi - vj) / np.maximum(1.0 - bg[:, i] - bg[:, j], 1e-12))[:, None]
                x[:, i], x[:, j] = vi, vj
                batch.append(x)
    h = pd.DataFrame(0.0, index=domains, columns=domains)
    if not pairs:
        return h
    pred = _predict(model.full[target], np.concatenate(batch)).reshape(len(pairs), points, points, len(bg)).mean(axis=3)
    for (a, b), joint in zip(pairs, pred):
        joint = joint - joint.mean()
        pi = joint.mean(axis=1, keepdims=True)
        pj = joint.mean(axis=0, keepdims=True)
        total = np.sum(joint**2)
        h.iloc[a, b] = h.iloc[b, a] = float(np.sum((joint - pi - pj) ** 2) / total) if total > 0 else 0.0
    return h


# -- optimization ----------------------------------------------------------------------------------
def candidate_predictions(model: FittedModel, samples: int = 100_000, seed: int = 0,
                          space: MixtureSpace | None = None, target: int = 0) -> np.ndarray:
    """Predicted target of `samples` simulated candidates drawn as `regmix optimize` draws them."""
    space = space or MixtureSpace.from_prior(list(model.domains), model.prior_K)
    cand = sample_mixtures(space, samples, np.random.default_rng(seed), "regmix", allow_fewer=True, progress=False)
    return model.full[target].predict(cand)


def reference_mixtures(model: FittedModel, chosen_K, natural: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """chosen, natural (token shares where known, else the runs' mean mixture) and uniform."""
    doms = list(model.domains)
    out = {"chosen": dict(zip(doms, map(float, chosen_K)))}
    if natural:
        total = sum(natural.get(d, 0.0) for d in doms)
        out["natural (token shares)"] = {d: natural.get(d, 0.0) / total for d in doms}
    else:
        out["runs' mean (prior)"] = dict(zip(doms, map(float, model.prior_K)))
    out["uniform"] = {d: 1.0 / len(doms) for d in doms}
    return out


def predict_named(model: FittedModel, mixtures: dict[str, dict[str, float]], target: int = 0) -> dict[str, float]:
    w = np.array([[m.get(d, 0.0) for d in model.domains] for m in mixtures.values()])
    return dict(zip(mixtures, map(float, model.full[target].predict(w))))


def total_variation(a_K, b_K) -> float:
    """Half the L1 distance between two mixtures: the share of tokens that would move."""
    return 0.5 * float(np.abs(np.asarray(a_K) - np.asarray(b_K)).sum())


def sensitivity(model: FittedModel, base, settings: dict[str, list], space: MixtureSpace | None = None,
                models: dict[str, FittedModel] | None = None,
                spaces: dict[str, MixtureSpace] | None = None) -> pd.DataFrame:
    """Re-run the optimizer with one knob changed at a time: how far the chosen weights move.

    `base` is an OptimizeConfig; `settings` maps a config field (top_k, samples, kl_strength, seed) to the
    values to try; `models` maps a regressor name to another fitted model of the same sweep. Columns:
    knob, value, distance (total variation from the base answer), predicted (by `model`), weights_K.
    `spaces` maps a name to another space (other bounds or repetition caps) to optimize in."""
    from regmix.optimize import optimize

    ref = optimize(model, space, base, progress=False).weights_K
    rows = [{"knob": "base", "value": "base", "distance": 0.0, "predicted": float(model.predict(ref[None])[0, 0]),
             "weights_K": ref}]
    for knob, values in settings.items():
        for v in values:
            w = optimize(model, space, replace(base, **{knob: v}), progress=False).weights_K
            rows.append({"knob": knob, "value": v, "distance": total_variation(w, ref),
                         "predicted": float(model.predict(w[None])[0, 0]), "weights_K": w})
    for name, other in (models or {}).items():
        w = optimize(other, space, base, progress=False).weights_K
        rows.append({"knob": "regressor", "value": name, "distance": total_variation(w, ref),
                     "predicted": float(model.predict(w[None])[0, 0]), "weights_K": w})
    for name, other in (spaces or {}).items():
        w = optimize(model, other, base, progress=False).weights_K
        rows.append({"knob": "bounds", "value": name, "distance": total_variation(w, ref),
                     "predicted": float(model.predict(w[None])[0, 0]), "weights_K": w})
    return pd.DataFrame(rows)


def capped_space(model: FittedModel, upper: dict[str, float]) -> MixtureSpace:
    """The model's default space with upper bounds on some domains (e.g. {"pile_cc": 0.5})."""
    up = np.array([upper.get(d, 1.0) for d in model.domains])
    return MixtureSpace.from_prior(list(model.domains), model.prior_K, upper=up)


def epoch_plan(weights: dict[str, float], token_budget: float, tokens: dict[str, float],
               max_epochs: float | None = None) -> pd.DataFrame:
    """Tokens drawn and epochs (repetitions) per domain for a run of `token_budget` tokens."""
    from regmix.export.inputs import Budget

    plan = Budget(token_budget, tokens, max_epochs).plan(weights)
    frame = pd.DataFrame([{"domain": d, **row} for d, row in plan.items()])
    frame["over_cap"] = [max_epochs is not None and e > max_epochs * (1 + 1e-9) for e in frame["epochs"]]
    return frame.sort_values("weight", ascending=False, ignore_index=True)


def fold_spread(model: FittedModel, w_K, target: int = 0) -> tuple[float, float]:
    """Mean and sample std over the fold models of the prediction at one mixture: its uncertainty."""
    p = model.predict_folds(np.asarray(w_K, float)[None])[:, 0, target]
    return float(p.mean()), float(p.std(ddof=1)) if len(p) > 1 else 0.0


