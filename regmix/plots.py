"""Figures for studying a sweep and its fit: each function takes plain arrays/frames and returns a
matplotlib Figure (Agg backend, files only). Colours: Okabe-Ito, safe for colour-blind readers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def oof_scatter(y_true, y_pred, target: str, unit: str = "nats/byte"):
    """Out-of-fold prediction against the true loss, with the y = x line."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(y, p, s=22, alpha=0.75, color=PALETTE[0], edgecolor="none", label="proxy run")
    lo, hi = min(y.min(), p.min()), max(y.max(), p.max())
    ax.plot([lo, hi], [lo, hi], "--", color="#999", lw=1, label="prediction = truth")
    ax.set_xlabel(f"true {target} loss ({unit})")
    ax.set_ylabel(f"out-of-fold prediction ({unit})")
    ax.set_title(f"Out-of-fold predicted vs true: {target}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def mixture_bars(mixtures: dict[str, dict[str, float]]):
    """Grouped bars, one group per domain, one bar per mixture (e.g. chosen, natural, uniform)."""
    names = list(mixtures)
    domains = sorted({d for w in mixtures.values() for d in w})
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(domains) + 2), 4.3))
    width = 0.8 / len(names)
    x = np.arange(len(domains))
    for i, n in enumerate(names):
        ax.bar(x + (i - (len(names) - 1) / 2) * width, [mixtures[n].get(d, 0.0) for d in domains], width,
               label=n, color=PALETTE[i % len(PALETTE)])
    tilt = max(len(d) for d in domains) * len(domains) > 45  # names that would run into each other side by side
    ax.set_xticks(x, domains, rotation=35 if tilt else 0, ha="right" if tilt else "center")
    ax.set_ylabel("share of tokens")
    ax.set_title("Mixtures compared")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.2)  # room for the legend above the bars
    ax.legend(fontsize=8, ncol=len(names), loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def target_correlation(losses: pd.DataFrame):
    """Spearman correlation between the target columns across runs, as a heat map."""
    c = losses.corr(method="spearman")
    fig, ax = plt.subplots(figsize=(0.5 * len(c) + 3, 0.5 * len(c) + 2.5))
    im = ax.imshow(c.to_numpy(), cmap="cividis", vmin=-1, vmax=1)
    ax.set_xticks(range(len(c)), c.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(c)), c.index, fontsize=8)
    fig.colorbar(im, ax=ax, label="Spearman correlation across runs")
    ax.set_title("Which domains' losses move together")
    fig.tight_layout()
    return fig


def residuals_vs_weights(weights: pd.DataFrame, residual, unit: str = "nats/byte"):
    """Out-of-fold residual (prediction - truth) against each domain's weight, one panel per domain."""
    r = np.asarray(residual, float)
    cols = list(weights.columns)
    ncol = min(4, len(cols))
    nrow = -(-len(cols) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False, sharey=True)
    for ax, d in zip(axes.flat, cols):
        ax.scatter(weights[d], r, s=12, alpha=0.7, color=PALETTE[0], edgecolor="none")
        ax.axhline(0, color="#999", lw=1)
        ax.set_xlabel(f"{d} (share of tokens)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"residual ({unit})", fontsize=8)
    for ax in list(axes.flat)[len(cols):]:
        ax.set_visible(False)
    fig.suptitle("Out-of-fold residual against each domain weight")
    fig.tight_layout()
    return fig


def learning_curve(curve: pd.DataFrame):
    """Spearman against the number of runs: `curve` has columns n_runs and spearman (one row per repeat)."""
    g = curve.groupby("n_runs")["spearman"]
    m, lo, hi = g.mean(), g.quantile(0.1), g.quantile(0.9)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(m.index, m.to_numpy(), "-o", color=PALETTE[0], label="mean over repeats")
    ax.fill_between(m.index, lo.to_numpy(), hi.to_numpy(), color=PALETTE[0], alpha=0.2, label="10th-90th percentile")
    ax.set_xlabel("number of proxy runs used to fit")
    ax.set_ylabel("out-of-fold Spearman (rank correlation)")
    ax.set_title("Learning curve: how many runs the fit needs")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def shap_contributions(model, w_NxK) -> np.ndarray:
    """Per-domain SHAP contributions of a LightGBMModel (mean over its bag), N x K (bias column dropped)."""
    w = np.asarray(w_NxK, float)
    return np.mean([b.predict(w, pred_contrib=True)[:, :-1] for b in model.boosters], axis=0)


def domain_effects(weights: pd.DataFrame, contrib, unit: str = "nats/byte"):
    """Mean |SHAP| per domain as horizontal bars: which domains' weights move the predicted loss most."""
    imp = pd.Series(np.abs(np.asarray(contrib)).mean(axis=0), index=weights.columns).sort_values()
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(imp) + 1.5))
    ax.barh(imp.index, imp.to_numpy(), color=PALETTE[0])
    ax.set_xlabel(f"mean |SHAP contribution| to predicted loss ({unit})")
    ax.set_title("Per-domain effect on the predicted loss (LightGBM SHAP)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
