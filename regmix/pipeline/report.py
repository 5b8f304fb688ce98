"""The pipeline's report: DIR/report.md and DIR/report.html (one self-contained file, plots embedded as
PNG), drawn from the summary (`regmix.pipeline.results`) and the files the stages wrote."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from regmix import plots
from regmix.files import atomic_write_text
from regmix.pipeline import merging
from regmix.report_page import to_html  # noqa: F401 (the page writer, shared with `regmix report`)
from regmix.pipeline.results import MEAN_TARGET, final_runs, verdict

COLORS = {"optimized": "#d62728", "uniform": "#7f7f7f", "natural": "#1f77b4", "best_proxy": "#2ca02c",
          "optimized_mean": "#ff7f0e"}
SHORT = {"optimized": "optimized", "uniform": "uniform", "natural": "natural", "best_proxy": "best proxy",
         "optimized_mean": "opt. for\nmean loss"}
LABELS = {"optimized": "optimized (RegMix)", "uniform": "uniform", "natural": "natural (token shares)",
          "best_proxy": "best proxy of the sweep", "optimized_mean": "optimized for mean loss"}


# -- plots ---------------------------------------------------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plot_fit(cfg, out: Path, summary: dict) -> bytes:
    oof = pd.read_csv(out / "fit" / "model" / "cv_predictions.csv")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, (t, name) in zip(axes, [(cfg.target, f"{cfg.target}{' (held out)' if cfg.held_out else ''}"),
                                    (MEAN_TARGET, "mean over training domains")]):
        plots.oof_scatter(oof[t], oof[f"{t}:oof"], name, "nats/byte", ax=ax)
    fig.suptitle(f"How well the regressor predicts proxies it did not see ({summary['cv']['n_runs']} proxies)", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def sweep_position(cfg, out: Path) -> dict:
    """Where the optimized mixture's predicted proxy loss sits among the sweep's measured proxies, with the
    fold models' spread of that prediction."""
    oof = pd.read_csv(out / "fit" / "model" / "cv_predictions.csv")
    chosen = json.loads((out / "optimize" / "mixture.json").read_text())
    t = cfg.target
    losses = oof[t].to_numpy(np.float64)
    key = next((k for k in chosen["predicted"] if k == t or k.endswith(t)), None)
    if key is None:
        return {}
    predicted = float(chosen["predicted"][key])
    u = chosen.get("uncertainty", {}).get(key, {})
    return {"losses": losses, "predicted": predicted, "fold_std": float(u.get("fold_std", float("nan"))),
            "below": int((losses < predicted).sum()), "n": len(losses)}


def plot_sweep(cfg, pos: dict) -> bytes:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.hist(pos["losses"], bins=min(40, max(8, pos["n"] // 4)), color="#56B4E9", edgecolor="white",
            label=f"sweep proxies ({pos['n']}), measured")
    ax.axvline(pos["predicted"], color="#D55E00", lw=2, label="optimized mixture, predicted")
    if np.isfinite(pos["fold_std"]) and pos["fold_std"] > 0:
        ax.axvspan(pos["predicted"] - pos["fold_std"], pos["predicted"] + pos["fold_std"], color="#D55E00", alpha=0.15,
                   label="+- fold-model spread")
    ax.set_xlabel(f"{cfg.target} validation loss of a proxy (nats/byte)")
    ax.set_ylabel("proxies")
    ax.set_title("The sweep's losses, and where the chosen mixture is predicted to land")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return _png(fig)


def plot_mixtures(summary: dict) -> bytes:
    held = ", held out" if summary["target"] not in summary["train_domains"] else ""
    mixtures = {LABELS.get(n, n): {d: w.get(d, 0.0) for d in summary["train_domains"]} for n, w in summary["mixtures"].items()}
    fig = plots.mixture_bars(mixtures, f"Mixtures trained in the final runs (target: {summary['target']} loss{held})")
    return _png(fig)


def plot_final(cfg, out: Path, summary: dict) -> bytes:
    runs = final_runs(out)
    tokens_per_step = cfg.final.train.batch * cfg.final.train.seq_len
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.3), gridspec_kw={"width_ratios": [1.4, 1]})
    ymax = -np.inf
    ymin = np.inf
    t = cfg.final.train
    curve_windows = t.curve_windows_used
    split_score = curve_windows != t.eval_windows
    for n in summary["mixtures"]:
        seeds = sorted(runs[n])
        steps = np.asarray(runs[n][seeds[0]]["curve_steps"])
        c = np.array([runs[n][s]["curve_loss"][cfg.target] for s in seeds])
        c, steps = c[:, steps > 0], steps[steps > 0]  # the untrained model's loss would flatten the plot
        m = c.mean(axis=0)
        ax.plot(steps * tokens_per_step / 1e3, m, "-o", ms=3, color=COLORS.get(n), label=LABELS.get(n, n))
        if len(seeds) > 1:
            ax.fill_between(steps * tokens_per_step / 1e3, c.min(axis=0), c.max(axis=0), color=COLORS.get(n), alpha=0.12)
        ymin = min(ymin, np.nanmin(c))
        ymax = max(ymax, np.nanmax(c[:, len(steps) // 3:]))
        if split_score:  # the result, scored on more of the split than the curves: a marker of its own
            score = summary["final_runs"][n]["target"]
            ax.plot([steps[-1] * tokens_per_step / 1e3], [score], "D", ms=6, color=COLORS.get(n), mec="k")
            ymin = min(ymin, score)
    if np.isfinite(ymin) and np.isfinite(ymax) and ymax > ymin:
        ax.set_ylim(ymin - 0.05 * (ymax - ymin), ymax + 0.1 * (ymax - ymin))
    ax.set_xlabel("training tokens (thousands)")
    ax.set_ylabel(f"{cfg.target} validation loss (nats/byte)")
    if split_score:
        scored = summary["final"].get("target_eval_tokens")
        whole = "whole split" if t.eval_windows == 0 else f"first {t.eval_windows} windows"
        ax.set_title(f"Final runs: held-out target loss (mean over seeds, band = min..max)\n"
                     f"lines: first {curve_windows * t.seq_len / 1e3:.0f}k validation tokens; diamonds: the score, "
                     f"{whole}{f' ({scored / 1e3:.0f}k)' if scored else ''}", fontsize=9)
    else:
        ax.set_title("Final runs: held-out target loss\n(mean over seeds, band = min..max)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    margins = summary["margins"]
    names = list(margins)
    for i, n in enumerate(names):
        r = margins[n]
        bx.bar(i, r["mean"], color=COLORS.get(n), alpha=0.6, yerr=r["std"] if r["n_seeds"] > 1 else None, capsize=4)
        bx.scatter(np.full(len(r["seeds"]), i), r["seeds"], color="k", s=14, zorder=3)
    bx.axhline(0, color="k", lw=0.8)
    bx.set_xticks(range(len(names)), [SHORT.get(n, n) for n in names], fontsize=9)
    bx.set_ylabel("baseline loss - optimized loss")
    bx.set_title("Paired margin of the optimized mixture\n(> 0: optimized better; dots = seeds)", fontsize=10)
    bx.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def plot_times(summary: dict) -> bytes:
    secs = summary["stage_seconds"]
    fig, ax = plt.subplots(figsize=(8, 2.8))
    names = list(secs)
    ax.barh(names[::-1], [secs[n] for n in names[::-1]], color="#1f77b4")
    for i, n in enumerate(names[::-1]):
        ax.text(secs[n], i, f" {secs[n]:.1f}s", va="center", fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_title(f"Time per stage (total {summary['total_seconds'] / 60:.1f} min; report time not included)", fontsize=10)
    ax.set_xlim(0, max(secs.values()) * 1.2 + 1)
    fig.tight_layout()
    return _png(fig)


# -- text ----------------------------------------------------------------------------------------
def _fmt_mix(w: dict) -> str:
    return ", ".join(f"{d} {v:.2f}" for d, v in sorted(w.items(), key=lambda kv: -kv[1]) if v >= 0.005)


def _margin_table(margins: dict, ref: str) -> list[str]:
    """Every comparison with its paired interval and verdict ('beats' only when the interval excludes zero)."""
    lines = [f"| versus | margin (nats/byte, mean +- sd) | 95% paired interval | {ref} better on | verdict |",
             "| --- | ---: | --- | ---: | --- |"]
    for b, r in margins.items():
        ci = r.get("ci95")
        interval = f"{ci[0]:+.4f} to {ci[1]:+.4f}" if ci and None not in ci and all(map(np.isfinite, ci)) else "none"
        lines.append(f"| {LABELS.get(b, b)} | {r['mean']:+.4f} +- {r['std']:.4f} | {interval} | "
                     f"{r['wins']}/{r['n_seeds']} | {ref} {r.get('verdict') or verdict(r['seeds'])} |")
    return lines


def _mean_target_lines(summary: dict) -> list[str]:
    """The section on the second target: the same runs scored by the mean training-domain loss."""
    mt = summary["mean_target"]
    ref = "optimized_mean" if "optimized_mean" in mt["final_runs"] else "optimized"
    lines = ["## The other target: mean loss over the training domains", "",
              f"The same final runs, scored by their mean validation loss over the training domains, against "
              f"{LABELS[ref]} (margin = other - reference, > 0: the reference is better):", "",
              *_margin_table(mt["margins"], "reference")]
    if "uniform" in mt["margins"]:
        r = mt["margins"]["uniform"]
        word = {"beats": "beats", "ties": "ties with", "loses to": "loses to"}[r.get("verdict") or verdict(r["seeds"])]
        lines += ["", f"On the mean loss, {LABELS[ref]} {word} uniform ({r['mean']:+.3f} +- {r['std']:.3f}, "
                  f"{r['wins']}/{r['n_seeds']} seeds); the mixture chosen for the held-out target is a different one, "
                  "which is why the target has to be chosen with care."]
    nat, uni = summary["mixtures"].get("natural"), summary["mixtures"].get("uniform")
    if nat and uni and max(abs(nat[d] - uni[d]) for d in uni) < 0.02:
        lines += ["", "Note: the natural (token-share) mixture is within 0.02 of uniform on every domain here, because "
                  "the embedded domains hold about the same number of tokens; the two baselines are nearly the same run."]
    return lines


def markdown(summary: dict, images: dict[str, str]) -> str:
    t = summary["target"]
    fr, mg = summary["final_runs"], summary["margins"]
    n_seeds = len(summary["final"]["seeds"])
    run = summary.get("run", {})
    corpus = run.get("corpus", "demo")
    where = "the embedded corpus" if corpus == "demo" else f"corpus `{corpus}`"
    held = "held-out " if t not in summary["train_domains"] else ""
    lines = [f"# regmix: the best mixture for the {held}'{t}' domain, on {where}", ""]
    opt = fr["optimized"]["target"]
    claims = []
    for b in ("uniform", "natural", "best_proxy"):
        if b in mg:
            r = mg[b]
            word = r.get("verdict") or verdict(r["seeds"])  # a summary of before verdicts: from its seeds
            ci = r.get("ci95")
            interval = f", 95% paired interval {ci[0]:+.3f} to {ci[1]:+.3f}" if ci and None not in ci else ""
            claims.append(f"{word} **{LABELS[b]}** ({r['mean']:+.3f} +- {r['std']:.3f} nats/byte{interval}; "
                           f"better on {r['wins']} of {r['n_seeds']} seeds)")
    lines += [
        f"Target: {summary['target_metric']}. {summary['sweep']['n_proxies']} proxies of "
        f"{summary['sweep']['params'] / 1e3:.0f}k parameters x {summary['sweep']['tokens_per_proxy'] / 1e3:.0f}k tokens "
        f"were trained on mixtures of {', '.join(summary['train_domains'])}; a regressor ({summary['fit']['kind']}) was fitted "
        f"from mixture to loss and {summary['fit']['samples']:,} simulated mixtures were scored (mean of the "
        f"{summary['fit']['top_k']} best); final runs of {summary['final']['params'] / 1e3:.0f}k parameters "
        f"({summary['final']['params_ratio']:.1f}x) x {summary['final']['tokens_per_run'] / 1e3:.0f}k tokens, "
        f"paired over {n_seeds} seed(s) (same initialization for every mixture of a seed).",
        "",
        f"**Result**: the optimized mixture reaches {opt:.3f} nats/byte; it " + "; ".join(claims) + ".",
        "",
        "## Final runs (lower is better)", "",
        f"| rank | mixture | {t} loss (mean) | per seed | proxy loss predicted by the regressor | mean train-domain loss |",
        "| ---: | --- | ---: | --- | ---: | ---: |",
    ]
    for i, n in enumerate(summary["ranking"], 1):
        r = fr[n]
        lines.append(f"| {i} | {LABELS.get(n, n)} | {r['target']:.4f} | {', '.join(f'{v:.3f}' for v in r['seeds'])} | "
                     f"{summary['predicted'][n][t]:.4f} | {r['train_mean']:.4f} |")
    lines += ["", "Paired margins (baseline - optimized per seed, > 0: optimized better):", "",
              *_margin_table(mg, "optimized")]
    lines += ["", f"![final runs]({images['final']})", "", "## Mixtures", "",
              "| mixture | weights |", "| --- | --- |"]
    for n, w in summary["mixtures"].items():
        lines.append(f"| {LABELS.get(n, n)} | {_fmt_mix(w)} |")
    lines += ["", f"![mixtures]({images['mixtures']})", "", "## Fit quality", "",
              f"Out-of-fold Spearman {summary['cv']['spearman']:.3f}, Pearson {summary['cv']['pearson']:.3f} over "
              f"{summary['cv']['n_runs']} proxies for the target; {summary['cv_mean_target']['spearman']:.3f} / "
              f"{summary['cv_mean_target']['pearson']:.3f} for the mean training-domain loss.", "",
              f"![fit]({images['fit']})", ""]
    pos = summary.get("sweep_position")
    if pos:
        lines += ["## The sweep", "",
                  f"The {pos['n']} proxies' {t} losses span {pos['min']:.3f} to {pos['max']:.3f} nats/byte (median "
                  f"{pos['median']:.3f}). The optimized mixture is predicted at {pos['predicted']:.3f} +- "
                  f"{pos['fold_std']:.3f} (spread of the cross-validation fold models), below {pos['n'] - pos['below']} "
                  f"of the {pos['n']} proxies.", "", f"![sweep]({images['sweep']})", ""]
    lines += _mean_target_lines(summary)
    lines += merging.report_section(summary, images)
    lines += ["", "## Time per stage", "", "| stage | seconds |", "| --- | ---: |"]
    for s, v in summary["stage_seconds"].items():
        lines.append(f"| {s} | {v:.1f} |")
    lines += [f"| total | {summary['total_seconds']:.1f} |", "", f"![times]({images['times']})", "",
              "## Exports of the optimized mixture", ""]
    for fmt, path in summary["exports"].items():
        lines.append(f"- {fmt}: `{path}`")
    lines += ["", "Margins are paired differences (baseline - optimized) over seeds: mean +- sample std. "
              "\"Beats\" means the 95% paired t interval of the margin excludes zero; \"ties\" that it does not.", ""]
    if run:
        lines += ["## How this was made", "", f"- command: `{run['command']}`", f"- regmix {run['regmix_version']}",
                  "- config (every knob, defaults included):", "", "```", json.dumps(run["config"], indent=1),
                  "```", ""]
    return "\n".join(lines)


def write_report(summary: dict, cfg, out: str | Path) -> None:
    """Write report.md (+ report/*.png) and report.html for a pipeline folder."""
    matplotlib.use("Agg")  # files only, never a window
    out = Path(out)
    images = {"final": plot_final(cfg, out, summary), "mixtures": plot_mixtures(summary),
              "fit": plot_fit(cfg, out, summary), "times": plot_times(summary), **merging.report_figures(summary, out)}
    pos = sweep_position(cfg, out)
    if pos:
        images["sweep"] = plot_sweep(cfg, pos)
        losses = pos.pop("losses")
        summary = {**summary, "sweep_position": {**pos, "min": float(losses.min()), "max": float(losses.max()),
                                                 "median": float(np.median(losses))}}
    names = {k: f"report/{k}.png" for k in images}
    (out / "report").mkdir(parents=True, exist_ok=True)
    for k, data in images.items():
        (out / names[k]).write_bytes(data)
    md = markdown(summary, names)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", to_html(md, images, names))
