"""Final-run comparisons say "beats" only when the paired 95% interval excludes zero."""

import math

import pytest
from scipy import stats

from regmix.pipeline.results import margins, paired_interval


def test_interval_is_the_student_t_interval_of_the_paired_differences():
    diff = [0.1, 0.0, 0.3]
    lo, hi = paired_interval(diff)
    half = stats.t.ppf(0.975, 2) * 0.152753 / math.sqrt(3)
    assert (lo, hi) == pytest.approx((0.133333 - half, 0.133333 + half), abs=1e-5)
    assert paired_interval([0.2]) == (-math.inf, math.inf)


@pytest.mark.parametrize("other, verdict", [
    ([2.1, 2.2, 2.3, 2.15], "beats"),     # worse on every seed by a steady margin
    ([2.05, 1.95, 2.1, 2.0], "ties"),     # noisy: wins 2 of 4, interval spans 0
    ([1.9, 1.95, 2.0, 1.92], "loses to"),
])
def test_verdicts(other, verdict):
    by_seed = {"optimized": [2.0, 2.05, 2.1, 2.02], "b": other}
    m = margins(by_seed, "optimized", ["b"])["b"]
    assert m["verdict"] == verdict
    lo, hi = m["ci95"]
    assert lo <= m["mean"] <= hi


def test_one_seed_never_beats():
    m = margins({"optimized": [2.0], "b": [3.0]}, "optimized", ["b"])["b"]
    assert m["wins"] == 1 and m["verdict"] == "ties"
