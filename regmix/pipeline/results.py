"""The read side of a pipeline folder: targets, the final runs' mixtures and the summary, from the files
the stages wrote. The report builds on this; nothing here runs a stage."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from proxies.batches import eval_tokens
from proxies.config import preset
from proxies.final import collect
from proxies.model import count_params
from regmix import __version__
from regmix.config import to_dict
from regmix.corpus.store import TokenStore
from regmix.errors import RegmixError
from regmix.pipeline.config import PipelineConfig
from regmix.pipeline import reranking
from regmix.pipeline.merging import merging_summary
from regmix.pipeline.layout import done_path, stage_seconds, store_dir, sweep_dir
from regmix.regress.fit import FittedModel

MEAN_TARGET = "train_mean"  # mean validation loss over the training domains


def natural_mixture(out: Path, domains: list[str]) -> dict[str, float]:
    nat = TokenStore.open(store_dir(out)).natural_weights()
    total = sum(nat[d] for d in domains)
    return {d: nat[d] / total for d in domains}


def final_runs(out: Path) -> dict:
    """{mixture: {seed: result}} of the final runs found in the folder."""
    return collect(out / "final")


def targets_table(cfg: PipelineConfig, out: Path) -> pd.DataFrame:
    """run, <target> (held-out loss), train_mean (mean loss over the training domains)."""
    metrics = pd.read_csv(sweep_dir(out) / "metrics.csv")
    frame = pd.DataFrame({"run": metrics["run"], cfg.target: metrics[f"{cfg.target}_val_loss"]})
    frame[MEAN_TARGET] = metrics[[f"{d}_val_loss" for d in cfg.train_domains]].mean(axis=1)
    return frame


def optimized_mixture(out: Path, name: str = "mixture") -> dict[str, float]:
    return json.loads((out / "optimize" / f"{name}.json").read_text())["weights"]


def final_mixtures(cfg: PipelineConfig, out: Path) -> dict[str, dict[str, float]]:
    """The final runs' mixtures: optimized, uniform, natural, best proxy (and optimized_mean)."""
    domains = list(cfg.train_domains)
    targets = targets_table(cfg, out).set_index("run")
    mix = pd.read_csv(sweep_dir(out) / "mixtures.csv").set_index("run")
    ok = targets[cfg.target].dropna()
    best = ok.idxmin()
    mixtures = {
        "optimized": optimized_mixture(out),
        "uniform": {d: 1.0 / len(domains) for d in domains},
        "natural": natural_mixture(out, domains),
        "best_proxy": {d: float(mix.loc[best, d]) for d in domains},
    }
    if cfg.final.mean_target_run:
        mixtures["optimized_mean"] = optimized_mixture(out, "mixture_mean")
    return mixtures


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def margins(by_seed: dict[str, list[float]], ref: str, others) -> dict:
    """Paired differences other - ref per seed (positive: ref is better), with mean, sd and wins."""
    out = {}
    for other in others:
        if other == ref or other not in by_seed:
            continue
        diff = [b - a for a, b in zip(by_seed[ref], by_seed[other])]
        mean, std = _mean_std(diff)
        lo, hi = paired_interval(diff)
        out[other] = {"mean": mean, "std": std, "seeds": diff, "wins": int(sum(d > 0 for d in diff)),
                      "n_seeds": len(diff), "ci95": [lo, hi], "verdict": verdict(diff)}
    return out


def verdict(diff: list[float]) -> str:
    """'beats' when the paired 95% interval of the differences (other - ref) lies above zero, 'loses to'
    when below, 'ties' otherwise (one seed always ties): the only words a comparison is reported in."""
    lo, hi = paired_interval(list(diff))
    return "beats" if lo > 0 else "loses to" if hi < 0 else "ties"


def paired_interval(diff: list[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean paired difference; unbounded with one seed (nothing can be claimed)."""
    n = len(diff)
    if n < 2:
        return -math.inf, math.inf
    mean, std = _mean_std(diff)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def sweep_summary(cfg: PipelineConfig, out: Path, proxy_params: int) -> dict:
    """The sweep's size, its diverged proxies and the range of the target over the proxies."""
    targets = pd.read_csv(out / "fit" / "targets.csv")
    status = pd.read_csv(sweep_dir(out) / "status.csv")
    return {"n_proxies": int(len(status)), "diverged": int((status["status"] != "ok").sum()),
            "model": cfg.sweep.model, "params": proxy_params,
            "tokens_per_proxy": cfg.sweep.train.steps * cfg.sweep.train.batch * cfg.sweep.train.seq_len,
            "target_range": [float(targets[cfg.target].min()), float(targets[cfg.target].max())]}


def build_summary(cfg: PipelineConfig, out: Path) -> dict:
    """summary.json: target, stage times, cross-validation, mixtures, final runs and paired margins."""
    model = FittedModel.load(out / "fit" / "model")
    mixtures = final_mixtures(cfg, out)
    runs = final_runs(out)
    seeds = list(cfg.final.seeds)
    domains = list(cfg.train_domains)
    for name in mixtures:
        missing = [s for s in seeds if s not in runs.get(name, {})]
        if missing:
            raise RegmixError(f"{out}/final: no result for mixture '{name}' seed {missing[0]}")
    per_seed = {n: [runs[n][s]["val_loss"][cfg.target] for s in seeds] for n in mixtures}
    per_seed_mean = {n: [float(np.mean([runs[n][s]["val_loss"][d] for d in domains])) for s in seeds] for n in mixtures}
    final = {}
    for n in mixtures:
        final[n] = {"target": float(np.mean(per_seed[n])), "seeds": per_seed[n],
                    MEAN_TARGET: float(np.mean(per_seed_mean[n])), f"{MEAN_TARGET}_seeds": per_seed_mean[n]}

    predicted = {}
    for n, w in mixtures.items():
        pred = model.predict(np.array([[w.get(d, 0.0) for d in model.domains]]))[0]
        predicted[n] = {t: float(v) for t, v in zip(model.targets, pred)}
    cv = model.cv
    vocab = json.loads((sweep_dir(out) / "sweep.json").read_text())["store"]["vocab_size"]
    proxy_params = count_params(preset(cfg.sweep.model), vocab)["total"]
    final_params = count_params(cfg.final.model, vocab)["total"]
    secs = stage_seconds(out)
    ranking = sorted(final, key=lambda n: final[n]["target"])
    store = TokenStore.open(store_dir(out))
    t = cfg.final.train
    scored = eval_tokens(store, cfg.target, t.seq_len, t.eval_windows)
    valid = int(store.meta["domains"][cfg.target]["valid_tokens"])
    merging, upsampling = merging_summary(cfg, out, runs, margins)
    return {
        "target": cfg.target,
        "target_metric": f"validation loss on '{cfg.target}' ({'held out of' if cfg.held_out else 'one of the'} "
                         f"training domains), nats per {'byte' if cfg.prepare.tokenizer == 'byte' else 'token'}; "
                         f"the final runs score {scored:,} of its {valid:,} validation tokens "
                         f"({'the whole split' if t.eval_windows == 0 else f'the first {t.eval_windows} windows'})",
        "train_domains": domains,
        "stage_seconds": secs,
        "total_seconds": round(sum(secs.values()), 3),
        "fit": {"kind": cfg.fit.kind, "folds": cfg.fit.folds, "optimizer": cfg.optimize.method,
                "top_k": cfg.optimize.top_k, "samples": cfg.optimize.samples},
        "cv": {k: cv[cfg.target][k] for k in ("spearman", "pearson", "n_runs")},
        "cv_mean_target": {k: cv[MEAN_TARGET][k] for k in ("spearman", "pearson", "n_runs")},
        "mixtures": mixtures,
        "predicted": predicted,
        "final_runs": final,
        "ranking": ranking,
        "margins": margins(per_seed, "optimized", mixtures),
        "mean_target": {
            "target": MEAN_TARGET,
            "final_runs": {n: {"target": final[n][MEAN_TARGET], "seeds": per_seed_mean[n]} for n in mixtures},
            "margins": margins(per_seed_mean, "optimized_mean" if "optimized_mean" in mixtures else "optimized",
                               mixtures),
        },
        "sweep": sweep_summary(cfg, out, proxy_params),
        "final": {"params": final_params, "params_ratio": final_params / proxy_params,
                  "tokens_per_run": cfg.final.train.steps * cfg.final.train.batch * cfg.final.train.seq_len,
                  "seeds": seeds, "paired": "same initialization for every mixture of a seed",
                  "late_fraction": cfg.final.late_fraction,
                  "target_eval_tokens": scored, "target_valid_tokens": valid},
        "exports": json.loads(done_path(out, "export").read_text())["files"],
        "merging": merging,  # merged vs trained, costs, domain ablations (None: final.merging off)
        "upsampling": upsampling,  # upsampled final runs vs the optimized one, paired over the seeds
        "reranking": reranking.summary(cfg, out, runs, margins),  # regressor-only vs merging-informed choice
        "run": {"corpus": cfg.corpus, "regmix_version": __version__, "command": " ".join(["regmix", *sys.argv[1:]]),
                "config": to_dict(cfg)},
    }
