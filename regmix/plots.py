"""Figures for studying a sweep and its fit: each function takes plain arrays/frames and returns a
matplotlib Figure (Agg backend, files only). Colours: Okabe-Ito, safe for colour-blind readers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def oof_scatter(y_true, y_pred, target: str, unit: str = "nats/byte", ax=None):
    """Out-of-fold prediction against the true loss, with the y = x line (Spearman and MAE in the title)."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    fig, ax = _axes(ax, (5, 4.5))
    ax.scatter(y, p, s=16, alpha=0.6, color=PALETTE[0], edgecolor="none", label="proxy run")
    lo, hi = min(y.min(), p.min()), max(y.max(), p.max())
    ax.plot([lo, hi], [lo, hi], "--", color="#555", lw=1, label="prediction = truth")
    rho = pd.Series(y).corr(pd.Series(p), method="spearman")
    ax.set_xlabel(f"measured {target} loss ({unit})")
    ax.set_ylabel(f"out-of-fold prediction ({unit})")
    ax.set_title(f"{target}: Spearman {rho:.3f}, MAE {np.mean(np.abs(p - y)):.3f}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def oof_grid(table: pd.DataFrame, targets: list[str], names: list[str] | None = None, unit: str = "nats/byte"):
    """One out-of-fold scatter per target (columns `<t>` and `<t>:oof` of `table`)."""
    names = names or targets
    ncol = min(3, len(targets))
    nrow = -(-len(targets) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 4.2 * nrow), squeeze=False)
    for ax, t, n in zip(axes.flat, targets, names):
        oof_scatter(table[t], table[f"{t}:oof"], n, unit, ax=ax)
    for ax in list(axes.flat)[len(targets):]:
        ax.set_visible(False)
    fig.suptitle("Out-of-fold predicted vs measured (each run predicted by a model that never saw it)")
    fig.tight_layout()
    return fig


def _axes(ax, size):
    if ax is None:
        return plt.subplots(figsize=size)
    return ax.figure, ax


def mixture_bars(mixtures: dict[str, dict[str, float]], title: str = "Mixtures compared"):
    """Grouped bars, one group per domain, one bar per mixture (e.g. chosen, natural, uniform).
    Many domains: horizontal bars, so every name is printed level and in full."""
    names = list(mixtures)
    first = next(iter(mixtures.values()))
    domains = list(first) + sorted({d for w in mixtures.values() for d in w} - set(first))
    width = 0.8 / len(names)
    x = np.arange(len(domains))
    if len(domains) > 8:
        order = sorted(domains, key=lambda d: first.get(d, 0.0))  # largest share of the first mixture on top
        fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(domains) * max(1, len(names) / 3) + 1.6))
        for i, n in enumerate(names):
            ax.barh(x - (i - (len(names) - 1) / 2) * width, [mixtures[n].get(d, 0.0) for d in order], width,
                    label=n, color=PALETTE[i % len(PALETTE)])
        ax.set_yticks(x, order)
        ax.set_xlabel("share of tokens")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=9, loc="lower right")
    else:
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(domains) + 2), 4.3))
        for i, n in enumerate(names):
            ax.bar(x + (i - (len(names) - 1) / 2) * width, [mixtures[n].get(d, 0.0) for d in domains], width,
                   label=n, color=PALETTE[i % len(PALETTE)])
        tilt = max(len(d) for d in domains) * len(domains) > 45  # names that would run into each other side by side
        ax.set_xticks(x, domains, rotation=35 if tilt else 0, ha="right" if tilt else "center")
        ax.set_ylabel("share of tokens")
        ncol = len(names) if sum(len(n) for n in names) < 50 else 2
        rows = -(-len(names) // ncol)
        ax.set_ylim(0, ax.get_ylim()[1] * (1.1 + 0.1 * rows))  # room for the legend above the bars
        ax.legend(fontsize=8, ncol=ncol, loc="upper center")
        ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def target_correlation(losses: pd.DataFrame):
    """Spearman correlation between the target columns across runs, as a heat map."""
    c = losses.corr(method="spearman")
    fig, ax = plt.subplots(figsize=(0.5 * len(c) + 3, 0.5 * len(c) + 2.5))
    v = c.to_numpy()
    im = ax.imshow(v, cmap="PuOr_r", vmin=-1, vmax=1)  # diverging, readable with red-green colour blindness
    if len(c) <= 20:
        for i in range(len(c)):
            for j in range(len(c)):
                ax.text(j, i, f"{v[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(v[i, j]) > 0.6 else "black")
    ax.set_xticks(range(len(c)), c.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(c)), c.index, fontsize=8)
    fig.colorbar(im, ax=ax, label="Spearman correlation across runs", shrink=0.8)
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
        ax.scatter(weights[d], r, s=12, alpha=0.6, color=PALETTE[0], edgecolor="none")
        ax.axhline(0, color="#999", lw=1)
        x, m = _binned_median(weights[d].to_numpy(), r)
        ax.plot(x, m, "-", color=PALETTE[3], lw=1.8, label="median (bins of runs)")
        ax.set_xlabel(f"{d} (share of tokens)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"residual ({unit})", fontsize=8)
    for ax in list(axes.flat)[len(cols):]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Out-of-fold residual (prediction - truth) against each domain weight")
    fig.tight_layout()
    return fig


def _binned_median(x, y, bins: int = 8):
    """Median of y in bins of x holding about the same number of runs each."""
    order = np.argsort(x)
    parts = [p for p in np.array_split(order, min(bins, max(1, len(x) // 5))) if len(p)]
    return np.array([np.median(x[p]) for p in parts]), np.array([np.median(y[p]) for p in parts])


def learning_curve(curve: pd.DataFrame, unit: str = "nats/byte"):
    """Spearman (and top-k regret, where `curve` has it) against the number of runs, one line per
    regressor (`kind` column), band = 10th-90th percentile over the repeats."""
    curve = curve if "kind" in curve else curve.assign(kind="model")
    panels = [("spearman", "held-out Spearman (rank correlation)", "Ranking of unseen runs")]
    if "regret" in curve:
        panels.append(("regret", f"top-k regret ({unit})", "Loss given up by trusting the ranking"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.2), squeeze=False)
    for ax, (col, label, title) in zip(axes[0], panels):
        for i, (kind, part) in enumerate(curve.groupby("kind", sort=False)):
            g = part.groupby("n_runs")[col]
            m, lo, hi = g.mean(), g.quantile(0.1), g.quantile(0.9)
            c = PALETTE[i % len(PALETTE)]
            ax.plot(m.index, m.to_numpy(), "-o", color=c, label=f"{kind} (mean)")
            ax.fill_between(m.index, lo.to_numpy(), hi.to_numpy(), color=c, alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(curve["n_runs"].unique()), [str(n) for n in sorted(curve["n_runs"].unique())])
        ax.set_xlabel("proxy runs used to fit (log scale)")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="band: 10th-90th pct.", title_fontsize=7)
    fig.suptitle("Learning curve: how many runs the fit needs (scored on the runs left out)")
    fig.tight_layout()
    return fig


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


def shap_scatter(weights: pd.DataFrame, contrib, domains: list[str], unit: str = "nats/byte"):
    """SHAP contribution against the domain's weight, one panel per domain: the shape of each effect."""
    phi = pd.DataFrame(np.asarray(contrib), columns=weights.columns)
    ncol = min(3, len(domains))
    nrow = -(-len(domains) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, 3.0 * nrow), squeeze=False, sharey=True)
    for ax, d in zip(axes.flat, domains):
        ax.scatter(weights[d], phi[d], s=10, alpha=0.6, color=PALETTE[2], edgecolor="none")
        ax.axhline(0, color="#555", lw=0.8)
        ax.set_xlabel(f"{d} (share of tokens)", fontsize=9)
        ax.set_title(d, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"SHAP contribution ({unit})", fontsize=9)
    for ax in list(axes.flat)[len(domains):]:
        ax.set_visible(False)
    fig.suptitle("SHAP contribution of each domain's weight (< 0: lowers the predicted loss)")
    fig.tight_layout()
    return fig


def partial_dependence(pdp: pd.DataFrame, target: str, unit: str = "nats/byte"):
    """Predicted loss as one domain's weight moves (others rescaled in proportion), one panel per domain;
    band = 10th-90th percentile over the background runs."""
    domains = list(dict.fromkeys(pdp["domain"]))
    ncol = min(3, len(domains))
    nrow = -(-len(domains) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.8 * ncol, 3.0 * nrow), squeeze=False, sharey=True)
    for ax, d in zip(axes.flat, domains):
        part = pdp[pdp["domain"] == d]
        ax.plot(part["weight"], part["predicted"], "-", color=PALETTE[0], lw=2, label="mean over runs")
        ax.fill_between(part["weight"], part["ice_lo"], part["ice_hi"], color=PALETTE[0], alpha=0.15, label="10th-90th pct.")
        ax.set_xlabel(f"{d} (share of tokens)", fontsize=9)
        ax.set_title(d, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"predicted {target} ({unit})", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    for ax in list(axes.flat)[len(domains):]:
        ax.set_visible(False)
    fig.suptitle(f"Partial dependence of the predicted {target} loss on each domain's share")
    fig.tight_layout()
    return fig


def interaction_heatmap(h: pd.DataFrame):
    """Pairwise interaction strength (Friedman's H^2) between domains, as a heat map with the values."""
    v = h.to_numpy()
    fig, ax = plt.subplots(figsize=(0.75 * len(h) + 3, 0.75 * len(h) + 2))
    im = ax.imshow(v, cmap="cividis", vmin=0, vmax=max(0.05, float(np.nanmax(v))))
    for i in range(len(h)):
        for j in range(len(h)):
            if i != j:
                ax.text(j, i, f"{v[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if v[i, j] > 0.6 * im.get_clim()[1] else "white")
    ax.set_xticks(range(len(h)), h.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(h)), h.index)
    fig.colorbar(im, ax=ax, label="H² (share of the pair's effect that is not additive)", shrink=0.8)
    ax.set_title("Domain interactions in the fitted model (0 = effects add up)", fontsize=10)
    fig.tight_layout()
    return fig


def sweep_weights(weights: pd.DataFrame):
    """Spread of each domain's weight over the sweep's runs (box: quartiles; whiskers: 5th-95th pct.)."""
    order = weights.median().sort_values().index
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(order) + 1.6))
    ax.boxplot([weights[d] for d in order], vert=False, whis=(5, 95), showfliers=False,
               medianprops={"color": PALETTE[1]}, tick_labels=list(order))
    ax.set_xlabel("share of tokens in a run's mixture")
    ax.set_title(f"The sweep: {len(weights)} runs' mixtures, per domain")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def candidate_histogram(pred, marks: dict[str, float], target: str, unit: str = "nats/byte"):
    """Distribution of the candidates' predicted loss, with named mixtures marked as vertical lines."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.hist(np.asarray(pred, float), bins=60, color="#BBBBBB", edgecolor="white", label=f"{len(pred):,} candidates")
    styles = ["-", "--", ":", "-."]
    for i, (name, v) in enumerate(marks.items()):
        ax.axvline(v, color=PALETTE[(i + 0) % len(PALETTE)], lw=2, ls=styles[i % 4], label=f"{name}: {v:.3f}")
    ax.set_xlabel(f"predicted {target} loss ({unit})")
    ax.set_ylabel("candidate mixtures")
    ax.set_title("Simulated candidates: how good the regressor thinks they are", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside: never over the bars
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def sensitivity(sens: pd.DataFrame, domains: list[str]):
    """How far the chosen mixture moves when one optimizer setting changes: total-variation distance
    from the default answer (left) and the weights of every answer (right). The seed rows show noise."""
    rows = sens[sens["knob"] != "base"]
    labels = [f"{k} = {v}" for k, v in zip(rows["knob"], rows["value"])]
    knobs = list(dict.fromkeys(rows["knob"]))
    colors = [PALETTE[knobs.index(k) % len(PALETTE)] for k in rows["knob"]]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 0.4 * len(sens) + 2.2), gridspec_kw={"width_ratios": [1, 1.5]})
    y = np.arange(len(rows))[::-1]
    ax.barh(y, rows["distance"], color=colors)
    ax.set_yticks(y, labels)
    seed = rows[rows["knob"] == "seed"]["distance"]
    if len(seed):
        ax.axvline(seed.max(), color="#555", ls="--", lw=1, label="noise: another seed")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("share of tokens that moves (total variation)")
    ax.set_title("Distance from the default answer", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    w = np.stack(sens["weights_K"].to_numpy())
    im = bx.imshow(w, aspect="auto", cmap="cividis")
    bx.set_yticks(range(len(sens)), ["default"] + labels, fontsize=8)
    bx.set_xticks(range(len(domains)), domains, rotation=55, ha="right", fontsize=8)
    fig.colorbar(im, ax=bx, label="share of tokens")
    bx.set_title("Chosen weights per setting", fontsize=10)
    fig.suptitle("Sensitivity of the optimum to the optimizer's settings")
    fig.tight_layout()
    return fig


def epoch_plan(plan: pd.DataFrame, token_budget: float, max_epochs: float | None = None):
    """Epochs (passes over each domain's tokens) the mixture implies for a run of `token_budget` tokens."""
    p = plan.sort_values("epochs")
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(p) + 1.6))
    colors = [PALETTE[3] if o else PALETTE[0] for o in p["over_cap"]]
    ax.barh(p["domain"], p["epochs"], color=colors)
    for i, (e, t) in enumerate(zip(p["epochs"], p["tokens"])):
        ax.text(e, i, f" {e:.2f} ({t / 1e9:.2f}B tok.)", va="center", fontsize=8)
    if max_epochs is not None:
        ax.axvline(max_epochs, color=PALETTE[3], ls="--", lw=1.5, label=f"cap: {max_epochs:g} epochs")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("epochs (tokens drawn / tokens available)")
    ax.set_xlim(0, max(p["epochs"].max(), max_epochs or 0) * 1.35 + 1e-9)
    ax.set_title(f"Epoch plan for a {token_budget / 1e9:g}B-token run", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def save_png(fig, path) -> bytes:
    """Write the figure as PNG (and close it); returns the bytes, for pages that inline them."""
    import io
    from pathlib import Path

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
