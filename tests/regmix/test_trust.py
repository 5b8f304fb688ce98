import warnings

import numpy as np
import pytest

from regmix.trust import compare_optima, hull_distance, tv_distance, warn_if_far_from_runs

RUNS = np.array([[0.6, 0.4, 0.0], [0.4, 0.6, 0.0], [0.5, 0.3, 0.2]])


def test_tv_distance_is_half_the_l1_distance():
    assert tv_distance(np.array([1.0, 0, 0]), np.array([[0, 1.0, 0], [1.0, 0, 0]])).tolist() == [[1.0, 0.0]]


def test_hull_distance_is_zero_inside_and_exact_outside():
    inside = RUNS.mean(axis=0)
    d, lam = hull_distance(inside, RUNS)
    assert d == pytest.approx(0.0, abs=1e-9) and lam @ RUNS == pytest.approx(inside)
    # (0, 0, 1): the closest hull point is run 3 (the only run with domain c), 0.8 of mass away
    assert hull_distance(np.array([0.0, 0.0, 1.0]), RUNS)[0] == pytest.approx(0.8)


def test_far_from_runs_warns_and_names_the_domain_beyond_the_runs():
    ids, domains = ["r1", "r2", "r3"], ("a", "b", "c")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        near = warn_if_far_from_runs(RUNS.mean(axis=0), RUNS, ids, domains)
    assert not near["far"]
    with pytest.warns(UserWarning, match=r"outside the trained runs.*beyond every run in c 0\.700 \(runs reach 0\.200\)"):
        far = warn_if_far_from_runs(np.array([0.2, 0.1, 0.7]), RUNS, ids, domains)
    assert far["far"] and far["nearest_run"] == "r3" and far["hull_distance"] == pytest.approx(0.5)


def test_disagreeing_optima_warn_and_name_the_pair():
    close = {"lightgbm": np.array([0.5, 0.5, 0.0]), "linear": np.array([0.45, 0.55, 0.0])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, worst, _ = compare_optima(close)
    assert worst == pytest.approx(0.05)
    with pytest.warns(UserWarning, match="optima of lightgbm and gp differ by total-variation distance 0.50"):
        _, worst, pair = compare_optima({**close, "gp": np.array([0.0, 0.5, 0.5])})
    assert pair == ("lightgbm", "gp") and worst == pytest.approx(0.5)


def test_optimize_reports_trust_and_compares_regressors(tmp_path, capsys):
    """The CLI end to end: the model keeps its training mixtures, optimize reports how far the answer lies outside
    them, and --compare puts another regressor's optimum beside it."""
    import json

    from helpers_tables import synthetic_sweep
    from regmix.cli import main
    from regmix.regress.fit import FittedModel

    mix, met, w, _ = synthetic_sweep(tmp_path, n=24)
    for kind in ("linear", "mixing-law"):
        assert main(["fit", "--mixtures", str(mix), "--metrics", str(met), "--target", "target", "--model", kind,
                     "--folds", "3", "--out", str(tmp_path / kind), "--no-progress"]) == 0
    loaded = FittedModel.load(tmp_path / "linear")
    assert loaded.runs_NxK == pytest.approx(w, abs=1e-7) and loaded.run_ids[0] == "r000"
    capsys.readouterr()
    assert main(["optimize", "--model", str(tmp_path / "linear"), "--compare", str(tmp_path / "mixing-law"),
                 "--samples", "2000", "--out", str(tmp_path / "m.json"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    data = json.loads((tmp_path / "m.json").read_text())
    assert set(data["trust"]) == {"hull_distance", "nearest_run", "nearest_distance", "far"}
    assert data["trust"]["hull_distance"] >= 0 and data["trust"]["nearest_run"].startswith("r")
    assert len(data["compare"]["optima"]) == 2 and "largest total-variation distance" in printed
    assert data["compare"]["largest_distance"] == pytest.approx(
        tv_distance(*[np.array(list(o.values())) for o in data["compare"]["optima"].values()])[0, 0], abs=1e-5)
