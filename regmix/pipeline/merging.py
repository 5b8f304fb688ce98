"""Merging in the pipeline (final stage, `final.merging`): branches, merged-vs-trained correlation, domain
ablations around the optimized mixture, the upsampled final runs they choose, and their report section.

Files: DIR/merging/ holds the seed and branches (proxies.branches), compare.json (the first `n_compare`
sweep mixtures: merged, trained from the seed, the sweep's proxy), ablation.json (the table and the favoured
domains), rerank.json (regmix.pipeline.reranking: the regressor's best candidates re-scored by merging).
Each step is skipped when its file exists, so a killed stage resumes where it was.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from regmix.files import atomic_write_json
from regmix.pipeline.config import PipelineConfig
from regmix.pipeline.layout import done_path, stage_seconds, store_dir, sweep_dir

FOLDER = "merging"
RERANK_CHUNK = 64  # merged models scored at a time when re-ranking (one compiled shape)


def upsampled_name(f: float) -> str:
    return f"optimized_up{round(100 * f):02d}"


def merge_config(cfg: PipelineConfig, out: Path):
    from proxies.branches import MergeConfig, MergeSettings

    m = cfg.final.merging
    return MergeConfig(store=store_dir(out).absolute(), n_proxies=m.n_compare, model=cfg.sweep.model,
                       train_domains=list(cfg.train_domains), eval_domains=cfg.eval_domains, train=cfg.sweep.train,
                       merge=MergeSettings(seed_steps=m.seed_steps, branch_steps=m.branch_steps,
                                           branch_lr_factor=m.branch_lr_factor))


def _corr(a, b) -> dict:
    return {"spearman": float(stats.spearmanr(a, b)[0]), "pearson": float(stats.pearsonr(a, b)[0])}


def run_merging(cfg: PipelineConfig, out: Path, optimized: dict[str, float],
                natural: dict[str, float]) -> tuple[dict, dict | None]:
    """Train (or resume) the branches, then the comparison, the ablations and the re-ranking; returns
    ablation.json's and rerank.json's records (None: re-ranking off)."""
    from proxies.branches import continued_losses, load_params, train_branches
    from proxies.merge import ablation_mixtures, ablation_table, favoured_domains, merged_losses
    from regmix.corpus.store import TokenStore

    folder = out / FOLDER
    mcfg = merge_config(cfg, out)
    domains = list(cfg.train_domains)
    record = train_branches(mcfg, folder, force=True)  # branches of another config there are discarded
    store = TokenStore.open(mcfg.store)
    branches = load_params(folder, record, 1)
    score = lambda w, chunk=0: merged_losses(branches, w, store=store, eval_domains=[cfg.target], model=mcfg.model,
                                             train=mcfg.train, names=domains, chunk=chunk or len(w))[0][:, 0]
    compare = folder / "compare.json"
    if not compare.exists():
        mix = pd.read_csv(sweep_dir(out) / "mixtures.csv")
        metrics = pd.read_csv(sweep_dir(out) / "metrics.csv").set_index("run")
        ok = mix[mix["run"].map(metrics[f"{cfg.target}_val_loss"]).notna()].head(cfg.final.merging.n_compare)
        w = ok[domains].to_numpy(np.float64, copy=True)
        w /= w.sum(1, keepdims=True)
        t0 = time.perf_counter()
        merged = score(w)
        merge_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = continued_losses(mcfg, folder, record, w, checkpoint_dir=folder / "compare_ckpt")
        trained = res.val_loss_MxE[:, record["eval_domains"].index(cfg.target)]
        train_s = time.perf_counter() - t0
        atomic_write_json(compare, {"runs": ok["run"].tolist(), "merged": merged.tolist(), "trained": trained.tolist(),
                                    "sweep": metrics.loc[ok["run"], f"{cfg.target}_val_loss"].tolist(),
                                    "merge_seconds": merge_s, "trained_seconds": train_s})
    ablation = folder / "ablation.json"
    if not ablation.exists():
        names, w = ablation_mixtures(np.array([optimized.get(d, 0.0) for d in domains]), domains)
        table = ablation_table(names, score(w), domains)
        atomic_write_json(ablation, {"mixture": optimized, "table": table,
                                     "favoured": favoured_domains(table, cfg.final.merging.max_upsampled)})
    ranked = None
    if cfg.final.merging.rerank_top:
        from regmix.pipeline.reranking import rerank

        ranked = rerank(cfg, out, optimized, natural, lambda w: score(w, RERANK_CHUNK), folder)
    return json.loads(ablation.read_text()), ranked


def upsampling_runs(cfg: PipelineConfig, ablation: dict, optimized: dict[str, float]) -> tuple[dict, dict]:
    """({name: base mixture}, {name: schedule}) of the upsampled final runs (none if no doubling helps)."""
    from proxies.merge import upsampled

    domains = list(cfg.train_domains)
    if not ablation["favoured"]:
        return {}, {}
    m = cfg.final.merging
    late = upsampled(np.array([optimized.get(d, 0.0) for d in domains]), domains, ablation["favoured"],
                     m.upsample_factor)
    late = {d: float(x) for d, x in zip(domains, late)}
    mixtures = {upsampled_name(f): dict(optimized) for f in m.upsample_fractions}
    schedules = {upsampled_name(f): [(0, dict(optimized)), (1.0 - f, late)] for f in m.upsample_fractions}
    return mixtures, schedules


def merging_summary(cfg: PipelineConfig, out: Path, runs: dict, margins) -> tuple[dict | None, dict | None]:
    """summary.json's "merging" and "upsampling" (None where merging is off). `margins` is
    results.margins: paired differences with intervals and verdicts."""
    if not cfg.final.merging.enabled:
        return None, None
    folder = out / FOLDER
    comp = json.loads((folder / "compare.json").read_text())
    abl = json.loads((folder / "ablation.json").read_text())
    n = len(comp["runs"])
    sweep_n = len(pd.read_csv(sweep_dir(out) / "status.csv"))
    merging = {**_corr(comp["merged"], comp["trained"]), "n": n,
               "spearman_vs_sweep": _corr(comp["merged"], comp["sweep"])["spearman"],
               "pearson_vs_sweep": _corr(comp["merged"], comp["sweep"])["pearson"],
               "seconds_per_mixture": comp["merge_seconds"] / n,
               "train_seconds_per_mixture": stage_seconds(out).get("sweep", float("nan")) / sweep_n,
               "seed_continued_seconds_per_mixture": comp["trained_seconds"] / n,
               "settings": dataclasses.asdict(cfg.final.merging),
               "ablation": abl["table"], "favoured": abl["favoured"]}
    seeds = list(cfg.final.seeds)
    names = [upsampled_name(f) for f in cfg.final.merging.upsample_fractions]
    if not abl["favoured"]:
        return merging, {"favoured": [], "note": "no doubled domain lowers the merged loss: no upsampled runs"}
    t = cfg.target
    per_seed = {n: [runs[n][s]["val_loss"][t] for s in seeds] for n in ["optimized", *names]}
    comparisons = {}
    for n in names:  # positive: the upsampled run is better than the optimized one without upsampling
        comparisons[n] = {"fraction": cfg.final.merging.upsample_fractions[names.index(n)],
                          "target": float(np.mean(per_seed[n])), "seeds": per_seed[n],
                          "vs_no_upsampling": margins(per_seed, n, ["optimized"])["optimized"]}
    try:  # the schedules as trainers read them (the final stage's record)
        done = json.loads(done_path(out, "final").read_text())
    except (OSError, ValueError):
        done = {}
    return merging, {"favoured": abl["favoured"], "factor": cfg.final.merging.upsample_factor,
                     "no_upsampling": {"target": float(np.mean(per_seed["optimized"])), "seeds": per_seed["optimized"]},
                     "runs": comparisons, "exports": done.get("schedule_exports", {}),
                     "export_notes": done.get("export_notes", [])}


# -- report ----------------------------------------------------------------------------------------
def report_figures(summary: dict, out: Path) -> dict[str, bytes]:
    """PNG figures of the merging section: the merged-vs-trained scatter and the ablation bars."""
    if not summary.get("merging"):
        return {}
    import matplotlib.pyplot as plt

    comp = json.loads((Path(out) / FOLDER / "compare.json").read_text())
    m = summary["merging"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label, r in [(axes[0], "trained", "trained from the seed", m["spearman"]),
                              (axes[1], "sweep", "sweep proxy (from scratch)", m["spearman_vs_sweep"])]:
        ax.scatter(comp["merged"], comp[key], s=22, color="#1f77b4")
        ax.set_xlabel("merged-model loss")
        ax.set_ylabel(f"{label} loss")
        ax.set_title(f"merged vs {label}: Spearman {r:.2f} (n={m['n']})", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    figs = {"merging": _png(fig, plt)}
    table = m["ablation"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = np.arange(len(table))
    val = lambda k: [np.nan if r[k] is None else r[k] for r in table]
    ax.bar(x - 0.2, val("removed"), 0.4, label="removed", color="#7f7f7f")
    ax.bar(x + 0.2, val("doubled"), 0.4, label="doubled", color="#d62728")
    ax.axhline(0, color="#333", lw=0.8)
    ax.set_xticks(x, [r["domain"] for r in table])
    ax.set_ylabel(f"merged {summary['target']} loss - optimized's")
    ax.set_title("Domain ablations around the optimized mixture (merged models; below 0: better)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    figs["ablation"] = _png(fig, plt)
    return figs


def _png(fig, plt) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def report_section(summary: dict, images: dict[str, str]) -> list[str]:
    """Markdown lines of the merging section (none when merging is off)."""
    from regmix.pipeline.reranking import report_lines

    m, up = summary.get("merging"), summary.get("upsampling")
    if not m:
        return []
    lines = ["## Merged models: ablations and end-of-training upsampling", "",
             f"A seed proxy and one branch per training domain; a mixture's merged model is the weighted average of "
             f"the branches. On {m['n']} sweep mixtures, merged vs trained from the seed on the mixture: Spearman "
             f"{m['spearman']:.3f}, Pearson {m['pearson']:.3f}; merged vs the sweep's proxies: Spearman "
             f"{m['spearman_vs_sweep']:.3f}. A merged mixture costs {m['seconds_per_mixture']:.3f} s against "
             f"{m['train_seconds_per_mixture']:.2f} s per trained sweep proxy "
             f"({m['train_seconds_per_mixture'] / max(m['seconds_per_mixture'], 1e-9):.0f}x).", ""]
    if "merging" in images:
        lines += [f"![merged vs trained]({images['merging']})", ""]
    lines += ["| domain | removed | doubled |", "| --- | ---: | ---: |"]
    f = lambda x: "-" if x is None else f"{x:+.4f}"
    for r in m["ablation"]:
        lines.append(f"| {r['domain']} | {f(r['removed'])} | {f(r['doubled'])} |")
    lines.append("")
    if "ablation" in images:
        lines += [f"![ablations]({images['ablation']})", ""]
    if up and up.get("runs"):
        lines += [f"Upsampled at the end ({', '.join(up['favoured'])} x{up['factor']:g}), paired over the seeds "
                  f"against the optimized run without upsampling (positive: upsampling is better):", "",
                  "| last fraction | loss (mean) | margin | 95% interval | verdict |", "| ---: | ---: | ---: | --- | --- |"]
        for r in up["runs"].values():
            v = r["vs_no_upsampling"]
            lines.append(f"| {r['fraction']:g} | {r['target']:.4f} | {v['mean']:+.4f} | {v['ci95'][0]:+.4f} to "
                         f"{v['ci95'][1]:+.4f} | upsampling {v['verdict']} no upsampling |")
        lines.append("")
        for name, files in up.get("exports", {}).items():
            lines.append(f"- schedule of {name} for trainers: " + ", ".join(f"{fmt} `{p}`" for fmt, p in files.items()))
        lines += [f"- note: {n}" for n in up.get("export_notes", [])]
        lines.append("")
    elif up:
        lines += [up["note"], ""]
    return lines + report_lines(summary.get("reranking"))
