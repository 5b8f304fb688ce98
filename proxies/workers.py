"""Worker processes: one single-threaded, core-pinned JAX process per core, each training its
share of a sweep's groups.

On CPUs this beats one multi-threaded process (proxies are independent, so no communication is
lost) and keeps each process's peak memory to its own groups. The environment is set before the
interpreter starts, because glibc reads GLIBC_TUNABLES at start-up: without these settings
XLA:CPU gets fresh page-faulted buffers from malloc on every step. Workers die with their parent
(PR_SET_PDEATHSIG), so a killed sweep leaves no orphan writing into its folder. The same split
spreads a sweep over hosts: run `python -m proxies.workers DIR CORE G...` with disjoint groups.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GLIBC_TUNABLES = ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295:"
                  "glibc.malloc.arena_max=1:glibc.malloc.hugetlb=1")
SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false"


def worker_env(base: dict | None = None) -> dict:
    """Environment of a worker: malloc tunables and single-threaded XLA:CPU (flags appended)."""
    env = dict(os.environ if base is None else base)
    env["GLIBC_TUNABLES"] = GLIBC_TUNABLES
    flags = env.get("XLA_FLAGS", "").split()
    # A token without leading dashes stops XLA's flag parsing silently: keep only real flags.
    flags = [f for f in flags if f.startswith("--") and not f.startswith("--xla_cpu_multi_thread_eigen")]
    env["XLA_FLAGS"] = " ".join(flags + [SINGLE_THREAD_FLAGS])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def pin(core: int) -> None:
    try:
        os.sched_setaffinity(0, {core})
    except (OSError, AttributeError):
        pass


def enable_compile_cache(path: Path) -> None:
    """Persistent XLA cache: workers and resumed runs reuse each other's compiled steps."""
    import jax

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def spawn(out: Path, core: int, groups: list[int], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "proxies.workers", str(out), str(core), str(os.getpid())]
    cmd += [str(g) for g in groups]
    return subprocess.Popen(cmd, env=worker_env(), stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _progress_tokens(out: Path, record: dict) -> int:
    from proxies.sweep import group_dir

    total = 0
    for g in range(len(record["groups"])):
        path = group_dir(out, g) / "progress.json"
        try:
            total += int(json.loads(path.read_text())["tokens"])
        except (OSError, ValueError, KeyError):
            pass
    return total


def run_groups(out: Path, record: dict, todo: list[int], workers: int, progress: bool = True) -> None:
    """Train the groups `todo`: in this process (workers == 1) or in pinned worker processes."""
    from tqdm import tqdm

    from proxies.sweep import finished_groups, train_group, write_tables
    from regmix.errors import RegmixError

    n_total = sum(len(g) for g in record["groups"])
    done = finished_groups(out, record)
    bar = tqdm(total=n_total, initial=sum(len(record["groups"][g]) for g in done), unit="proxy",
               disable=not progress, dynamic_ncols=True)
    t0, tok0 = time.monotonic(), _progress_tokens(out, record)
    cfg = record["config"]["train"]
    all_tokens = n_total * cfg["steps"] * cfg["batch"] * cfg["seq_len"]

    def refresh() -> None:
        nonlocal done
        now = finished_groups(out, record)
        if len(now) != len(done):
            write_tables(out, record)
            bar.update(sum(len(record["groups"][g]) for g in now if g not in done))
            done = now
        tokens = _progress_tokens(out, record)
        rate = (tokens - tok0) / max(time.monotonic() - t0, 1e-9)
        eta = (all_tokens - tokens) / rate if rate > 0 else float("nan")
        bar.set_postfix_str(f"{rate:,.0f} tok/s, ETA {eta / 60:.1f} min", refresh=True)

    try:
        if workers <= 1:
            for g in todo:
                train_group(out, g, record)
                refresh()
            return
        cores = sorted(os.sched_getaffinity(0))
        logs = out / "groups"
        logs.mkdir(exist_ok=True)
        procs = []
        for i in range(min(workers, len(todo))):
            share = todo[i::workers]
            procs.append(spawn(out, cores[i % len(cores)], share, logs / f"worker{i}.log"))
        try:
            while any(p.poll() is None for p in procs):
                time.sleep(0.5)
                refresh()
                failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
                if failed:
                    log = (logs / f"worker{failed[0]}.log").read_text(errors="replace").strip()
                    last = log.splitlines()[-1] if log else "no output"
                    raise RegmixError(f"{out}: worker {failed[0]} failed: {last} (see {logs}/worker{failed[0]}.log)")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        refresh()
    finally:
        bar.close()


def main(argv: list[str]) -> int:
    out, core, parent, groups = Path(argv[0]), int(argv[1]), int(argv[2]), [int(g) for g in argv[3:]]
    die_with_parent(parent)
    pin(core)
    enable_compile_cache(out / ".jax_cache")
    from proxies.sweep import train_group

    record = json.loads((out / "sweep.json").read_text())
    for g in groups:
        train_group(out, g, record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
