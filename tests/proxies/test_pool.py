"""The process pool: workers run a target module's function pinned to their cores, a failure is
reported with its log line, and a worker dies with its parent."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from proxies import pool
from regmix.errors import RegmixError

TARGET = '''
import json, os, sys, time
from pathlib import Path


def work(args):
    out, items = Path(args[0]), [int(i) for i in args[1:]]
    for i in items:
        if i < 0:
            print(f"item {i} is negative", flush=True)
            raise SystemExit(3)
        record = {"pid": os.getpid(), "cores": sorted(os.sched_getaffinity(0)), "jax": "jax" in sys.modules}
        (out / f"item{i}.json").write_text(json.dumps(record))


def sleep(args):
    Path(args[0]).write_text(str(os.getpid()))
    time.sleep(120)
'''


@pytest.fixture
def target(tmp_path, monkeypatch):
    """A trivial worker module (`pool_target`) importable by the workers."""
    (tmp_path / "pool_target.py").write_text(TARGET)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


def test_workers_run_their_items_pinned(target):
    pool.run_workers("pool_target:work", target, [0, 1, 2], planned=2, logs=target)
    records = [json.loads((target / f"item{i}.json").read_text()) for i in range(3)]
    sets = pool.core_sets(2)
    assert records[0]["pid"] == records[2]["pid"] != records[1]["pid"]  # items 0, 2 on worker 0
    assert [set(r["cores"]) for r in records] == [sets[0], sets[1], sets[0]]
    assert not any(r["jax"] for r in records)  # nothing imported JAX before the target ran


def test_a_failed_worker_raises_with_its_last_log_line(target):
    with pytest.raises(RegmixError, match=r"test worker 1 failed: item -1 is negative \(see .*worker1.log\)"):
        pool.run_workers("pool_target:work", target, [0, -1], planned=2, logs=target, what="test worker")


def test_core_sets_are_equal_and_disjoint():
    cores = sorted(os.sched_getaffinity(0))
    for n in range(1, len(cores) + 1):
        sets = pool.core_sets(n)
        assert len(sets) == n and len({len(s) for s in sets}) == 1
        assert sum(len(s) for s in sets) <= len(cores) and len(set().union(*sets)) == sum(len(s) for s in sets)
    assert pool.core_sets(len(cores) + 1)[-1] == {cores[0]}  # more workers than cores: round-robin


def alive(pid: int) -> bool:
    """Running (a zombie left to an init that does not reap counts as dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_worker_dies_with_its_parent(target, tmp_path):
    pidfile = tmp_path / "worker.pid"
    parent = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from proxies import pool
        pool.spawn("pool_target:sleep", [{str(pidfile)!r}], {{0}}, Path({str(tmp_path / "w.log")!r}))
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent])
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists() or not pidfile.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, "the worker did not start"
            time.sleep(0.05)
        worker = int(pidfile.read_text())
        assert alive(worker)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(worker), "the worker outlived its parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        if worker is not None and alive(worker):
            os.kill(worker, signal.SIGKILL)
