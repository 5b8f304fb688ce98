"""Final runs: a larger model trained on a few named mixtures, paired over seeds, in pinned workers.

For one seed every mixture starts from the same initialization (`same_init`) and draws its windows
from the same random stream (one proxy id for all: common random numbers), so the difference
between two mixtures at a seed is a paired difference with less noise than two independent runs.
A run may follow a schedule: its base mixture, then a late mixture for the last `late_fraction`
of the steps (end-of-training upsampling), or any phases `[(start step or fraction, mixture), ...]`
(Levanter's form; plan.json holds them resolved to steps under "schedules").

A scheduled run may fork from a run of the plan trained on its first phase's mixture (`forks`): it
starts from that run's state (weights, optimizer, curves) at the last data block boundary before its
first switch, saved there as a snapshot, instead of at step 0. With the same seed, initialization and
windows up to that step, the result is the one of the run trained from step 0 (tests check it),
for (1 - fork step / steps) of the cost: upsampling the last 10% costs about a tenth of a run.
Forked jobs train after the jobs they fork from.

Layout of the output folder::

    DIR/plan.json            what is trained (fixed on first run; a different plan is refused)
    DIR/jobs/jNNN.json       one finished job: a seed and some of the mixtures (curves included)
    DIR/jobs/jNNN/ckpt/      orbax checkpoint while the job trains (resume after a kill)
    DIR/jobs/forks/          snapshots forked runs start from (removed once every job is done)

`run_final(...)` trains the missing jobs (jobs of proxies.jobs, in pinned worker processes, one per
core) and returns `collect(DIR)`: per mixture, per seed, the last and curve losses per evaluation
domain.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from proxies import checkpoint, jobs
from proxies.batches import resolve_schedule
from proxies.config import ModelConfig, TrainConfig
from regmix.config import from_dict, to_dict
from regmix.errors import RegmixError
from regmix.files import atomic_write_text, locked
from regmix.progress import Progress, Rate, eta_note


def make_plan(store: str | Path, domains: list[str], mixtures: dict[str, dict[str, float]], *,
              model: ModelConfig, train: TrainConfig, seeds: list[int], eval_domains: list[str],
              late_mixtures: dict[str, dict[str, float]] | None = None, late_fraction: float = 0.0,
              schedules: dict[str, list] | None = None, forks: dict[str, str] | None = None,
              workers: int = 1) -> dict:
    """The jobs: per seed, the mixtures split into chunks so the jobs spread evenly over workers.
    `late_mixtures` {name: mixture}: those runs switch to it for the last `late_fraction` of the
    steps (plan.json keeps the keys final_mixtures and final_fraction). `schedules` {name: phases}:
    those runs follow the phases (proxies.batches.resolve_schedule; the first is the run's mixture
    from step 0, e.g. [(0, base), (0.9, late)] upsamples in the last 10% of the steps). `forks`
    {scheduled run: run}: the scheduled run starts from the other's state at the last block boundary
    before its switch (same mixture before it, the other run unscheduled; see the module docstring)."""
    if not seeds:
        raise RegmixError("final runs: no seeds")
    if len(set(seeds)) != len(seeds):
        raise RegmixError(f"final runs: repeated seed in {seeds}")
    if not 0.0 <= late_fraction < 1.0:
        raise RegmixError(f"final runs: late_fraction must be in [0, 1), got {late_fraction}")
    names = list(mixtures)
    late_mixtures = late_mixtures or {}
    for n in late_mixtures:
        if n not in mixtures:
            raise RegmixError(f"final runs: schedule for unknown mixture '{n}'")
    vec = lambda w: [float(w.get(d, 0.0)) for d in domains]
    resolved = {}
    for n, phases in (schedules or {}).items():
        if n not in mixtures:
            raise RegmixError(f"final runs: schedule for unknown mixture '{n}'")
        if n in late_mixtures:
            raise RegmixError(f"final runs: mixture '{n}' has both a late mixture and a schedule")
        got = resolve_schedule(phases, train.steps, list(domains), f"final runs: schedule of '{n}'")
        if not np.allclose(got[0][1], vec(mixtures[n])):
            raise RegmixError(f"final runs: the schedule of '{n}' must start with its mixture")
        resolved[n] = [[s, w.tolist()] for s, w in got]
    forked = fork_steps(forks or {}, mixtures, resolved, late_mixtures, train, vec)
    base = [n for n in names if n not in forked]
    chunks = 1 if len(seeds) % max(workers, 1) == 0 else min(max(workers, 1), len(base))
    parts = [base[i::chunks] for i in range(chunks)]
    jobs = []
    for s in seeds:
        for p in parts:
            if not p:
                continue
            snaps = sorted({(f["from"], f["step"]) for f in forked.values() if f["from"] in p})
            snaps = [list(x) for x in snaps]  # one snapshot serves every run forking there
            jobs.append({"seed": int(s), "mixtures": p, **({"snapshots": snaps} if snaps else {})})
    jobs += [{"seed": int(s), "mixtures": [n], "start": f} for s in seeds for n, f in forked.items()]
    return {
        "store": str(Path(store).absolute()), "domains": list(domains), "eval_domains": list(eval_domains),
        "mixtures": {n: vec(mixtures[n]) for n in names},
        "final_mixtures": {n: vec(w) for n, w in late_mixtures.items()},  # on-disk keys of plans before
        "final_fraction": float(late_fraction) if late_mixtures else 0.0,   # the rename: resumes keep them
        "model": to_dict(model), "train": to_dict(train), "seeds": [int(s) for s in seeds], "jobs": jobs,
        **({"schedules": resolved} if resolved else {}),  # absent without one: earlier plans resume unchanged
        **({"forks": forked} if forked else {}),
    }


def fork_steps(forks: dict[str, str], mixtures: dict, resolved: dict, late_mixtures: dict, train: TrainConfig,
               vec) -> dict[str, dict]:
    """{scheduled run: {"from": run, "step": fork step}}: the last data block boundary at or before the
    first switch (the windows before it are the unscheduled run's: proxies.batches); none at step 0."""
    out = {}
    for n, base in forks.items():
        where = f"final runs: fork of '{n}' from '{base}'"
        if n not in resolved or len(resolved[n]) < 2:
            raise RegmixError(f"{where}: only a run with a schedule of several phases forks")
        if base not in mixtures or base in resolved or base in late_mixtures or base in forks:
            raise RegmixError(f"{where}: '{base}' must be a run of the plan without a schedule")
        if not np.allclose(vec(mixtures[n]), vec(mixtures[base]), rtol=0, atol=1e-12):
            raise RegmixError(f"{where}: the schedule must start with the mixture of '{base}'")
        step = resolved[n][1][0] // train.block_steps * train.block_steps
        if step > 0:
            out[n] = {"from": base, "step": int(step)}
    return out


def fork_path(out: Path, seed: int, name: str, step: int) -> Path:
    return out / "jobs" / "forks" / f"s{seed}_{name}_{step}"


def job_path(out: Path, j: int) -> Path:
    return out / "jobs" / f"j{j:03d}.json"


def plan_job(out: Path, plan: dict, j: int) -> jobs.Job:
    """Job j of the plan in `out` as a job of proxies.jobs."""
    job = plan["jobs"][j]
    model = from_dict(ModelConfig, plan["model"], where=str(out / "plan.json"), field="model")
    train = from_dict(TrainConfig, dict(plan["train"], seed=job["seed"]), where=str(out / "plan.json"), field="train")
    names = job["mixtures"]
    late = None
    if plan["final_mixtures"]:
        late = np.array([plan["final_mixtures"].get(n, plan["mixtures"][n]) for n in names], np.float64)
    schedule = None
    if plan.get("schedules"):  # every run of the job as phases (the late mixtures' too)
        switch = train.steps - int(round(plan["final_fraction"] * train.steps))
        schedule = []
        for m, n in enumerate(names):
            if n in plan["schedules"]:
                schedule.append([(s, np.array(w)) for s, w in plan["schedules"][n]])
            elif late is not None and switch < train.steps:
                schedule.append([(0, np.array(plan["mixtures"][n])), (switch, late[m])])
            else:
                schedule.append(None)
        late = None
    folder = out / "jobs" / f"j{j:03d}"
    snapshots = {}
    for name, step in job.get("snapshots", []):
        snapshots.setdefault(step, []).append((names.index(name), fork_path(out, job["seed"], name, step)))
    start = job.get("start")
    start_M = None if start is None else [fork_path(out, job["seed"], start["from"], start["step"])] * len(names)
    return jobs.Job(store=plan["store"], domains=plan["domains"],
                    w_MxK=np.array([plan["mixtures"][n] for n in names], np.float64), model=model, train=train,
                    eval_domains=plan["eval_domains"], proxy_ids=np.zeros(len(names), np.int64),
                    checkpoint_dir=folder / "ckpt", scratch=folder, header={"seed": job["seed"], "mixtures": names},
                    late_w_MxK=late, late_fraction=plan["final_fraction"], schedule_M=schedule, same_init=True,
                    snapshots=snapshots or None, start_M=start_M)


FINAL = jobs.Stage(name="final run", record="plan.json", jobs="jobs", folder="jobs", result=job_path, job=plan_job,
                   fields=("val_loss", "curve_steps", "curve_loss", "diverged", "tokens", "seconds"),
                   worker="proxies.final:work")


def work(args: list[str]) -> int:
    """Body of a pool worker (proxies.pool): `OUT J...` trains the jobs J of the plan in OUT."""
    return jobs.work(FINAL, args)


def collect(out: str | Path) -> dict:
    """Finished results: {mixture: {seed: {"val_loss": {domain: x}, "curve_steps": [...],
    "curve_loss": {domain: [...]}, "diverged": bool}}}."""
    out = Path(out)
    plan = json.loads((out / "plan.json").read_text())
    runs: dict = {n: {} for n in plan["mixtures"]}
    for j in range(len(plan["jobs"])):
        path = job_path(out, j)
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        doms = r["eval_domains"]
        for m, name in enumerate(r["mixtures"]):
            fl = lambda v: float("nan") if v is None else float(v)
            runs[name][r["seed"]] = {
                "val_loss": {d: fl(r["val_loss"][m][e]) for e, d in enumerate(doms)},
                "curve_steps": r["curve_steps"],
                "curve_loss": {d: [fl(s[m][e]) for s in r["curve_loss"]] for e, d in enumerate(doms)},
                "diverged": bool(r["diverged"][m]), "seconds": r["seconds"],
            }
    return runs


def run_final(plan: dict, out: str | Path, workers: int = 1, progress: bool = True) -> dict:
    """Train (or resume) every job of `plan` into `out`; returns `collect(out)`."""
    out = Path(out)
    with locked(out, "final run"):
        path = out / "plan.json"
        if path.exists() and json.loads(path.read_text()) != json.loads(json.dumps(plan)):
            shutil.rmtree(out / "jobs", ignore_errors=True)  # a different plan: its results are stale
        atomic_write_text(path, json.dumps(plan, indent=1) + "\n")
        (out / "jobs").mkdir(exist_ok=True)
        # workers fixed by the plan; a lone job trains in this process (its batch is never split)
        todo = jobs.unfinished(FINAL, out, plan)
        bar = Progress("final runs", len(plan["jobs"]), "jobs", initial=len(plan["jobs"]) - len(todo), enabled=progress)
        steps = plan["train"]["steps"]
        # a job's work: its runs x the steps it trains (a forked run trains only its last steps)
        cost = [len(j["mixtures"]) * (steps - (j["start"]["step"] if "start" in j else 0)) for j in plan["jobs"]]
        total = sum(cost)
        rate_of = Rate(total - sum(cost[j] for j in todo))  # the pace from the first finished job on

        def tick() -> None:
            left = jobs.unfinished(FINAL, out, plan)
            rest = sum(cost[j] for j in left)
            bar.update(len(plan["jobs"]) - len(left), eta_note(rate_of(total - rest), rest, "run-step"))

        first, later = _fork_order(out, plan, todo)
        for part in (first, later):  # the forked runs after the runs they fork from
            jobs.run_jobs(FINAL, out, plan, part, min(max(workers, 1), len(plan["jobs"])), plan["train"]["batch"],
                          tick=tick)
        bar.close()
        if not jobs.unfinished(FINAL, out, plan):
            shutil.rmtree(out / "jobs" / "forks", ignore_errors=True)
    return collect(out)


def _fork_order(out: Path, plan: dict, todo: list[int]) -> tuple[list[int], list[int]]:
    """(jobs to train first, forked jobs). A forked job whose snapshot is missing (its run finished, or
    resumed past the fork step, without it) has the job of that run trained again from step 0."""
    later = [j for j in todo if "start" in plan["jobs"][j]]
    first = [j for j in todo if j not in later]
    for j in later:
        job = plan["jobs"][j]
        src, step = job["start"]["from"], job["start"]["step"]
        if checkpoint.latest_step(fork_path(out, job["seed"], src, step)) is not None:
            continue
        b = next(i for i, other in enumerate(plan["jobs"]) if other["seed"] == job["seed"] and src in other["mixtures"]
                 and "start" not in other)
        ckpt = out / "jobs" / f"j{b:03d}" / "ckpt"
        if b not in first or (checkpoint.latest_step(ckpt) or 0) > step:
            shutil.rmtree(ckpt, ignore_errors=True)
            first = sorted(set(first) | {b})
    return first, later
