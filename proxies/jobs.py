"""One job runner for the stages that train through the pool: sweeps (proxies.sweep) and final
runs (proxies.final).

A stage's folder holds a record (sweep.json, plan.json) that lists its jobs; a job is one call of
`train_mixtures`. `train_job` reads job i of the record, trains it (resuming its checkpoint),
writes its result atomically and clears its checkpoint. `run_jobs` trains the unfinished jobs in
this process or in pinned pool workers (proxies.pool), each of which runs `work`. A stage says
how its jobs are laid out with a `Stage`; everything else is shared.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from proxies import checkpoint, cpu_kernels
from proxies.config import ModelConfig, TrainConfig
from proxies.pool import enable_compile_cache, release_memory, run_workers
from proxies.replicas import Replicas, from_env, leads
from proxies.train import TrainResult, train_mixtures
from regmix.corpus.store import TokenStore
from regmix.files import atomic_write_json, json_safe

RESULT_FIELDS = {"val_loss": "val_loss_MxE", "bpb": "bpb_MxE", "curve_steps": "curve_steps_S",
                 "curve_loss": "curve_loss_SxMxE", "diverged": "diverged_M", "steps": "steps_M",
                 "tokens": "tokens_M", "seconds": "seconds"}  # result key: TrainResult field


@dataclasses.dataclass(frozen=True)
class Job:
    """One job: what `train_mixtures` trains, and where its files go."""

    store: str | Path
    domains: list[str]
    w_MxK: np.ndarray
    model: str | ModelConfig
    train: TrainConfig
    eval_domains: list[str]
    proxy_ids: np.ndarray
    checkpoint_dir: Path
    scratch: Path  # removed (the checkpoint with it) once the result is written
    header: dict  # the result's first entries: which runs, which seed
    lr_scale_M: np.ndarray | None = None
    late_w_MxK: np.ndarray | None = None  # schedule: these mixtures for the last late_fraction of the steps
    late_fraction: float = 0.0
    schedule_M: list | None = None  # per proxy: None or phases [(step, w_K)] (proxies.batches.resolve_schedule)
    same_init: bool = False
    progress: Path | None = None  # {"step", "tokens"} of the job, rewritten about once a second
    init_params: object = None  # start from these stacked params (proxies.branches)
    params_dir: Path | None = None  # save the final params here (orbax) before the result
    snapshots: dict | None = None  # {step: [(proxy m, folder)]}: runs that later runs fork from (proxies.final)
    start_M: list | None = None  # per proxy the snapshot folder it starts from (None: step 0)


@dataclasses.dataclass(frozen=True)
class Stage:
    """How a stage lays out its jobs in its folder."""

    name: str  # in messages: "another sweep is running ...", "sweep worker 1 failed ..."
    record: str  # the record's file name
    jobs: str  # the record's key that lists the jobs
    folder: str  # subfolder of the jobs' files and the workers' logs
    result: Callable[[Path, int], Path]  # result file of job i in the folder `out`
    job: Callable[[Path, dict, int], Job]  # job i of the record in the folder `out`
    fields: tuple[str, ...]  # RESULT_FIELDS a result holds, in order
    worker: str  # pool target ("module:function") that calls `work(stage, args)`


def read_record(stage: Stage, out: Path) -> dict:
    return json.loads((out / stage.record).read_text())


def unfinished(stage: Stage, out: Path, record: dict) -> list[int]:
    """The jobs of `record` without a result file."""
    return [i for i in range(len(record[stage.jobs])) if not stage.result(out, i).exists()]


def _progress_writer(path: Path, proxies: int, steps: int) -> Callable[[int, int], None]:
    last = [0.0]

    def on_step(step: int, tokens: int) -> None:
        now = time.monotonic()
        if now - last[0] > 1.0 or step == steps:
            last[0] = now
            atomic_write_json(path, {"step": step, "tokens": tokens * proxies}, indent=None)

    return on_step


def result_record(stage: Stage, job: Job, res: TrainResult) -> dict:
    """The JSON-ready result of a job (None for NaN)."""
    plain = lambda x: x.tolist() if isinstance(x, np.ndarray) else x
    return json_safe({**job.header, "eval_domains": res.eval_domains,
                      **{k: plain(getattr(res, RESULT_FIELDS[k])) for k in stage.fields}})


def train_job(stage: Stage, out: Path, i: int, record: dict | None = None, replicas: Replicas | None = None) -> dict:
    """Train job i of the stage's folder `out` (resuming its checkpoint), write its result and clear
    its checkpoint (`replicas`: one of several processes splitting the job's batches; rank 0 writes)."""
    record = record or read_record(stage, out)
    job = stage.job(out, record, i)
    on_step = None
    if job.progress is not None and leads(replicas):
        job.progress.parent.mkdir(parents=True, exist_ok=True)
        on_step = _progress_writer(job.progress, len(job.proxy_ids), job.train.steps)
    res = train_mixtures(TokenStore.open(job.store), job.domains, job.w_MxK, model=job.model, train=job.train,
                         eval_domains=job.eval_domains, late_w_MxK=job.late_w_MxK,
                         late_fraction=job.late_fraction, schedule_M=job.schedule_M, same_init=job.same_init, proxy_ids=job.proxy_ids,
                         lr_scale_M=job.lr_scale_M, checkpoint_dir=job.checkpoint_dir, on_step=on_step,
                         replicas=replicas, init_params=job.init_params, snapshots=job.snapshots,
                         start_M=job.start_M)
    result = result_record(stage, job, res)
    if leads(replicas):
        if job.params_dir is not None:
            checkpoint.save(job.params_dir, job.train.steps, res.params, {"eval_domains": res.eval_domains})
        atomic_write_json(stage.result(out, i), result, indent=None)
        shutil.rmtree(job.scratch, ignore_errors=True)  # the result is the durable record now
    return result


def run_jobs(stage: Stage, out: Path, record: dict, todo: list[int], workers: int, batch: int,
             tick: Callable[[], None] | None = None) -> None:
    """Train the jobs `todo` of `record`: in this process (workers <= 1) or in pinned pool workers on
    the core sets of min(workers, jobs) workers (fixed by the plan, not by what is left; a worker
    with several cores runs as replicas splitting every `batch`). `tick()` is called after each job
    in this process, every 0.5 s while workers run, and once at the end."""
    if not todo:
        return
    if workers <= 1:
        enable_compile_cache(out / ".jax_cache")
        for i in todo:
            train_job(stage, out, i, record)
            if tick is not None:
                tick()
        return
    cpu_kernels.build()  # once here, not in every worker at the same time
    logs = out / stage.folder
    logs.mkdir(exist_ok=True)
    run_workers(stage.worker, out, todo, min(workers, len(record[stage.jobs])), logs, what=f"{stage.name} worker",
                tick=tick, batch=batch)
    if tick is not None:
        tick()


def work(stage: Stage, args: list[str]) -> int:
    """Body of a pool worker (`OUT JOB...`): train the jobs JOB of the stage's folder OUT."""
    out, todo = Path(args[0]), [int(i) for i in args[1:]]
    enable_compile_cache(out / ".jax_cache")
    record = read_record(stage, out)
    replicas = from_env()
    for i in todo:
        train_job(stage, out, i, record, replicas)
        release_memory()
    return 0
