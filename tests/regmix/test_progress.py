import io

import pytest

from regmix.progress import Progress, Rate, eta_note


def test_plain_lines_off_a_terminal_and_the_last_one_always():
    out = io.StringIO()
    bar = Progress("sweep", 16, "proxies", enabled=True, stream=out, every=0.0)
    bar.update(8, eta_note(23041.4, 23041.4 * 72, "tok"))
    bar.update(8, "")  # nothing new: no line
    bar.close()
    assert out.getvalue().splitlines() == ["sweep: 8/16 proxies, 23,041 tok/s, ETA 1.2 min"]  # shown once
    out = io.StringIO()
    bar = Progress("final runs", 4, "jobs", enabled=True, stream=out, every=3600.0)
    bar.update(1, "a")
    bar.update(4, "b")  # too soon for a line: close shows the last count
    bar.close()
    assert out.getvalue().splitlines() == ["final runs: 4/4 jobs, b"]
    quiet = io.StringIO()
    bar = Progress("sweep", 16, "proxies", enabled=False, stream=quiet, every=0.0)
    bar.update(16, "x")
    bar.close()
    assert quiet.getvalue() == ""


def test_eta_note_small_rates_and_unknown_rates():
    assert eta_note(0.05, 3, "job") == "0.05 job/s, ETA 1.0 min"
    assert eta_note(0.0, 3, "job") == ""


def test_rate_counts_from_when_the_work_first_moved():
    clock = iter([100.0, 160.0, 161.0, 170.0, 180.0]).__next__  # 60 s of start-up before the first tokens
    rate = Rate(0, clock=clock, settle=5.0)
    assert rate(0) == 0.0  # nothing moved yet: no rate, so no ETA
    assert rate(1000) == 0.0  # the first movement starts the clock
    assert rate(1900) == 0.0  # 1 s after it: a burst, not a pace
    assert rate(2000) == pytest.approx(100.0)  # 1000 tokens in the 10 s since, not 2000 in 70 s
    assert rate(4000) == pytest.approx(150.0)
