"""A pool of pinned worker processes: one single-threaded JAX process per core (or per core set).

On CPUs this beats one multi-threaded process (the work items are independent, so no
communication is lost) and keeps each process's peak memory to its own items. A worker owning
several cores runs as one pinned single-device replica per core, the replicas splitting every
batch and averaging gradients through shared memory (proxies.replicas). The environment is set
before the interpreter starts, because glibc reads GLIBC_TUNABLES at start-up: without these
settings XLA:CPU gets fresh page-faulted buffers from malloc on every step. Workers die with their
parent (PR_SET_PDEATHSIG), so a killed run leaves no orphan writing into its folder.

A worker is `python -m proxies.pool CORES PARENT TARGET ARGS...`: it pins itself to CORES, then
imports TARGET (`module:function`) and returns `function(ARGS)`, so the module's JAX starts on
the pinned cores. Only the standard library and proxies.replicas are imported here, for that
reason. The pool knows nothing of what the workers do (proxies.jobs trains sweeps and final
runs through it; proxies.bench measures through it).
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from proxies.replicas import Launch, replica_count
from proxies.xlaflags import cpu_flags
from regmix.errors import RegmixError
from regmix.files import is_disk_full

GLIBC_TUNABLES = ("glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295:"
                  "glibc.malloc.arena_max=1:glibc.malloc.hugetlb=1")


def worker_env(devices: int = 1, tunables: bool = True) -> dict:
    """This process's environment for a worker owning `devices` cores: malloc tunables,
    single-threaded XLA:CPU with one host device per core (proxies.xlaflags)."""
    env = dict(os.environ)
    if tunables:
        env["GLIBC_TUNABLES"] = GLIBC_TUNABLES if devices == 1 else GLIBC_TUNABLES.replace(
            "arena_max=1", f"arena_max={devices}")  # one arena per device thread
    env["XLA_FLAGS"] = cpu_flags(env.get("XLA_FLAGS", ""), single_thread=True, devices=devices)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def core_sets(workers: int) -> list[set[int]]:
    """This process's cores in `workers` equal sets (leftover cores idle), so every worker of a plan
    has the same number of devices whatever is left to do: results do not depend on how a run was
    resumed. More workers than cores share cores round-robin."""
    cores = sorted(os.sched_getaffinity(0))
    if workers >= len(cores):
        return [{cores[i % len(cores)]} for i in range(workers)]
    per = len(cores) // workers
    return [set(cores[i * per:(i + 1) * per]) for i in range(workers)]


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); parent 0: standalone."""
    if parent <= 0:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def release_memory() -> None:
    """Return freed heap pages to the OS between items (the tunables stop glibc doing it itself)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def current_rss_bytes() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def pin(cores: set[int]) -> None:
    try:
        os.sched_setaffinity(0, cores)
    except (OSError, AttributeError):
        pass


def format_cores(cores: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cores))


def parse_cores(text: str) -> set[int]:
    return {int(c) for c in text.split(",")}


def enable_compile_cache(path: Path) -> None:
    """Persistent XLA cache: workers and resumed runs reuse each other's compiled steps."""
    import jax  # here, not above: a worker imports this module before it is pinned

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def spawn(target: str, args: list, cores: set[int], log: Path, tunables: bool = True,
          env: dict | None = None, fds: list[int] = ()) -> subprocess.Popen:
    """Start `python -m proxies.pool CORES PARENT TARGET args...` with the worker environment (plus
    `env`, inheriting the descriptors `fds`), its output appended to `log`."""
    cmd = [sys.executable, "-m", "proxies.pool", format_cores(cores), str(os.getpid()), target] + [str(a) for a in args]
    full = dict(worker_env(devices=len(cores), tunables=tunables), **(env or {}))
    return subprocess.Popen(cmd, env=full, stdout=log.open("ab"), stderr=subprocess.STDOUT, pass_fds=tuple(fds))


def spawn_worker(target: str, args: list, cores: set[int], log: Path, batch: int | None = None,
                 tunables: bool = True) -> list[tuple[subprocess.Popen, Path]]:
    """A worker owning `cores`: one process, or, when several cores can split `batch` into equal
    shares, one pinned single-device replica per core (proxies.replicas), each logging to its own
    file (`log`, then `log` with r1, r2, ... before the suffix). Returns (process, log) pairs."""
    k = replica_count(len(cores), batch)
    if k == 1:
        return [(spawn(target, args, cores, log, tunables), log)]
    launch = Launch(k)
    try:
        logs = [log] + [log.with_name(f"{log.stem}r{r}{log.suffix}") for r in range(1, k)]
        return [(spawn(target, args, {c}, logs[r], tunables, launch.env[r], launch.fds[r]), logs[r])
                for r, c in enumerate(sorted(cores)[:k])]
    finally:
        launch.close()


def run_workers(target: str, out: Path, todo: list[int], planned: int, logs: Path, what: str = "worker",
                tick: Callable[[], None] | None = None, batch: int | None = None) -> None:
    """Run the items `todo` of the folder `out` in pinned workers (`TARGET OUT ITEM...`) and wait.

    The workers take the core sets of `planned` workers: fixed by the plan, not by what is left, so
    an item runs on the same devices however a run was resumed. A worker with several cores runs
    as replicas splitting every `batch` (spawn_worker). Every 0.5 s `tick()` is called; a failed
    process stops the others and raises with the last line of its log."""
    sets = core_sets(planned)
    n = min(len(sets), len(todo))
    procs: list[tuple[subprocess.Popen, Path]] = []
    try:
        for i in range(n):
            procs += spawn_worker(target, [out] + todo[i::n], sets[i], logs / f"worker{i}.log", batch)
        while any(p.poll() is None for p, _ in procs):
            time.sleep(0.5)
            if tick is not None:
                tick()
            failed = [(p, log) for p, log in procs if p.poll() not in (None, 0)]
            if failed:
                log = failed[0][1]
                text = log.read_text(errors="replace").strip()
                last = text.splitlines()[-1] if text else "no output"
                if is_disk_full(Exception(text[-2000:])) or _disk_full(out):  # the log itself may be cut short
                    raise RegmixError(f"{out}: {what} {log.stem.removeprefix('worker')} stopped: No space left "
                                      f"on device (see {log})")
                raise RegmixError(f"{out}: {what} {log.stem.removeprefix('worker')} failed: {last} (see {log})")
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _disk_full(folder: Path) -> bool:
    """Less than 1 MiB left on the disk holding `folder` (a worker that failed there most likely failed on it)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def worker_main(argv: list[str]) -> int:
    """Body of a process started by `spawn`: `CORES PARENT TARGET ARGS...`.

    Exits with its parent, pins itself, and only then imports TARGET's module (JAX starts on the
    pinned cores); returns `function(ARGS)` (None counts as 0)."""
    cores, parent, target, args = parse_cores(argv[0]), int(argv[1]), argv[2], argv[3:]
    die_with_parent(parent)
    pin(cores)
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(args) or 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
