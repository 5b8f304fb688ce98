"""`regmix sweep`: tables for `regmix fit`, SIGKILL + resume equals uninterrupted, divergence, bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from regmix.cli import main
from regmix.corpus.store import write_store

TRAIN = {"steps": 160, "batch": 4, "seq_len": 32, "lr": 0.003, "warmup_steps": 5, "block_steps": 8,
         "eval_every": 80, "eval_windows": 4, "eval_batch": 4, "checkpoint_every": 40}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)

    def dom(p, n):
        return (rng.integers(0, 2, n) * p + rng.integers(0, 10, n)) % 256

    arrays = {d: (dom(p, 6000), dom(p, 600)) for d, p in [("web", 3), ("code", 50), ("books", 100), ("held", 7)]}
    write_store(root / "store", arrays, vocab_size=257, eod_id=256)
    config = {"store": str(root / "store"), "n_proxies": 4, "model": "tiny", "sampler": "uniform",
              "train_domains": ["web", "code", "books"], "train": TRAIN, "lr_scale": {"p0001": float("inf")},
              "run": {"workers": 2, "group_size": 1}}
    (root / "sweep.yaml").write_text(yaml.safe_dump(config))
    environ = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"))
    return root, environ


def sweep_cmd(root, out):
    return [sys.executable, "-m", "regmix", "sweep", "--config", str(root / "sweep.yaml"), "--out", str(out), "--quiet"]


@pytest.fixture(scope="module")
def reference(env):
    root, environ = env
    subprocess.run(sweep_cmd(root, root / "ref"), env=environ, check=True, capture_output=True, timeout=300)
    return root / "ref"


def test_tables_for_fit(env, reference):
    mixtures = pd.read_csv(reference / "mixtures.csv")
    metrics = pd.read_csv(reference / "metrics.csv")
    status = pd.read_csv(reference / "status.csv")
    assert list(mixtures.columns) == ["run", "web", "code", "books"]
    np.testing.assert_allclose(mixtures[["web", "code", "books"]].sum(axis=1), 1.0, atol=1e-9)
    domains = ["web", "code", "books", "held"]  # the held-out domain is evaluated too
    assert list(metrics.columns) == ["run"] + [f"{d}_{m}" for d in domains for m in ("val_loss", "bpb")] + [
        "mean_val_loss", "mean_bpb"]
    assert metrics["run"].tolist() == ["p0000", "p0001", "p0002", "p0003"]
    # the diverging proxy is recorded and the others finished
    assert status["status"].tolist() == ["ok", "diverged", "ok", "ok"]
    assert metrics.iloc[1, 1:].isna().all() and metrics.drop(index=1).iloc[:, 1:].notna().all().all()
    assert (status["steps"][status["status"] == "ok"] == TRAIN["steps"]).all()


def test_sigkill_and_resume_equals_uninterrupted(env, reference):
    root, environ = env
    out = root / "killed"
    proc = subprocess.Popen(sweep_cmd(root, out), env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if any((out / "groups").glob("g*/ckpt/*")) and any((out / "groups").glob("g*/result.json")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (out / "groups").glob("g*/result.json")}
    assert 0 < len(finished) < 4
    time.sleep(1.0)  # workers die with their parent
    subprocess.run(sweep_cmd(root, out), env=environ, check=True, capture_output=True, timeout=300)
    for name, mtime in finished.items():  # finished groups were not trained again
        assert (out / "groups" / name / "result.json").stat().st_mtime_ns == mtime
    for table in ("mixtures.csv", "metrics.csv"):
        assert (out / table).read_text() == (reference / table).read_text()
    cols = ["run", "status", "steps", "tokens"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "status.csv")[cols], pd.read_csv(reference / "status.csv")[cols])


def test_bad_input(env, reference, tmp_path, capsys):
    root, _ = env
    cfg = yaml.safe_load((root / "sweep.yaml").read_text())

    def run_with(changes, out=None):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({**cfg, **changes}))
        code = main(["sweep", "--config", str(path), "--out", str(out or tmp_path / "o"), "--quiet"])
        return code, capsys.readouterr().err

    code, err = run_with({"train_domains": ["web", "nope"]})
    assert code == 2 and "train_domains" in err and "nope" in err
    code, err = run_with({"model": "giant"})
    assert code == 2 and "giant" in err
    code, err = run_with({"n_proxy": 3})
    assert code == 2 and "n_proxy" in err
    code, err = run_with({"store": str(tmp_path / "missing")})
    assert code == 2 and "token store" in err
    code, err = run_with({"train": {**TRAIN, "seq_len": 1024}})
    assert code == 2 and "longer than the valid split" in err and "train.seq_len" in err
    code, err = run_with({"seed": 5}, out=reference)  # a different sweep in the output folder
    assert code == 2 and "different sweep (seed: 0 -> 5)" in err
    assert "p0000" in (reference / "metrics.csv").read_text()


@pytest.mark.parametrize("name", ["quick", "pile-1m"])
def test_config_presets_parse(name):
    from proxies.config import SweepConfig
    from regmix.config import load_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(SweepConfig, root / "regmix" / "configs" / f"{name}.yaml")
    assert cfg.n_proxies >= 16 and cfg.train.steps > 0



def test_lone_proxy_as_replicas_resumes_and_equals_one_process(env, tmp_path):
    """One proxy on two workers: two replicas split its batches (proxies.replicas). Killed after a
    checkpoint and resumed, the tables equal an uninterrupted run's, and within float rounding
    those of one process training the whole batch."""
    root, environ = env
    cfg = yaml.safe_load((root / "sweep.yaml").read_text())
    cfg.update(n_proxies=1, lr_scale={}, train={**TRAIN, "steps": 80, "checkpoint_every": 20})
    tables = {}
    for name, workers in (("one", 1), ("replicas", 2), ("killed", 2)):
        cfg["run"] = {"workers": workers}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        out = tmp_path / name
        cmd = [sys.executable, "-m", "regmix", "sweep", "--config", str(tmp_path / f"{name}.yaml"), "--out", str(out),
               "--quiet"]
        if name == "killed":
            proc = subprocess.Popen(cmd, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and proc.poll() is None and not any(out.glob("groups/g0000/ckpt/*")):
                time.sleep(0.05)
            assert proc.poll() is None, "the sweep finished before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            time.sleep(1.0)  # workers die with their parent
            assert not (out / "groups" / "g0000" / "result.json").exists()
        subprocess.run(cmd, env=environ, check=True, capture_output=True, timeout=300)
        tables[name] = pd.read_csv(out / "metrics.csv")
    assert (tmp_path / "replicas" / "groups" / "worker0r1.log").exists()  # it did run as two replicas
    pd.testing.assert_frame_equal(tables["killed"], tables["replicas"], check_exact=True)
    pd.testing.assert_frame_equal(tables["replicas"], tables["one"], check_exact=False, rtol=1e-5)
