"""The stage machine: each stage reads the files of the earlier ones and writes its own, then done.json."""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from proxies.config import SweepConfig
from proxies.final import make_plan, run_final
from proxies.pool import enable_compile_cache
from proxies.sweep import create_sweep, default_workers, run_sweep
from regmix.config import to_dict
from regmix.corpus.prepare import prepare
from regmix.errors import RegmixError
from regmix.export import FORMATS, Budget, ExportOptions, Mixture, Schedule, export, get_format, read_token_counts
from regmix.files import atomic_write_json, atomic_write_text, locked
from regmix.optimize import optimize
from regmix.pipeline.config import PipelineConfig
from regmix.pipeline.merging import run_merging, upsampling_runs
from regmix.pipeline.reranking import NAME as RERANKED, search_space
from regmix.pipeline.layout import STAGES, done_path, mark_done, stage_done, store_dir, sweep_dir
from regmix.pipeline.report import write_report
from regmix.pipeline.results import (MEAN_TARGET, build_summary, final_mixtures, natural_mixture, optimized_mixture,
                                     targets_table)
from regmix.regress.fit import FittedModel, fit_sweep, save_fit
from regmix.tables import load_sweep, write_table


def log(msg: str) -> None:
    print(f"pipeline: {msg}", file=sys.stderr, flush=True)


def sweep_config(cfg: PipelineConfig, out: Path):
    return SweepConfig(store=store_dir(out).absolute(), n_proxies=cfg.sample.n_proxies, model=cfg.sweep.model,
                       sampler=cfg.sample.sampler, train_domains=list(cfg.train_domains),
                       eval_domains=cfg.eval_domains, temperature=cfg.sample.temperature,
                       seed=cfg.sample.seed, train=cfg.sweep.train, run=cfg.sweep.run)


def _workers(n: int) -> int:
    return n or default_workers()


# -- stages --------------------------------------------------------------------------------------
def stage_prepare(cfg: PipelineConfig, out: Path) -> dict:
    p = cfg.prepare
    meta = prepare(cfg.corpus, store_dir(out), tokenizer=p.tokenizer, valid_fraction=p.valid_fraction,
                   text_field=p.text_field, seq_len=cfg.seq_len, progress=False, log=sys.stderr,
                   token_limits=dict(p.token_limits))
    for d in cfg.eval_domains:
        if d not in meta["domains"]:
            raise RegmixError(f"unknown domain '{d}' (corpus has: {', '.join(meta['domains'])})")
    return {}


def stage_sample(cfg: PipelineConfig, out: Path) -> dict:
    with locked(sweep_dir(out), "sweep"):  # a different sweep found there (config changed) is discarded
        create_sweep(sweep_config(cfg, out), sweep_dir(out), "config", force=True,
                      workers=_workers(cfg.sweep.run.workers))
    return {}


def stage_sweep(cfg: PipelineConfig, out: Path) -> dict:
    enable_compile_cache(sweep_dir(out) / ".jax_cache")
    # force: a sweep of another config found there is discarded (same config: finished groups are kept)
    run_sweep(sweep_config(cfg, out), sweep_dir(out), force=True, workers=_workers(cfg.sweep.run.workers),
              progress=True)  # a bar on a terminal, plain lines in a log
    status = pd.read_csv(sweep_dir(out) / "status.csv")
    return {"proxies": int(len(status)), "diverged": int((status["status"] != "ok").sum())}


def stage_fit(cfg: PipelineConfig, out: Path) -> dict:
    fdir = out / "fit"
    write_table(targets_table(cfg, out), fdir / "targets.csv")
    mixtures, y, names = load_sweep(sweep_dir(out) / "mixtures.csv", fdir / "targets.csv", [cfg.target, MEAN_TARGET])
    model, oof = fit_sweep(mixtures, y, names, cfg.fit.kind, cfg.fit.folds, cfg.fit.seed, progress=False)
    save_fit(model, oof, fdir / "model")
    return {"cv": model.cv}


def stage_optimize(cfg: PipelineConfig, out: Path) -> dict:
    model = FittedModel.load(out / "fit" / "model")
    domains = list(model.domains)
    space = search_space(cfg, out, domains, natural_mixture(out, domains))
    for name, weights in (("mixture", (1.0, 0.0)), ("mixture_mean", (0.0, 1.0))):  # held-out target; mean loss
        res = optimize(model, space, dataclasses.replace(cfg.optimize, target_weights=weights), progress=False)
        atomic_write_json(out / "optimize" / f"{name}.json", res.to_json())
    return {}


def export_path(out: Path, fmt: str, stem: str = "mixture") -> Path:
    name = f"{stem}.json" if fmt == "json" else f"{stem}.{fmt}.{get_format(fmt).extension}"
    return out / "export" / name


def export_options(cfg: PipelineConfig, out: Path, schedule: Schedule | None = None) -> ExportOptions:
    """Sized for the pipeline's own final run: its tokens, batch and sequence length."""
    t = cfg.final.train
    tokens = read_token_counts(store_dir(out))
    return ExportOptions(budget=Budget(float(t.steps * t.batch * t.seq_len), tokens), global_batch_size=t.batch,
                         sequence_length=t.seq_len, seed=cfg.final.seeds[0], schedule=schedule)


def stage_export(cfg: PipelineConfig, out: Path) -> dict:
    """Every format, sized for the pipeline's own final run."""
    opts = export_options(cfg, out)
    mix = Mixture(optimized_mixture(out))
    files = {}
    for fmt in FORMATS:
        (file,) = export(mix, fmt, opts)
        path = export_path(out, fmt)
        atomic_write_text(path, file.text)
        files[fmt] = str(path.relative_to(out))
    return {"files": files}


def export_schedules(cfg: PipelineConfig, out: Path, schedules: dict[str, list]) -> tuple[dict, list[str]]:
    """The upsampled runs' schedules [(0, base), (1 - f, late)] through every schedule-capable export format,
    as DIR/export/mixture_upNN.<format>.<ext>; returns ({run: {format: path}}, the exports' warnings)."""
    files, notes = {}, []
    for name, ((_, base), (start, late)) in schedules.items():
        opts = export_options(cfg, out, Schedule(late, 1.0 - start, cfg.final.train.steps))
        stem = "mixture" + name.removeprefix("optimized")
        files[name] = {}
        for fmt in (f for f in FORMATS if get_format(f).scheduled):
            with warnings.catch_warnings(record=True) as caught:  # e.g. Levanter moving the switch to a block
                warnings.simplefilter("always")
                try:
                    (file,) = export(Mixture(base), fmt, opts)
                except RegmixError as err:  # a schedule the format cannot hold at this run's size: said, not written
                    notes.append(f"{name}: {err}")
                    continue
            notes += [f"{name} {fmt}: {w.message}" for w in caught]
            path = export_path(out, fmt, stem)
            atomic_write_text(path, file.text)
            files[name][fmt] = str(path.relative_to(out))
    return files, notes


def stage_final(cfg: PipelineConfig, out: Path) -> dict:
    f = cfg.final
    mixtures = final_mixtures(cfg, out)
    late = None
    if f.late_fraction > 0:
        late = {"optimized": dict(f.late_mixture) or mixtures["optimized"]}
    workers = _workers(f.workers)
    schedules, extra = {}, {}
    if f.merging.enabled:  # merged-model ablations pick the domains the extra runs upsample at the end
        t0 = time.perf_counter()
        ablation, ranked = run_merging(cfg, out, mixtures["optimized"], mixtures["natural"])
        extra["merging_seconds"] = round(time.perf_counter() - t0, 3)
        upsampled, schedules = upsampling_runs(cfg, ablation, mixtures["optimized"])
        mixtures = {**mixtures, **upsampled}
        if ranked is not None:  # the merging-informed choice, paired with the regressor's over the seeds
            mixtures[RERANKED] = ranked["mixture"]
        extra["schedule_exports"], extra["export_notes"] = export_schedules(cfg, out, schedules)
        log(f"final: merging in {extra['merging_seconds']:.0f}s; upsampled at the end: "
            f"{', '.join(ablation['favoured']) or 'none (no doubled domain helps)'}"
            + ("" if ranked is None else f"; re-ranked choice at total variation {ranked['tv_to_optimized']:.3f} "
               f"from the regressor's"))
    # the upsampled runs start from the optimized run's state at their switch (unless it has a late mixture)
    forks = {n: "optimized" for n in schedules} if late is None else None
    plan = make_plan(store_dir(out), list(cfg.train_domains), mixtures, model=f.model, train=f.train,
                     seeds=list(f.seeds), eval_domains=cfg.eval_domains, late_mixtures=late,
                     late_fraction=f.late_fraction, schedules=schedules or None, forks=forks, workers=workers)
    runs = run_final(plan, out / "final", workers=workers)
    missing = [(n, s) for n in mixtures for s in f.seeds if s not in runs[n]]
    if missing:
        raise RegmixError(f"final runs: {len(missing)} run(s) did not finish, e.g. {missing[0]}")
    return extra


def stage_report(cfg: PipelineConfig, out: Path) -> dict:
    write_report(build_summary(cfg, out), cfg, out)
    return {}


RUNNERS = {"prepare": stage_prepare, "sample": stage_sample, "sweep": stage_sweep, "fit": stage_fit,
           "optimize": stage_optimize, "export": stage_export, "final": stage_final, "report": stage_report}


def run_stage(cfg: PipelineConfig, out: str | Path, stage: str, force: bool = False) -> bool:
    """Run one stage (its earlier stages must be done); returns False when it was already done."""
    out = Path(out)
    if stage not in STAGES:
        raise RegmixError(f"unknown stage '{stage}' (stages: {', '.join(STAGES)})")
    for s in STAGES[: STAGES.index(stage)]:
        if stage_done(out, cfg, s) is None:
            raise RegmixError(f"{out}: stage '{stage}' needs stage '{s}' done first (with this config): "
                              f"run `regmix run --stage {s}` or `regmix demo`")
    if not force and stage_done(out, cfg, stage) is not None:
        log(f"{stage}: done, reused")
        return False
    for s in STAGES[STAGES.index(stage):]:  # this stage and every later one are now stale
        done_path(out, s).unlink(missing_ok=True)
    log(f"{stage}: running")
    t0 = time.perf_counter()
    extra = RUNNERS[stage](cfg, out) or {}
    seconds = time.perf_counter() - t0
    mark_done(out, cfg, stage, seconds, **extra)
    if stage == "report":  # written once, last, so that it holds every stage's time, the report's too
        atomic_write_json(out / "summary.json", build_summary(cfg, out))
    log(f"{stage}: done in {seconds:.1f}s")
    return True


def run_pipeline(cfg: PipelineConfig, out: str | Path) -> tuple[Path, list[str]]:
    """Run (or resume) every stage; returns the path of summary.json and the stages reused from earlier runs."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", to_dict(cfg))
    reused = [stage for stage in STAGES if not run_stage(cfg, out, stage)]
    if reused:
        log(f"reused {len(reused)} of {len(STAGES)} stages from an earlier run with the same config and corpus "
            f"({', '.join(reused)}); a changed config section or corpus file re-runs the stages it affects")
    return out / "summary.json", reused


