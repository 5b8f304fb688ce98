"""The whole method as resumable stages: prepare -> sample -> sweep -> fit -> optimize -> export ->
final -> report (`regmix demo`, `regmix run --stage`).

Each stage writes its files under DIR/<stage>/ and, last, DIR/<stage>/done.json holding the
seconds it took and a key: the hash of the config sections it depends on (its own and every
earlier stage's). A stage whose done.json carries the current key is skipped; a stage without one
(killed, never run, or run with another config) is run again, and so is every later stage. The
sweep and the final runs resume inside the stage too (finished groups and jobs are kept).

The demo's target is the validation loss (nats per byte: the store is byte-level) on a domain held
out of training; the mean validation loss over the training domains is fitted and reported beside
it, with its own optimized mixture.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from proxies.config import ModelConfig, RunConfig, TrainConfig  # plain dataclasses: no JAX import
from regmix.config import load_config, to_dict
from regmix.errors import RegmixError

STAGES = ("prepare", "sample", "sweep", "fit", "optimize", "export", "final", "report")
# config sections each stage reads (a stage's key also covers every earlier stage's sections)
SECTIONS = {"prepare": ("corpus", "seq_len"), "sample": ("train_domains", "target", "sample"),
            "sweep": ("sweep",), "fit": ("fit",), "optimize": ("optimize",), "export": (),
            "final": ("final",), "report": ()}
MEAN_TARGET = "train_mean"  # mean validation loss over the training domains
BASELINES = ("optimized", "uniform", "natural", "best_proxy")


@dataclass(frozen=True)
class SampleSection:
    n_proxies: int = 48
    sampler: Literal["regmix", "uniform", "sobol"] = "regmix"
    temperature: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class SweepSection:
    model: str = "tiny"
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass(frozen=True)
class FitSection:
    kind: str = "lightgbm"
    folds: int = 5
    seed: int = 0


@dataclass(frozen=True)
class OptimizeSection:
    samples: int = 200_000
    top_k: int = 100
    method: Literal["topk", "refine"] = "topk"
    kl_strength: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class FinalSection:
    model: ModelConfig = field(default_factory=lambda: ModelConfig(n_layers=2, d_model=64, n_heads=4, d_ff=128,
                                                                   attn_blocks=2))
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    mean_target_run: bool = True  # also train the mixture optimized for the mean training loss
    schedule_fraction: float = 0.0  # > 0: the last fraction of steps use schedule_mixture
    schedule_mixture: dict[str, float] = field(default_factory=dict)  # default: the optimized one
    workers: int = 0  # 0: one per core


@dataclass(frozen=True)
class DemoConfig:
    """`configs/demo.yaml`: every knob of `regmix demo`, validated."""

    corpus: str = "demo"
    seq_len: int = 128  # prepare's check: every domain holds one training window
    target: str = "pydocs"  # held-out domain whose validation loss is minimized
    train_domains: list[str] = field(default_factory=lambda: ["books", "code", "kerneldocs", "legal", "math",
                                                              "manpages"])
    sample: SampleSection = field(default_factory=SampleSection)
    sweep: SweepSection = field(default_factory=SweepSection)
    fit: FitSection = field(default_factory=FitSection)
    optimize: OptimizeSection = field(default_factory=OptimizeSection)
    final: FinalSection = field(default_factory=FinalSection)

    def __post_init__(self):
        if self.target in self.train_domains:
            raise ValueError(f"target '{self.target}' must be held out of train_domains")
        if len(self.train_domains) < 2 or len(set(self.train_domains)) != len(self.train_domains):
            raise ValueError("train_domains: need at least 2 distinct domains")
        if not self.final.seeds:
            raise ValueError("final.seeds: need at least one seed")
        late = self.final.schedule_mixture
        if late:
            unknown = [d for d in late if d not in self.train_domains]
            if unknown:
                raise ValueError(f"final.schedule_mixture: '{unknown[0]}' is not a training domain")
            if min(late.values()) < 0 or abs(sum(late.values()) - 1) > 1e-6:
                raise ValueError("final.schedule_mixture: weights must be >= 0 and sum to 1")
        if not 0 <= self.final.schedule_fraction < 1:
            raise ValueError(f"final.schedule_fraction must be in [0, 1), got {self.final.schedule_fraction}")


def load_demo_config(path: str | Path, seeds: list[int] | None = None) -> DemoConfig:
    overrides = {"final.seeds": list(seeds)} if seeds else None
    return load_config(DemoConfig, path, overrides)


def log(msg: str) -> None:
    print(f"demo: {msg}", file=sys.stderr, flush=True)


# -- stage bookkeeping ---------------------------------------------------------------------------
def stage_key(cfg: DemoConfig, stage: str) -> str:
    data = to_dict(cfg)
    parts = {}
    for s in STAGES[: STAGES.index(stage) + 1]:
        for section in SECTIONS[s]:
            parts[section] = data[section]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _done_path(out: Path, stage: str) -> Path:
    return out / stage / "done.json"


def stage_done(out: Path, cfg: DemoConfig, stage: str) -> dict | None:
    """The stage's done record if it finished with the current config (and so did every earlier one)."""
    for s in STAGES[: STAGES.index(stage) + 1]:
        path = _done_path(out, s)
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if rec.get("key") != stage_key(cfg, s):
            return None
        if s == stage:
            return rec
    return None


def _write_json(path: Path, data) -> None:
    from proxies.sweep import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _mark_done(out: Path, cfg: DemoConfig, stage: str, seconds: float, **extra) -> None:
    _write_json(_done_path(out, stage), {"stage": stage, "key": stage_key(cfg, stage),
                                         "seconds": round(seconds, 3), **extra})


def store_dir(out: Path) -> Path:
    return out / "prepare" / "store"


def sweep_dir(out: Path) -> Path:
    return out / "sweep"


def sweep_config(cfg: DemoConfig, out: Path):
    from proxies.config import SweepConfig

    return SweepConfig(store=store_dir(out).absolute(), n_proxies=cfg.sample.n_proxies, model=cfg.sweep.model,
                       sampler=cfg.sample.sampler, train_domains=list(cfg.train_domains),
                       eval_domains=list(cfg.train_domains) + [cfg.target], temperature=cfg.sample.temperature,
                       seed=cfg.sample.seed, train=cfg.sweep.train, run=cfg.sweep.run)


def natural_mixture(out: Path, domains: list[str]) -> dict[str, float]:
    from regmix.corpus.store import TokenStore

    nat = TokenStore.open(store_dir(out)).natural_weights()
    total = sum(nat[d] for d in domains)
    return {d: nat[d] / total for d in domains}


def _workers(n: int) -> int:
    from proxies.sweep import default_workers

    return n or default_workers()


# -- stages --------------------------------------------------------------------------------------
def stage_prepare(cfg: DemoConfig, out: Path) -> dict:
    from regmix.corpus.prepare import prepare

    meta = prepare(cfg.corpus, store_dir(out), seq_len=cfg.seq_len, progress=False, log=sys.stderr)
    for d in list(cfg.train_domains) + [cfg.target]:
        if d not in meta["domains"]:
            raise RegmixError(f"unknown domain '{d}' (corpus has: {', '.join(meta['domains'])})")
    return {}


def stage_sample(cfg: DemoConfig, out: Path) -> dict:
    from proxies.sweep import locked
    from proxies.sweep import prepare as prepare_sweep

    with locked(sweep_dir(out)):  # a different sweep found there (config changed) is discarded
        prepare_sweep(sweep_config(cfg, out), sweep_dir(out), "config", force=True,
                      workers=_workers(cfg.sweep.run.workers))
    return {}


def stage_sweep(cfg: DemoConfig, out: Path) -> dict:
    from proxies.sweep import run_sweep
    from proxies.workers import enable_compile_cache

    enable_compile_cache(sweep_dir(out) / ".jax_cache")
    # force: a sweep of another config found there is discarded (same config: finished groups are kept)
    run_sweep(sweep_config(cfg, out), sweep_dir(out), force=True, workers=_workers(cfg.sweep.run.workers),
              progress=sys.stderr.isatty())
    status = pd.read_csv(sweep_dir(out) / "status.csv")
    return {"proxies": int(len(status)), "diverged": int((status["status"] != "ok").sum())}


def targets_table(cfg: DemoConfig, out: Path) -> pd.DataFrame:
    """run, <target> (held-out loss), train_mean (mean loss over the training domains)."""
    metrics = pd.read_csv(sweep_dir(out) / "metrics.csv")
    frame = pd.DataFrame({"run": metrics["run"], cfg.target: metrics[f"{cfg.target}_val_loss"]})
    frame[MEAN_TARGET] = metrics[[f"{d}_val_loss" for d in cfg.train_domains]].mean(axis=1)
    return frame


def stage_fit(cfg: DemoConfig, out: Path) -> dict:
    from regmix.regress.fit import fit_sweep, save_fit
    from regmix.tables import load_sweep, write_table

    fdir = out / "fit"
    write_table(targets_table(cfg, out), fdir / "targets.csv")
    mixtures, y, names = load_sweep(sweep_dir(out) / "mixtures.csv", fdir / "targets.csv", [cfg.target, MEAN_TARGET])
    model, oof = fit_sweep(mixtures, y, names, cfg.fit.kind, cfg.fit.folds, cfg.fit.seed, progress=False)
    save_fit(model, oof, fdir / "model")
    return {"cv": model.cv}


def stage_optimize(cfg: DemoConfig, out: Path) -> dict:
    from regmix.optimize import OptimizeConfig, optimize
    from regmix.regress.fit import FittedModel
    from regmix.space import MixtureSpace

    model = FittedModel.load(out / "fit" / "model")
    domains = list(model.domains)
    natural = natural_mixture(out, domains)
    space = MixtureSpace.from_prior(domains, np.array([natural[d] for d in domains]))
    o = cfg.optimize
    result = {}
    for name, weights in (("mixture", (1.0, 0.0)), ("mixture_mean", (0.0, 1.0))):
        res = optimize(model, space, OptimizeConfig(samples=o.samples, top_k=o.top_k, method=o.method,
                                                    kl_strength=o.kl_strength, target_weights=weights,
                                                    seed=o.seed), progress=False)
        _write_json(out / "optimize" / f"{name}.json", res.to_json())
        result[name] = {d: float(w) for d, w in zip(domains, res.weights_K)}
    return {}


def optimized_mixture(out: Path, name: str = "mixture") -> dict[str, float]:
    return json.loads((out / "optimize" / f"{name}.json").read_text())["weights"]


def export_path(out: Path, fmt: str) -> Path:
    from regmix.export import get_format

    name = "mixture.json" if fmt == "json" else f"mixture.{fmt}.{get_format(fmt).extension}"
    return out / "export" / name


def stage_export(cfg: DemoConfig, out: Path) -> dict:
    """Every format, sized for the demo's own final run: its tokens, batch and sequence length."""
    from regmix.export import FORMATS, Budget, ExportOptions, Mixture, export

    from regmix.export.inputs import read_token_counts

    t = cfg.final.train
    tokens = read_token_counts(store_dir(out))
    opts = ExportOptions(budget=Budget(float(t.steps * t.batch * t.seq_len), tokens),
                         global_batch_size=t.batch, sequence_length=t.seq_len, seed=cfg.final.seeds[0])
    files = {}
    for fmt in FORMATS:
        (file,) = export(Mixture(optimized_mixture(out)), fmt, opts)
        path = export_path(out, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.text, encoding="utf-8")
        files[fmt] = str(path.relative_to(out))
    return {"files": files}


def final_mixtures(cfg: DemoConfig, out: Path) -> dict[str, dict[str, float]]:
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


def stage_final(cfg: DemoConfig, out: Path) -> dict:
    from proxies.final import make_plan, run_final

    f = cfg.final
    mixtures = final_mixtures(cfg, out)
    schedule = None
    if f.schedule_fraction > 0:
        late = dict(f.schedule_mixture) or mixtures["optimized"]
        schedule = {"optimized": late}
    workers = _workers(f.workers)
    plan = make_plan(store_dir(out), list(cfg.train_domains), mixtures, model=f.model, train=f.train,
                     seeds=list(f.seeds), eval_domains=list(cfg.train_domains) + [cfg.target],
                     final_mixtures=schedule, final_fraction=f.schedule_fraction, workers=workers)
    runs = run_final(plan, out / "final", workers=workers)
    missing = [(n, s) for n in mixtures for s in f.seeds if s not in runs[n]]
    if missing:
        raise RegmixError(f"final runs: {len(missing)} run(s) did not finish, e.g. {missing[0]}")
    return {}


def stage_report(cfg: DemoConfig, out: Path) -> dict:
    from regmix.report import write_report

    write_report(cfg, out)
    return {}


RUNNERS = {"prepare": stage_prepare, "sample": stage_sample, "sweep": stage_sweep, "fit": stage_fit,
           "optimize": stage_optimize, "export": stage_export, "final": stage_final, "report": stage_report}


def run_stage(cfg: DemoConfig, out: str | Path, stage: str, force: bool = False) -> bool:
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
        _done_path(out, s).unlink(missing_ok=True)
    log(f"{stage}: running")
    t0 = time.perf_counter()
    extra = RUNNERS[stage](cfg, out) or {}
    seconds = time.perf_counter() - t0
    _mark_done(out, cfg, stage, seconds, **extra)
    if stage == "report":  # the summary was written inside the stage: add the report's own time
        path = out / "summary.json"
        summary = json.loads(path.read_text())
        summary["stage_seconds"] = stage_seconds(out)
        summary["total_seconds"] = round(sum(summary["stage_seconds"].values()), 3)
        _write_json(path, summary)
    log(f"{stage}: done in {seconds:.1f}s")
    return True


def run_demo(cfg: DemoConfig, out: str | Path) -> Path:
    """Run (or resume) every stage; returns the path of summary.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "config.json", to_dict(cfg))
    for stage in STAGES:
        run_stage(cfg, out, stage)
    return out / "summary.json"


def stage_seconds(out: Path) -> dict[str, float]:
    secs = {}
    for s in STAGES:
        try:
            secs[s] = float(json.loads(_done_path(out, s).read_text())["seconds"])
        except (OSError, ValueError, KeyError):
            pass
    return secs
