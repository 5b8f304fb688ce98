"""Seed and branches for merged-model ablations (Na et al. 2024), trained through proxies.jobs.

A seed proxy trains on a base mixture (the natural token shares of the train domains, or `base`).
From its final weights, one branch per train domain continues on that domain alone, at a constant
learning rate of `branch_lr_factor` x the seed's peak with no warmup (the schedule's first step
has rate 0: the optimizer's warmup of one step); the branches differ only in their data, so they
train as one vmapped group. Both are jobs of proxies.jobs: killed and re-run, they resume from
their checkpoints like a sweep.

Layout of the output folder::

    DIR/merge.json              config, store identity, domains, base mixture (fixed on first run)
    DIR/jobs/seed.json          seed result;  DIR/jobs/seed_params/      its final params (orbax)
    DIR/jobs/branches.json      branch results; DIR/jobs/branches_params/ their final params
    DIR/jobs/seed/ckpt/, DIR/jobs/branches/ckpt/   checkpoints while training
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from proxies import checkpoint, jobs
from proxies import model as modellib
from proxies.config import SweepConfig, TrainConfig, preset
from proxies.sweep import _check_domains, _difference, _store_identity
from regmix.config import from_dict, to_dict
from regmix.corpus.store import TokenStore
from regmix.errors import RegmixError
from regmix.files import atomic_write_text, locked

JOBS = ["seed", "branches"]


@dataclass(frozen=True)
class MergeSettings:
    seed_steps: int = 0  # 0: train.steps
    branch_steps: int = 0  # 0: train.steps // 4
    branch_lr_factor: float = 0.1  # branch lr = seed peak lr x this, constant
    n_candidates: int = 1000  # sampled mixtures scored by merging when no --mixtures is given
    base: dict[str, float] = field(default_factory=dict)  # seed mixture; empty: natural shares
    chunk: int = 64  # merged mixtures scored at a time

    def __post_init__(self):
        for name in ("seed_steps", "branch_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.branch_lr_factor > 0:
            raise ValueError(f"branch_lr_factor must be > 0, got {self.branch_lr_factor}")
        if self.n_candidates < 1 or self.chunk < 1:
            raise ValueError("n_candidates and chunk must be >= 1")


@dataclass(frozen=True)
class MergeConfig(SweepConfig):
    """A sweep config (`n_proxies`, `sampler`, `bounds` describe the candidates) plus `merge:`."""

    merge: MergeSettings = field(default_factory=MergeSettings)


def seed_train(cfg: MergeConfig) -> TrainConfig:
    return dataclasses.replace(cfg.train, steps=cfg.merge.seed_steps or cfg.train.steps)


def branch_train(cfg: MergeConfig) -> TrainConfig:
    """Constant lr at a fraction of the seed's peak, no warmup, a data stream the seed never read."""
    return dataclasses.replace(cfg.train, steps=cfg.merge.branch_steps or max(cfg.train.steps // 4, 1),
                               lr=cfg.train.lr * cfg.merge.branch_lr_factor, warmup_steps=0,
                               min_lr_ratio=1.0, seed=cfg.train.seed + 1)


def base_mixture(cfg: MergeConfig, store: TokenStore, domains: list[str], where: str) -> list[float]:
    if cfg.merge.base:
        for d in cfg.merge.base:
            if d not in domains:
                raise RegmixError(f"{where}: merge.base: unknown train domain '{d}'")
        w = np.array([float(cfg.merge.base.get(d, 0.0)) for d in domains])
    else:
        natural = store.natural_weights()
        w = np.array([natural[d] for d in domains])
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise RegmixError(f"{where}: merge.base: weights must be >= 0 with a positive sum")
    return (w / w.sum()).tolist()


def create(cfg: MergeConfig, out: Path, where: str, force: bool = False) -> dict:
    """Create or check DIR/merge.json; returns the record."""
    store = TokenStore.open(cfg.store)
    train_domains, eval_domains = _check_domains(cfg, store, where)
    config = to_dict(cfg)
    config["store"] = str(Path(cfg.store).absolute())
    record = {"config": {k: v for k, v in config.items() if k != "run"}, "store": _store_identity(store),
              "train_domains": train_domains, "eval_domains": eval_domains,
              "base": base_mixture(cfg, store, train_domains, where), "jobs": JOBS}
    record = json.loads(json.dumps(record))
    path = out / "merge.json"
    if path.exists():
        old = json.loads(path.read_text())
        what = _difference({k: v for k, v in old.items() if k not in ("rows", "n_rows")}, record)
        if not what:
            return old
        if not force:
            raise RegmixError(f"{out}: holds different branches ({what}); use another --out or --force to discard it")
    shutil.rmtree(out / "jobs", ignore_errors=True)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def job_result(out: Path, j: int) -> Path:
    return out / "jobs" / f"{JOBS[j]}.json"


def params_dir(out: Path, j: int) -> Path:
    return out / "jobs" / f"{JOBS[j]}_params"


def load_params(out: Path, record: dict, j: int):
    """Final stacked params of job j (seed: 1 proxy; branches: one per train domain)."""
    cfg = from_dict(MergeConfig, record["config"], where=str(out / "merge.json"))
    store = TokenStore.open(cfg.store)
    m = 1 if j == 0 else len(record["train_domains"])
    init = modellib.init_params(preset(cfg.model), store.vocab_size)
    abstract = jax.eval_shape(jax.vmap(init), jax.random.split(jax.random.key(0), m))
    found = checkpoint.restore(params_dir(out, j), abstract)
    if found is None:
        raise RegmixError(f"{params_dir(out, j)}: no saved params (train the {JOBS[j]} first)")
    return found[1]


def _params_ok(out: Path, record: dict, j: int) -> bool:
    try:
        load_params(out, record, j)
    except RegmixError:
        return False
    return True


def merge_job(out: Path, record: dict, j: int) -> jobs.Job:
    """Job j of the merge folder `out`: 0 the seed, 1 the branches (from the seed's params)."""
    cfg = from_dict(MergeConfig, record["config"], where=str(out / "merge.json"))
    domains = record["train_domains"]
    folder = out / "jobs" / JOBS[j]
    common = dict(store=cfg.store, domains=domains, model=cfg.model, eval_domains=record["eval_domains"],
                  checkpoint_dir=folder / "ckpt", scratch=folder, params_dir=params_dir(out, j),
                  progress=out / "jobs" / f"{JOBS[j]}_progress.json")
    if j == 0:
        return jobs.Job(w_MxK=np.array([record["base"]]), train=seed_train(cfg), proxy_ids=np.zeros(1, np.int64),
                        header={"runs": ["seed"]}, **common)
    k = len(domains)
    seed = load_params(out, record, 0)
    return jobs.Job(w_MxK=np.eye(k), train=branch_train(cfg), proxy_ids=np.arange(k),
                    init_params=jax.tree.map(lambda x: np.repeat(np.asarray(x), k, axis=0), seed),
                    header={"runs": list(domains)}, **common)


STAGE = jobs.Stage(name="merge branches", record="merge.json", jobs="jobs", folder="jobs", result=job_result,
                   job=merge_job, fields=("val_loss", "bpb", "curve_steps", "curve_loss", "diverged", "steps",
                                          "tokens", "seconds"),
                   worker="proxies.branches:work")


def work(args: list[str]) -> int:
    """Body of a pool worker (proxies.pool): `OUT J...` trains the jobs J of the merge folder OUT."""
    return jobs.work(STAGE, args)


def train_branches(cfg: MergeConfig, out: str | Path, *, where: str = "config", force: bool = False) -> dict:
    """Train (or resume) the seed, then the branches, into `out` (in this process: the branches are
    one vmapped group); returns the record."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with locked(out, "merge"):
        record = create(cfg, out, where, force)
        (out / "jobs").mkdir(exist_ok=True)
        for j in range(len(JOBS)):  # the branches start from the seed: one after the other
            if job_result(out, j).exists() and not _params_ok(out, record, j):
                job_result(out, j).unlink()  # its params were discarded (damaged): the result alone is no use
            if not job_result(out, j).exists():
                jobs.run_jobs(STAGE, out, record, [j], workers=1, batch=cfg.train.batch)
    return record


def continued_losses(cfg: MergeConfig, out: Path, record: dict, w_NxK: np.ndarray,
                     checkpoint_dir: Path | None = None):
    """The paper's comparison for the merged models: a model per mixture trained from the seed on the
    mixture itself, as long and at the same learning rate as a branch; returns its TrainResult."""
    from proxies.train import train_mixtures

    seed = load_params(out, record, 0)
    n = len(w_NxK)
    return train_mixtures(TokenStore.open(cfg.store), record["train_domains"], w_NxK, model=cfg.model,
                          train=branch_train(cfg), eval_domains=record["eval_domains"],
                          proxy_ids=np.arange(n), checkpoint_dir=checkpoint_dir,
                          init_params=jax.tree.map(lambda x: np.repeat(np.asarray(x), n, axis=0), seed))


def branch_results(out: Path) -> dict:
    return json.loads(job_result(Path(out), 1).read_text())


def candidates(cfg: MergeConfig, record: dict) -> np.ndarray:
    """`merge.n_candidates` mixtures sampled as a sweep samples them (sampler, bounds, seed)."""
    from proxies.sweep import sample

    store = TokenStore.open(cfg.store)
    return sample(dataclasses.replace(cfg, n_proxies=cfg.merge.n_candidates), store, record["train_domains"])


def read_mixtures(path: Path, domains: list[str]) -> tuple[list[str], np.ndarray]:
    """Run ids and weights over `domains` of a mixtures table (a domain it lacks has weight 0)."""
    from regmix.tables import load_mixtures

    table = load_mixtures(path)
    for c in table.columns:
        if c not in domains:
            raise RegmixError(f"{path}: column '{c}' is not a train domain of the branches ({', '.join(domains)})")
    w = np.zeros((len(table.ids), len(domains)))
    for j, c in enumerate(table.columns):
        w[:, domains.index(c)] = table.w_NxK[:, j]
    return [str(i) for i in table.ids], w


def score(cfg: MergeConfig, out: Path, record: dict, ids: list[str], w_NxK: np.ndarray) -> Path:
    """Merged losses of the mixtures `w_NxK` written as a sweep's tables (DIR/mixtures.csv, metrics.csv;
    status.csv says source=merged, as does merge.json's "rows"); returns metrics.csv's path."""
    import pandas as pd

    from proxies.merge import merged_losses
    from proxies.sweep import write_csv

    domains, evals = record["train_domains"], record["eval_domains"]
    loss, bpb = merged_losses(load_params(out, record, 1), w_NxK, store=TokenStore.open(cfg.store),
                              eval_domains=evals, model=cfg.model, train=cfg.train, names=domains,
                              chunk=cfg.merge.chunk)
    mix = pd.DataFrame(w_NxK, columns=domains)
    mix.insert(0, "run", ids)
    metrics = pd.DataFrame({"run": ids})
    for e, d in enumerate(evals):
        metrics[f"{d}_val_loss"], metrics[f"{d}_bpb"] = loss[:, e], bpb[:, e]
    metrics["mean_val_loss"], metrics["mean_bpb"] = loss.mean(1), bpb.mean(1)
    write_csv(out / "mixtures.csv", mix)
    write_csv(out / "metrics.csv", metrics)
    write_csv(out / "status.csv", pd.DataFrame({"run": ids, "status": "ok", "source": "merged"}))
    record = dict(json.loads((out / "merge.json").read_text()), rows="merged", n_rows=len(ids))
    atomic_write_text(out / "merge.json", json.dumps(record, indent=1) + "\n")
    return out / "metrics.csv"


def run_merge(cfg: MergeConfig, out: str | Path, *, where: str = "config", mixtures: str | Path | None = None,
              force: bool = False) -> Path:
    """`regmix merge`: train (or resume) seed and branches into `out`, then score `mixtures` (a table)
    or `merge.n_candidates` sampled ones by merging; returns metrics.csv's path."""
    out = Path(out)
    record = train_branches(cfg, out, where=where, force=force)
    if mixtures is not None:
        ids, w = read_mixtures(Path(mixtures), record["train_domains"])
    else:
        w = candidates(cfg, record)
        ids = [f"m{i:05d}" for i in range(len(w))]
    return score(cfg, out, record, ids, w)
