"""Final runs through the job runner: results collected, checkpoints cleared, resumes skip finished
jobs, a schedule's late mixture is applied, plan.json keeps its on-disk keys."""

import json

import numpy as np
import pytest

from proxies.config import PRESETS, TrainConfig
from proxies.final import collect, job_path, make_plan, run_final
from regmix.corpus.store import write_store
from regmix.errors import RegmixError

TRAIN = TrainConfig(steps=8, batch=4, seq_len=16, lr=3e-3, warmup_steps=2, block_steps=4, eval_every=4,
                    eval_windows=2, eval_batch=2, checkpoint_every=4)
MIXTURES = {"a_only": {"a": 1.0}, "even": {"a": 0.5, "b": 0.5}}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    arrays = {d: ((rng.integers(0, 2, 2000) * p + rng.integers(0, 10, 2000)) % 256, rng.integers(0, 256, 200))
              for d, p in (("a", 3), ("b", 100))}
    return write_store(tmp_path_factory.mktemp("store"), arrays, vocab_size=257, eod_id=256)


def plan_for(store, **kw):
    return make_plan(store.path, ["a", "b"], MIXTURES, model=PRESETS["tiny"], train=TRAIN, seeds=[0],
                     eval_domains=["a", "b"], **kw)


def test_final_runs_collect_clear_and_resume(store, tmp_path):
    plan = plan_for(store, late_mixtures={"even": {"b": 1.0}}, late_fraction=0.5)
    assert plan["final_mixtures"] == {"even": [0.0, 1.0]} and plan["final_fraction"] == 0.5  # on-disk keys
    runs = run_final(plan, tmp_path, workers=1)
    assert set(runs) == set(MIXTURES) and all(set(r) == {0} for r in runs.values())
    for name, by_seed in runs.items():
        r = by_seed[0]
        assert not r["diverged"] and r["curve_steps"] == [0, 4, 8] and set(r["val_loss"]) == {"a", "b"}
        assert r["curve_loss"]["a"][-1] == r["val_loss"]["a"]
    assert not (tmp_path / "jobs" / "j000").exists()  # the checkpoint went with the finished job
    result = json.loads(job_path(tmp_path, 0).read_text())
    assert list(result) == ["seed", "mixtures", "eval_domains", "val_loss", "curve_steps", "curve_loss",
                            "diverged", "tokens", "seconds"]
    mtime = job_path(tmp_path, 0).stat().st_mtime_ns
    assert run_final(plan, tmp_path, workers=1) == runs and job_path(tmp_path, 0).stat().st_mtime_ns == mtime
    # without the schedule: the same curves up to the switch at step 4 (same init and data), other ones after
    plain = run_final(plan_for(store), tmp_path / "plain", workers=1)
    for name in MIXTURES:
        for d in ("a", "b"):
            assert plain[name][0]["curve_loss"][d][:2] == runs[name][0]["curve_loss"][d][:2]
            assert plain[name][0]["curve_loss"][d][2] != runs[name][0]["curve_loss"][d][2]
    assert collect(tmp_path) == runs


def test_plan_checks():
    with pytest.raises(RegmixError, match="late_fraction must be in"):
        make_plan("s", ["a"], {"x": {"a": 1.0}}, model=PRESETS["tiny"], train=TRAIN, seeds=[0], eval_domains=["a"],
                  late_fraction=1.0)
    with pytest.raises(RegmixError, match="schedule for unknown mixture 'y'"):
        make_plan("s", ["a"], {"x": {"a": 1.0}}, model=PRESETS["tiny"], train=TRAIN, seeds=[0], eval_domains=["a"],
                  late_mixtures={"y": {"a": 1.0}}, late_fraction=0.2)


def test_schedules_in_a_plan(store, tmp_path):
    late = plan_for(store, late_mixtures={"even": {"b": 1.0}}, late_fraction=0.5)
    mixed = plan_for(store, late_mixtures={"even": {"b": 1.0}}, late_fraction=0.5,
                     schedules={"a_only": [(0, {"a": 1.0}), (0.75, {"b": 1.0})]})
    assert mixed["schedules"] == {"a_only": [[0, [1.0, 0.0]], [6, [0.0, 1.0]]]} and "schedules" not in late
    old, new = run_final(late, tmp_path / "late", workers=1), run_final(mixed, tmp_path / "mixed", workers=1)
    # the late mixture turned into phases trains exactly as before; the scheduled run switches at step 6
    assert new["even"] == {0: dict(old["even"][0], seconds=new["even"][0]["seconds"])}
    a_old, a_new = old["a_only"][0]["curve_loss"]["b"], new["a_only"][0]["curve_loss"]["b"]
    assert a_new[:2] == a_old[:2] and a_new[2] != a_old[2]  # the same data up to step 4, other data after
    with pytest.raises(RegmixError, match="both a late mixture and a schedule"):
        plan_for(store, late_mixtures={"even": {"b": 1.0}}, late_fraction=0.5,
                 schedules={"even": [(0, {"a": 0.5, "b": 0.5})]})
    with pytest.raises(RegmixError, match="must start with its mixture"):
        plan_for(store, schedules={"even": [(0, {"a": 1.0}), (4, {"b": 1.0})]})
    with pytest.raises(RegmixError, match="schedule for unknown mixture 'zz'"):
        plan_for(store, schedules={"zz": [(0, {"a": 1.0})]})


FORK_TRAIN = TrainConfig(steps=12, batch=4, seq_len=16, lr=3e-3, warmup_steps=2, block_steps=4, eval_every=4,
                         eval_windows=2, eval_batch=2, checkpoint_every=4)
EVEN = {"a": 0.5, "b": 0.5}
UP = {"even": EVEN, "a_only": {"a": 1.0}, "even_up": EVEN}
UP_SCHEDULE = {"even_up": [(0, EVEN), (0.75, {"b": 1.0})]}  # switches at step 9, inside the block of steps 8-11


def fork_plan(store, seeds=(0,), **kw):
    return make_plan(store.path, ["a", "b"], UP, model=PRESETS["tiny"], train=FORK_TRAIN, seeds=list(seeds),
                     eval_domains=["a", "b"], schedules=UP_SCHEDULE, **kw)


def test_a_forked_run_is_the_run_trained_from_step_0(store, tmp_path):
    two = fork_plan(store, seeds=(0, 1), forks={"even_up": "even"}, workers=2)
    assert two["forks"] == {"even_up": {"from": "even", "step": 8}}  # the block boundary before the switch
    starts = [j for j in two["jobs"] if "start" in j]
    assert [j["seed"] for j in starts] == [0, 1] and all(j["mixtures"] == ["even_up"] for j in starts)
    assert all("even_up" not in j["mixtures"] for j in two["jobs"] if "start" not in j)
    assert [j.get("snapshots") for j in two["jobs"] if "even" in j["mixtures"]] == [[["even", 8]]] * 2
    forked = fork_plan(store, forks={"even_up": "even"}, workers=2)  # one run a job: other group sizes too
    plain = run_final(fork_plan(store), tmp_path / "plain", workers=1)
    got = run_final(forked, tmp_path / "forked", workers=1)
    strip = lambda runs: {n: {s: {k: v for k, v in r.items() if k != "seconds"} for s, r in by.items()}
                          for n, by in runs.items()}
    assert strip(got) == strip(plain)  # every mixture and seed, curves included, to the last bit
    assert got["even_up"][0]["curve_loss"]["b"][-1] != got["even"][0]["curve_loss"]["b"][-1]  # it did switch
    assert not (tmp_path / "forked" / "jobs" / "forks").exists()  # snapshots go once every job is done
    # the forked result lost, its snapshot gone with the others: the run it forks from trains again first
    up = next(j for j, job in enumerate(forked["jobs"]) if job.get("start"))
    job_path(tmp_path / "forked", up).unlink()
    assert strip(run_final(forked, tmp_path / "forked", workers=1)) == strip(plain)


def test_fork_checks(store):
    with pytest.raises(RegmixError, match="only a run with a schedule"):
        fork_plan(store, forks={"a_only": "even"})
    with pytest.raises(RegmixError, match="without a schedule"):
        fork_plan(store, forks={"even_up": "nope"})
    with pytest.raises(RegmixError, match="must start with the mixture of 'a_only'"):
        fork_plan(store, forks={"even_up": "a_only"})
    early = make_plan(store.path, ["a", "b"], UP, model=PRESETS["tiny"], train=FORK_TRAIN, seeds=[0],
                      eval_domains=["a", "b"], schedules={"even_up": [(0, EVEN), (3, {"b": 1.0})]},
                      forks={"even_up": "even"})
    assert "forks" not in early and all("start" not in j for j in early["jobs"])  # switch in the first block
