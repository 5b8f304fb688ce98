import io

from regmix.progress import Progress, eta_note


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
