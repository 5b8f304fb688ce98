"""`regmix suggest`, the batch rules behind it, and the CLI's intervals."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from regmix.cli import main
from regmix.errors import RegmixError
from regmix.regress.acquire import (believer_batch, choose, d_optimal_batch, design_features, expected_improvement,
                                    log_det_information, spaced_batch)
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


def test_d_optimal_raises_log_det_over_random_picks():
    rng = np.random.default_rng(0)
    trained, pool = rng.dirichlet(np.ones(5) * 0.7, 12), rng.dirichlet(np.ones(5) * 0.7, 2000)
    picked = d_optimal_batch(trained, pool, 8)
    assert len(set(picked)) == 8
    design = log_det_information(np.concatenate([trained, pool[picked]]))
    random_ = [log_det_information(np.concatenate([trained, pool[rng.choice(2000, 8, replace=False)]])) for _ in range(50)]
    assert design > max(random_)
    # each greedy step raises log det by log(1 + leverage): never less than the best single random addition
    one = d_optimal_batch(trained, pool, 1)[0]
    gains = [log_det_information(np.concatenate([trained, pool[[j]]])) for j in range(0, 2000, 7)]
    assert log_det_information(np.concatenate([trained, pool[[one]]])) >= max(gains) - 1e-9


def test_d_optimal_builds_on_the_trained_runs():
    """Trained runs cover domains 0-2; the first picks go to the corners no run has explored."""
    corners = np.eye(5)
    trained = np.repeat(corners[:3], 4, axis=0)
    picked = d_optimal_batch(trained, np.concatenate([corners, np.full((1, 5), 0.2)]), 2)
    assert sorted(picked) == [3, 4]


def test_d_optimal_skips_repeats_and_keeps_picks_apart():
    corner = np.array([[1.0, 0, 0], [1.0, 0, 0], [0.999, 0.001, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert 1 not in d_optimal_batch(None, corner, 4)  # an exact repeat is never picked
    spaced = d_optimal_batch(None, corner, 3, spacing=np.sqrt(corner))
    assert sorted(spaced) == [0, 3, 4]  # the near twin of a pick waits while distinct corners are left


def test_choose_strategies_and_bad_input():
    rng = np.random.default_rng(1)
    runs, cand = rng.dirichlet(np.ones(4), 20), rng.dirichlet(np.ones(4), 600)
    y = 3 + np.exp(runs @ np.linspace(-2, 1, 4))
    from regmix.regress.gp import GPModel

    gp = GPModel().fit(runs, y, 0)
    ei = choose([gp], None, np.ones(1), cand, 3, float(y.min()), seed=0)
    mixed = choose([gp], None, np.ones(1), cand, 6, float(y.min()), seed=0, strategy="mixed", runs_NxK=runs, ei_share=0.5)
    assert list(mixed[:3]) == list(ei) and len(set(mixed)) == 6  # the first half is the EI batch
    quarter = choose([gp], None, np.ones(1), cand, 8, float(y.min()), seed=0, strategy="mixed", runs_NxK=runs)
    assert list(quarter[:2]) == list(ei[:2]) and len(set(quarter)) == 8  # default: a quarter by EI
    one = choose([gp], None, np.ones(1), cand, 1, float(y.min()), seed=0, strategy="mixed", runs_NxK=runs)
    assert list(one) == list(ei[:1])  # at least one EI pick
    dopt = choose([gp], None, np.ones(1), cand, 6, strategy="doptimal", runs_NxK=runs)
    gain = lambda idx: log_det_information(design_features(np.concatenate([runs, cand[idx]])))  # noqa: E731
    assert gain(dopt) > gain(mixed) > gain(choose([gp], None, np.ones(1), cand, 6, float(y.min()), seed=0))
    with pytest.raises(RegmixError, match="--strategy"):
        choose([gp], None, np.ones(1), cand, 2, strategy="greedy", runs_NxK=runs)
    with pytest.raises(RegmixError, match="training mixtures"):
        choose([gp], None, np.ones(1), cand, 2, strategy="doptimal")
    with pytest.raises(RegmixError, match="--explore"):
        choose([gp], None, np.ones(1), cand, 2, explore=0.5, strategy="doptimal", runs_NxK=runs)
    with pytest.raises(RegmixError, match="--ei-share"):
        choose([gp], None, np.ones(1), cand, 2, strategy="mixed", runs_NxK=runs, ei_share=1.5)


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


@pytest.mark.parametrize("strategy,kind", [("doptimal", "gp"), ("mixed", "gp"), ("mixed", "mixing-law")])
def test_suggest_design_strategies_in_the_space(fitted, tmp_path, strategy, kind):
    tmp, mix = fitted
    space = tmp_path / "space.yaml"
    space.write_text("bounds: {d0: [0.0, 0.5], d1: [0.1, 1.0]}\n")
    out = tmp_path / "next.csv"
    argv = ["suggest", "--model", str(tmp / kind), "--n", "6", "--samples", "3000", "--seed", "2", "--space", str(space),
            "--strategy", strategy, "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    table = load_mixtures(out)  # the format sweep and fit read
    assert len(table.ids) == 6 and list(table.columns) == list(pd.read_csv(mix).columns[1:])
    w = table.w_NxK
    assert np.allclose(w.sum(1), 1, atol=1e-6) and (w[:, 0] <= 0.5 + 1e-6).all() and (w[:, 1] >= 0.1 - 1e-6).all()
    assert len({tuple(r) for r in np.round(w, 3)}) == 6
    first = out.read_text()
    assert main(argv) == 0 and out.read_text() == first  # seeded
    ei = tmp_path / "ei.csv"
    assert main(argv[:-5] + ["--out", str(ei), "--no-progress"]) == 0
    runs = load_mixtures(mix).w_NxK
    crit = lambda batch: log_det_information(design_features(np.concatenate([runs, batch])))  # noqa: E731
    assert crit(w) > crit(load_mixtures(ei).w_NxK)


def test_design_features():
    w = np.array([[1.0, 0.0], [0.25, 0.75]])
    assert np.array_equal(design_features(w, "weights"), w)
    logw = design_features(w)  # default: an intercept and log(w + 0.001), finite where a weight is 0
    assert logw.shape == (2, 3) and np.all(logw[:, 0] == 1) and np.isclose(logw[0, 2], np.log(1e-3))
    with pytest.raises(RegmixError, match="--design-features"):
        design_features(w, "sqrt")


def test_suggest_design_features_flag(fitted, tmp_path):
    tmp, mix = fitted
    runs = load_mixtures(mix).w_NxK
    batches = {}
    for design in ("weights", "log-weights"):
        out = tmp_path / f"{design}.csv"
        assert main(["suggest", "--model", str(tmp / "gp"), "--n", "4", "--samples", "3000", "--strategy", "doptimal",
                     "--design-features", design, "--out", str(out), "--no-progress"]) == 0
        batches[design] = load_mixtures(out).w_NxK
    for design in batches:  # each batch is the better design under its own criterion
        other = next(d for d in batches if d != design)
        crit = lambda b: log_det_information(design_features(np.concatenate([runs, b]), design))  # noqa: E731
        assert crit(batches[design]) > crit(batches[other])


def test_suggest_strategy_flag_and_old_models(fitted, tmp_path, capsys):
    tmp, _ = fitted
    with pytest.raises(SystemExit) as exit_:
        main(["suggest", "--model", str(tmp / "gp"), "--n", "2", "--strategy", "bogus", "--out", str(tmp_path / "x.csv")])
    assert exit_.value.code == 2 and "--strategy" in capsys.readouterr().err
    assert main(["suggest", "--model", str(tmp / "gp"), "--n", "2", "--strategy", "doptimal", "--explore", "0.5",
                 "--samples", "100", "--out", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    assert main(["suggest", "--model", str(tmp / "gp"), "--n", "2", "--strategy", "mixed", "--ei-share", "2",
                 "--samples", "100", "--out", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    old = tmp_path / "old"
    shutil.copytree(tmp / "gp", old)
    meta = json.loads((old / "model.json").read_text())
    meta["runs"], meta["run_ids"] = None, []
    (old / "model.json").write_text(json.dumps(meta))
    assert main(["suggest", "--model", str(old), "--n", "2", "--strategy", "mixed", "--samples", "100",
                 "--out", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "--explore" in err and "--ei-share" in err and "refit" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.csv").exists()


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
