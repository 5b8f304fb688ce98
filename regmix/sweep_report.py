"""`regmix report`: the notebooks' main figures for a fitted model and its sweep, as PNG files, one
self-contained HTML page and a Markdown file (OUT/report.html, OUT/report.md, OUT/figures/*.png)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from regmix import analysis, plots
from regmix.errors import RegmixError
from regmix.files import atomic_write_text
from regmix.optimize import OptimizeConfig, optimize
from regmix.regress.fit import FittedModel
from regmix.report_page import to_html
from regmix.space import MixtureSpace


@dataclass(frozen=True)
class ReportConfig:
    samples: int = 100_000  # candidates for the optimum (the CLI's optimize default is 1,000,000)
    top_k: int = 100
    repeats: int = 3  # learning-curve repeats per subset size
    sensitivity: bool = True
    token_budget: float | None = None
    tokens: dict[str, float] | None = None
    max_epochs: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class Inputs:
    model_dir: Path
    sweep: str | None  # folder, or None for the embedded table
    demo: Path | None


def resolve_inputs(model: str | None, sweep: str | None, demo: str | None) -> Inputs:
    """--demo DIR supplies the model (DIR/fit/model) and the sweep (DIR/sweep) unless they are given."""
    demo_dir = Path(demo) if demo else None
    if demo_dir is not None and not (demo_dir / "summary.json").exists():
        raise RegmixError(f"--demo {demo_dir}: no summary.json (not a finished `regmix demo`/`regmix run` folder)")
    if model is None:
        if demo_dir is None:
            raise RegmixError("--model is required (or --demo DIR, whose fit/model is used)")
        model = str(demo_dir / "fit" / "model")
    if sweep is None and demo_dir is not None:
        sweep = str(demo_dir / "sweep")
    return Inputs(Path(model), sweep, demo_dir)


def _sweep_for(model: FittedModel, sweep: str | None) -> analysis.Sweep:
    data = analysis.load_analysis_sweep(sweep)
    try:
        analysis.model_weights(model, data)
    except RegmixError as err:
        where = "the embedded RegMix table" if sweep in (None, analysis.EMBEDDED) else f"--sweep {sweep}"
        raise RegmixError(f"the model's domains are not those of {where} ({err}); give the sweep it was fitted on "
                          "with --sweep DIR") from None
    return data


def build(inputs: Inputs, out: str | Path, config: ReportConfig = ReportConfig(), log=print) -> Path:
    """Draw every figure, write OUT/figures/*.png, OUT/report.md and OUT/report.html; returns the page."""
    out = Path(out)
    model = FittedModel.load(inputs.model_dir)
    sweep = _sweep_for(model, inputs.sweep)
    unit = sweep.unit
    table = analysis.oof_table(inputs.model_dir, model, sweep)
    names = [_target_name(sweep, t) for t in model.targets]
    t0, name0 = model.targets[0], names[0]
    w = table[list(model.domains)]
    w_NxK = w.to_numpy()
    figs: dict[str, object] = {}
    text: dict[str, str] = {}

    log("report: fit quality")
    figs["oof"] = plots.oof_grid(table, model.targets, names, unit)
    figs["residuals"] = plots.residuals_vs_weights(w, table[f"{t0}:residual"], unit)
    sizes = [n for n in (16, 32, 64, 128, 256, 512) if n <= len(table) // 2] or [len(table) // 2]
    kinds = ("linear", "lightgbm") if model.kind in ("lightgbm", "ensemble") else ("linear", model.kind)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            curve = analysis.learning_curve(w_NxK, table[t0].to_numpy(), sizes, config.repeats,
                                            tuple(dict.fromkeys(kinds)), seed=config.seed)
        figs["learning_curve"] = plots.learning_curve(curve, unit)
        text["learning_curve"] = _curve_table(curve)
    except RegmixError as err:  # a sweep too small to split: say so instead of a figure
        text["learning_curve"] = f"No learning curve: {err}."

    log("report: per-domain effects")
    try:
        phi = analysis.shap_contributions(model, w_NxK)
        figs["domain_effects"] = plots.domain_effects(w, phi, unit)
    except RegmixError as err:
        phi, text["shap"] = None, str(err)
    top = analysis.top_domains(model, w_NxK, 6)
    if phi is not None:
        figs["shap"] = plots.shap_scatter(w, phi, top, unit)
    figs["partial_dependence"] = plots.partial_dependence(
        analysis.partial_dependence(model, w_NxK, top, seed=config.seed), name0, unit)
    figs["interactions"] = plots.interaction_heatmap(analysis.interaction_strength(model, w_NxK, top, seed=config.seed))
    losses = analysis.loss_frame(sweep)
    if losses.shape[1] > 1:
        figs["target_correlation"] = plots.target_correlation(losses)

    log(f"report: optimum over {config.samples:,} candidates")
    space = _space(model, config)
    base = OptimizeConfig(samples=config.samples, top_k=config.top_k, seed=config.seed)
    result = optimize(model, space, base, progress=False)
    natural = _natural(inputs, model)
    refs = analysis.reference_mixtures(model, result.weights_K, natural)
    predicted = analysis.predict_named(model, refs)
    best = int(np.argmin(table[t0].to_numpy()))
    marks = dict(predicted, **{f"best run measured ({table['run'].iloc[best]})": float(table[t0].iloc[best])})
    cand = analysis.candidate_predictions(model, min(config.samples, 50_000), config.seed + 1, space)
    figs["candidates"] = plots.candidate_histogram(cand, marks, name0, unit)
    figs["mixtures"] = plots.mixture_bars(refs, f"Chosen mixture for {name0} against the baselines")
    mean, std = analysis.fold_spread(model, result.weights_K)
    text["optimum"] = _optimum_table(refs, predicted, model, mean, std, name0, unit)
    if config.sensitivity:
        log("report: sensitivity of the optimum")
        others = _other_models(model, w_NxK, table, t0, config.seed)
        settings = {"top_k": [10, 1000], "samples": [config.samples // 10, config.samples * 3],
                    "kl_strength": [0.01, 0.1], "seed": [config.seed + 1, config.seed + 2]}
        spaces = None
        if space is None:  # bounds: the chosen mixture's largest domain capped at half its share
            k = int(np.argmax(result.weights_K))
            cap = round(float(result.weights_K[k]) / 2, 2)
            spaces = {f"{model.domains[k]} <= {cap:g}": analysis.capped_space(model, {model.domains[k]: cap})}
        sens = analysis.sensitivity(model, base, settings, space, others, spaces)
        figs["sensitivity"] = plots.sensitivity(sens, list(model.domains))
    if config.token_budget and config.tokens:
        plan = analysis.epoch_plan(refs["chosen"], config.token_budget, config.tokens, config.max_epochs)
        figs["epochs"] = plots.epoch_plan(plan, config.token_budget, config.max_epochs)

    demo = json.loads((inputs.demo / "summary.json").read_text()) if inputs.demo else None
    if demo and demo.get("mixtures"):
        figs["demo_mixtures"] = plots.mixture_bars(demo["mixtures"], "Mixtures of the final runs")

    (out / "figures").mkdir(parents=True, exist_ok=True)
    images = {k: plots.save_png(f, out / "figures" / f"{k}.png") for k, f in figs.items()}
    paths = {k: f"figures/{k}.png" for k in images}
    md = markdown(model, sweep, inputs, names, paths, text, demo)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", to_html(md, images, paths))
    return out / "report.html"


def _target_name(sweep: analysis.Sweep, target: str) -> str:
    return analysis.short_name(sweep, target)


def _space(model: FittedModel, config: ReportConfig) -> MixtureSpace | None:
    if config.max_epochs is None or not config.tokens or not config.token_budget:
        return None
    tokens = [config.tokens.get(d, 0.0) for d in model.domains]
    return MixtureSpace.from_prior(list(model.domains), model.prior_K, max_epochs=config.max_epochs,
                                   token_budget=config.token_budget, tokens=tokens)


def _natural(inputs: Inputs, model: FittedModel) -> dict[str, float] | None:
    if inputs.demo is None:
        return None
    meta = inputs.demo / "prepare" / "store" / "meta.json"
    try:
        doms = json.loads(meta.read_text())["domains"]
        return {d: float(doms[d]["train_tokens"]) for d in model.domains}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _other_models(model: FittedModel, w_NxK, table, target, seed) -> dict[str, FittedModel]:
    """The same sweep fitted with the other cheap regressors (no cross-validation: only their optimum)."""
    from regmix.regress.models import make_model

    out = {}
    for kind in ("linear", "lightgbm"):
        if kind == model.kind:
            continue
        m = make_model(kind).fit(w_NxK, table[target].to_numpy(), seed)
        out[kind] = FittedModel(kind, [target], model.domains, model.columns, model.prior_K, [m], [[m]])
    return out


def _curve_table(curve: pd.DataFrame) -> str:
    g = curve.groupby(["kind", "n_runs"]).agg(spearman=("spearman", "mean"), sd=("spearman", "std"),
                                              regret=("regret", "mean"))
    lines = ["| regressor | runs | held-out Spearman (mean +- sd) | top-k regret |", "| --- | ---: | ---: | ---: |"]
    for (kind, n), r in g.iterrows():
        lines.append(f"| {kind} | {n} | {r['spearman']:.3f} +- {r['sd']:.3f} | {r['regret']:.4f} |")
    return "\n".join(lines)


def _optimum_table(refs, predicted, model, mean, std, name, unit) -> str:
    lines = [f"| mixture | predicted {name} ({unit}) | largest shares |", "| --- | ---: | --- |"]
    for n, wts in refs.items():
        big = ", ".join(f"{d} {v:.2f}" for d, v in sorted(wts.items(), key=lambda kv: -kv[1])[:5])
        lines.append(f"| {n} | {predicted[n]:.4f} | {big} |")
    lines += ["", f"Uncertainty of the chosen mixture: the {len(model.folds[0])} cross-validation fold models predict "
              f"{mean:.4f} +- {std:.4f} {unit} (mean +- sd) there."]
    return "\n".join(lines)


def markdown(model, sweep, inputs, names, paths, text, demo) -> str:
    src = "RegMix's released 1M-proxy sweep (embedded)" if sweep.source == analysis.EMBEDDED else f"`{sweep.source}`"
    img = lambda k, alt: [f"![{alt}]({paths[k]})", ""] if k in paths else []
    cv = model.cv
    lines = [f"# regmix report: {model.kind} fit of {', '.join(names)}", "",
             f"Model `{inputs.model_dir}` ({model.kind}, {model.n_runs} runs, {len(model.domains)} domains); sweep: {src}. "
             f"Losses in {sweep.unit}; weights are shares of tokens.", "",
             "## Fit quality", "", "| target | out-of-fold Spearman | Pearson | MAE |", "| --- | ---: | ---: | ---: |"]
    for t, n in zip(model.targets, names):
        s = cv.get(t, {})
        lines.append(f"| {n} | {s.get('spearman', float('nan')):.3f} | {s.get('pearson', float('nan')):.3f} | "
                     f"{s.get('mae', float('nan')):.4f} |")
    lines += [""] + img("oof", "out-of-fold predicted vs measured")
    lines += ["Residuals against each domain's weight: a trend or a funnel shows where the fit is biased.", ""]
    lines += img("residuals", "residuals")
    lines += ["## How many runs the fit needs", "",
              "Each regressor is fitted on a random subset and scored on the runs left out (regret: measured loss "
              "of the 5 runs it ranks best minus that of the 5 truly best).", "", text["learning_curve"], ""]
    lines += img("learning_curve", "learning curve")
    lines += ["## Per-domain effects", ""]
    if "shap" in text:
        lines += [text["shap"], ""]
    lines += img("domain_effects", "mean |SHAP| per domain") + img("shap", "SHAP against weight")
    lines += ["Partial dependence: one domain's share set on a grid, the other domains rescaled in proportion.", ""]
    lines += img("partial_dependence", "partial dependence") + img("interactions", "interactions")
    lines += img("target_correlation", "target correlation")
    lines += ["## The optimum", "", text["optimum"], ""]
    lines += img("candidates", "candidates") + img("mixtures", "chosen vs baselines")
    if "sensitivity" in paths:
        lines += ["## Sensitivity of the optimum", "", "One optimizer setting changed at a time (and the other "
                  "regressors fitted on the same runs); the seed rows show the noise of the candidates alone.", ""]
        lines += img("sensitivity", "sensitivity")
    lines += img("epochs", "epoch plan")
    if demo:
        lines += ["## The demo's final runs", "", "| mixture | final-run loss (mean over seeds) |", "| --- | ---: |"]
        for n, r in demo.get("final_runs", {}).items():
            lines.append(f"| {n} | {r.get('target', float('nan')):.4f} |")
        lines += [""] + img("demo_mixtures", "final-run mixtures")
    return "\n".join(lines)
