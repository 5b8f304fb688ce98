"""Re-ranking the regressor's best candidates by merged models (`final.merging.rerank_top` > 0).

optimize scores `optimize.samples` sampled mixtures with the regressor and averages its k best
(k = optimize.top_k). Here the same candidates are drawn again (same space, sampler and seed: the
sampler's draws depend on the seed alone) and scored the same way; the regressor's `rerank_top` best
are then scored by merged models (proxies.merge, one evaluation each), and the merging-informed
mixture is the mean of the `rerank_k` (default k) of them with the lowest merged target loss. It
trains as the final run `reranked`, paired over the seeds with `optimized` (the regressor-only
choice). DIR/merging/rerank.json holds the choice, its distance to the regressor's and the scores;
it is skipped when it exists.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from regmix.analysis import total_variation
from regmix.export import read_token_counts
from regmix.files import atomic_write_json
from regmix.optimize import INFEASIBLE, screen, shortlist
from regmix.pipeline.config import PipelineConfig
from regmix.pipeline.layout import merging_dir, store_dir
from regmix.regress.fit import FittedModel
from regmix.space import MixtureSpace
from regmix.weights import tidy_weights

NAME = "reranked"
FILE = "rerank.json"
NEAR_TV = 0.02  # below this total-variation distance the two choices are called the same mixture


def search_space(cfg: PipelineConfig, out: Path, domains: list[str], natural: dict[str, float]) -> MixtureSpace:
    """optimize's space: around the natural shares, with the repetition caps of `caps` if any."""
    caps = {}
    if cfg.caps.token_budget > 0:
        counts = read_token_counts(store_dir(out))
        caps = {"max_epochs": cfg.caps.max_epochs, "token_budget": cfg.caps.token_budget,
                "tokens": [counts[d] for d in domains]}
    return MixtureSpace.from_prior(domains, np.array([natural[d] for d in domains]), **caps)


def regressor_ranking(cfg: PipelineConfig, model: FittedModel, space: MixtureSpace) -> tuple[np.ndarray, np.ndarray]:
    """(candidates_NxK, predicted target_N) of optimize's shortlist for the target, best first, drawn and
    ranked by optimize's own two stages (as stage_optimize calls it: the held-out target alone)."""
    opt = dataclasses.replace(cfg.optimize, target_weights=(1.0, 0.0))
    _, objective, cand, scores, _ = screen(model, space, opt, np.random.default_rng(opt.seed))
    order, full = shortlist(objective, cand, scores, min(opt.top_k, len(cand)))
    ok = full < INFEASIBLE  # with constraints: the candidates that keep them
    return cand[order[ok]], full[ok]


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """None where either side is constant (a regressor flat over its best candidates)."""
    return None if np.ptp(a) == 0 or np.ptp(b) == 0 else float(stats.spearmanr(a, b)[0])


def rerank(cfg: PipelineConfig, out: Path, optimized: dict[str, float], natural: dict[str, float], score,
           folder: Path) -> dict:
    """Write (or read) rerank.json; `score(w_NxK)` is the merged target loss of each row; `natural` the
    space's prior (the natural shares, as optimize had it)."""
    path = folder / FILE
    if path.exists():
        return json.loads(path.read_text())
    m = cfg.final.merging
    t0 = time.perf_counter()
    model = FittedModel.load(out / "fit" / "model")
    domains = list(model.domains)
    ranked, predicted = regressor_ranking(cfg, model, search_space(cfg, out, domains, natural))
    top = ranked[:m.rerank_top]
    k = min(m.rerank_k or cfg.optimize.top_k, len(top))
    tv = lambda a, b: total_variation([a.get(d, 0.0) for d in domains], [b.get(d, 0.0) for d in domains])
    named = lambda w: {d: float(x) for d, x in zip(domains, tidy_weights(np.asarray(w) / np.sum(w)))}
    regenerated = named(ranked[:min(cfg.optimize.top_k, len(ranked))].mean(0))  # optimize's topk mean, redrawn
    t1 = time.perf_counter()
    base = np.array([[optimized.get(d, 0.0) for d in domains]])
    merged = score(np.concatenate([base, top]))
    merge_s = time.perf_counter() - t1
    best = np.argsort(merged[1:], kind="stable")[:k]
    chosen = named(top[best].mean(0))
    w_chosen = np.array([[chosen[d] for d in domains]])
    chosen_merged = float(score(w_chosen)[0])
    t = model.targets.index(cfg.target)
    record = {
        "rule": f"mean of the {k} mixtures with the lowest merged {cfg.target} loss among the regressor's {len(top)} "
                f"best of {cfg.optimize.samples:,} candidates",
        "top": len(top), "k": k, "mixture": chosen, "optimized": dict(optimized),
        "tv_to_optimized": tv(chosen, optimized),
        "regenerated_tv": tv(regenerated, optimized),  # ~0 when the redrawn candidates are optimize's (method topk)
        "merged": {"optimized": float(merged[0]), "reranked": chosen_merged, "top_best": float(merged[1:].min()),
                   "top_median": float(np.median(merged[1:]))},
        "predicted": {"optimized": float(model.predict(base)[0, t]), "reranked": float(model.predict(w_chosen)[0, t]),
                      "top_range": [float(predicted[0]), float(predicted[len(top) - 1])]},
        "spearman_predicted_vs_merged": _spearman(predicted[:len(top)], merged[1:]),
        "merge_seconds": merge_s, "seconds": time.perf_counter() - t0,
    }
    atomic_write_json(path, record)
    return record


def summary(cfg: PipelineConfig, out: Path, runs: dict, margins) -> dict | None:
    """summary.json's "reranking": the regressor-only choice (optimized) vs the merging-informed one,
    per seed and as a paired margin (positive: the merging-informed choice is better)."""
    if not (cfg.final.merging.enabled and cfg.final.merging.rerank_top):
        return None
    rec = json.loads((merging_dir(Path(out)) / FILE).read_text())
    seeds, t = list(cfg.final.seeds), cfg.target
    per_seed = {n: [runs[n][s]["val_loss"][t] for s in seeds] for n in ("optimized", NAME)}
    near = rec["tv_to_optimized"] < NEAR_TV
    return {**{k: rec[k] for k in ("rule", "top", "k", "mixture", "tv_to_optimized", "regenerated_tv", "merged",
                                   "predicted", "spearman_predicted_vs_merged", "merge_seconds")},
            "seconds_per_mixture": rec["merge_seconds"] / (rec["top"] + 1),  # the optimized mixture scored too
            "regressor_only": {"target": float(np.mean(per_seed["optimized"])), "seeds": per_seed["optimized"]},
            "merging_informed": {"target": float(np.mean(per_seed[NAME])), "seeds": per_seed[NAME]},
            "vs_regressor_only": margins(per_seed, NAME, ["optimized"])["optimized"],
            "note": (f"the merging-informed choice is nearly the regressor's (total variation "
                     f"{rec['tv_to_optimized']:.3f})" if near else "")}


def report_lines(r: dict | None) -> list[str]:
    """Markdown lines of the re-ranking comparison (none when it is off)."""
    if not r:
        return []
    v = r["vs_regressor_only"]
    fmt = lambda xs: ", ".join(f"{x:.4f}" for x in xs)
    rho = r["spearman_predicted_vs_merged"]
    rho = "undefined: the regressor predicts them all alike" if rho is None else f"{rho:.2f}"
    lines = ["### Re-ranking the regressor's candidates by merged models", "",
             f"Merging-informed choice: the {r['rule']} (Spearman between the regressor's and the merged ranking of "
             f"those {r['top']}: {rho}; {r['seconds_per_mixture']:.3f} s per merged mixture). It is at total variation "
             f"{r['tv_to_optimized']:.3f} from the regressor-only choice (optimized); merged loss "
             f"{r['merged']['reranked']:.4f} vs {r['merged']['optimized']:.4f}, regressor's prediction "
             f"{r['predicted']['reranked']:.4f} vs {r['predicted']['optimized']:.4f}.", "",
             "| final run | loss (mean) | per seed |", "| --- | ---: | --- |",
             f"| regressor-only (optimized) | {r['regressor_only']['target']:.4f} | {fmt(r['regressor_only']['seeds'])} |",
             f"| merging-informed (reranked) | {r['merging_informed']['target']:.4f} | "
             f"{fmt(r['merging_informed']['seeds'])} |", "",
             f"Paired margin (regressor-only - merging-informed; positive: re-ranking helps) {v['mean']:+.4f}, 95% "
             f"interval {v['ci95'][0]:+.4f} to {v['ci95'][1]:+.4f} over {v['n_seeds']} seeds: the merging-informed "
             f"choice **{v['verdict']}** the regressor-only one.", ""]
    if r["note"]:
        lines += [r["note"][0].upper() + r["note"][1:] + ".", ""]
    return lines
