"""`regmix suggest`, the batch rules behind it, and the CLI's intervals."""

import json

import numpy as np
import pandas as pd
import pytest

from regmix.cli import main
from regmix.regress.acquire import believer_batch, expected_improvement, spaced_batch
from regmix.tables import load_mixtures

from helpers_tables import synthetic_sweep


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("suggest")
    mix, met, *_ = synthetic_sweep(tmp, n=48, k=4)
    for kind in ("gp", "mixing-law"):
        assert main(["fit", "--mixtures", str(mix), "--metrics", str(met), "--target", "target", "--model", kind,
                     "--folds", "3", "--out", str(tmp / kind), "--no-progress"]) == 0
    return tmp, mix


def test_expected_improvement_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean, sd, best = np.array([1.0, 0.5, 2.0]), np.array([0.3, 0.1, 1.0]), 0.8
    draws = rng.normal(mean, sd, (400_000, 3))
    assert np.allclose(expected_improvement(mean, sd, best), np.maximum(best - draws, 0).mean(0), atol=2e-3)


def test_believer_does_not_pick_a_twin_of_its_pick():
    """Candidates 0 and 1 are the same point (perfectly correlated); 2 is independent and a bit worse."""
    mean = np.array([0.0, 0.0, 0.05])
    cov = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert sorted(believer_batch(mean, cov, 2, best=0.5)) in ([0, 2], [1, 2])
    assert believer_batch(mean, cov, 1, best=0.5, n_explore=1) == [0]  # explore: largest variance, first index


def test_spaced_batch_keeps_picks_apart():
    x = np.array([[0.0, 0.0], [0.001, 0.0], [1.0, 1.0], [2.0, 0.0]])
    picked = spaced_batch(np.array([0.0, 0.0, 0.2, 0.3]), np.ones(4) * 0.1, x, 2, best=0.5)
    assert 0 in picked and 1 not in picked


@pytest.mark.parametrize("kind", ["gp", "mixing-law"])
def test_suggest_writes_a_trainable_table(fitted, tmp_path, capsys, kind):
    tmp, mix = fitted
    out = tmp_path / "next.csv"
    argv = ["suggest", "--model", str(tmp / kind), "--n", "6", "--samples", "5000", "--seed", "3", "--out", str(out)]
    assert main(argv + ["--no-progress"]) == 0
    table = load_mixtures(out)  # the format sweep and fit read
    assert len(table.ids) == 6 and len(set(table.ids)) == 6
    assert list(table.columns) == list(pd.read_csv(mix).columns[1:])
    assert np.allclose(table.w_NxK.sum(1), 1, atol=1e-6)
    assert len({tuple(r) for r in np.round(table.w_NxK, 3)}) == 6  # a diverse batch, no repeats
    first = out.read_text()
    assert main(argv + ["--no-progress"]) == 0 and out.read_text() == first  # seeded


def test_suggest_aims_at_the_optimum(fitted, tmp_path):
    """loss = 3 + exp(w . t), t rising: the proposals lean on the first domain."""
    tmp, mix = fitted
    assert main(["suggest", "--model", str(tmp / "gp"), "--n", "4", "--samples", "5000", "--out",
                 str(tmp_path / "n.csv"), "--no-progress"]) == 0
    w = load_mixtures(tmp_path / "n.csv").w_NxK
    assert w[:, 0].mean() > load_mixtures(mix).w_NxK[:, 0].mean()


def test_suggest_bad_input_is_one_line(fitted, tmp_path, capsys):
    tmp, _ = fitted
    assert main(["suggest", "--model", str(tmp / "gp"), "--n", "0", "--out", str(tmp_path / "x.csv")]) == 2
    assert main(["suggest", "--model", str(tmp / "gp"), "--n", "2", "--explore", "2", "--samples", "100",
                 "--out", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--n must be" in err and "--explore" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["gp", "mixing-law"])
def test_predict_interval_and_optimize_reports_one(fitted, tmp_path, capsys, kind):
    tmp, mix = fitted
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(tmp / kind), "--mixtures", str(mix), "--interval", "0.8", "--out", str(out)]) == 0
    p = pd.read_csv(out)
    assert list(p.columns) == ["run", "prediction", "lower", "upper"]
    assert (p["lower"] < p["prediction"]).all() and (p["prediction"] < p["upper"]).all()
    assert main(["optimize", "--model", str(tmp / kind), "--samples", "3000", "--top-k", "10",
                 "--out", str(tmp_path / "m.json"), "--no-progress"]) == 0
    assert "80% interval [" in capsys.readouterr().out
    span = json.loads((tmp_path / "m.json").read_text())["interval"]
    name = next(k for k in span if k != "level")
    assert span["level"] == 0.8 and span[name]["lower"] < span[name]["upper"]
    assert main(["predict", "--model", str(tmp / kind), "--mixtures", str(mix), "--interval", "1.5", "--out", str(out)]) == 2
