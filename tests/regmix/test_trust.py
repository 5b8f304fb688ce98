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
