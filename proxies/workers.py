"""Worker processes: one single-threaded, core-pinned JAX process per core, each training its
share of a sweep's groups.

On CPUs this beats one multi-threaded process (proxies are independent, so no communication is
lost) and keeps each process's peak memory to its own groups. With fewer groups than cores a
worker owns several cores: it runs as one pinned single-device replica per core, the replicas
splitting every batch and averaging gradients through shared memory (proxies.replicas). The
environment is set before the interpreter starts, because glibc reads GLIBC_TUNABLES at start-up: without these settings
XLA:CPU gets fresh page-faulted buffers from malloc on every step. Workers die with their parent
(PR_SET_PDEATHSIG), so a killed sweep leaves no orphan writing into its folder. The same split
spreads a sweep over hosts: run `python -m proxies.workers CORES 0 DIR G...` (parent 0: none)
with disjoint groups on each host sharing DIR.
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


def worker_env(base: dict | None = None, devices: int = 1, tunables: bool = True) -> dict:
    """Environment of a worker owning `devices` cores: malloc tunables, single-threaded XLA:CPU with
    one host device per core (proxies.xlaflags)."""
    from proxies.xlaflags import cpu_flags

    env = dict(os.environ if base is None else base)
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
    """Return freed heap pages to the OS between groups (the tunables stop glibc doing it itself)."""
    import gc

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
    import jax

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def spawn(module: str, args: list[str], cores: set[int], log: Path, tunables: bool = True,
          env: dict | None = None, fds: list[int] = ()) -> subprocess.Popen:
    """Start `python -m module CORES PARENT args...` with the worker environment (plus `env`,
    inheriting the descriptors `fds`)."""
    cmd = [sys.executable, "-m", module, format_cores(cores), str(os.getpid())] + [str(a) for a in args]
    full = dict(worker_env(devices=len(cores), tunables=tunables), **(env or {}))
    return subprocess.Popen(cmd, env=full, stdout=log.open("ab"), stderr=subprocess.STDOUT, pass_fds=tuple(fds))


def spawn_worker(module: str, args: list[str], cores: set[int], log: Path, batch: int | None = None,
                 tunables: bool = True) -> list[tuple[subprocess.Popen, Path]]:
    """A worker owning `cores`: one process, or, when several cores can split `batch` into equal
    shares, one pinned single-device replica per core (proxies.replicas), each logging to its own
    file (`log`, then `log` with r1, r2, ... before the suffix). Returns (process, log) pairs."""
    from proxies.replicas import Launch, replica_count

    k = replica_count(len(cores), batch)
    if k == 1:
        return [(spawn(module, args, cores, log, tunables), log)]
    launch = Launch(k)
    try:
        logs = [log] + [log.with_name(f"{log.stem}r{r}{log.suffix}") for r in range(1, k)]
        return [(spawn(module, args, {c}, logs[r], tunables, launch.env[r], launch.fds[r]), logs[r])
                for r, c in enumerate(sorted(cores)[:k])]
    finally:
        launch.close()


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
        logs = out / "groups"
        logs.mkdir(exist_ok=True)
        run_workers("proxies.workers", out, todo, min(workers, len(record["groups"])), logs, tick=refresh,
                    batch=cfg["batch"])
        refresh()
    finally:
        bar.close()


def run_workers(module: str, out: Path, todo: list[int], planned: int, logs: Path, what: str = "worker",
                tick=None, batch: int | None = None) -> None:
    """Run the items `todo` in pinned worker processes (`python -m module`) and wait for them.

    The workers take the core sets of `planned` workers: fixed by the plan, not by what is left, so
    an item runs on the same devices however a run was resumed. A worker with several cores runs
    as replicas splitting every `batch` (spawn_worker). Every 0.5 s `tick()` is called; a failed
    process stops the others and raises with the last line of its log."""
    from regmix.errors import RegmixError

    from proxies import cpu_kernels

    cpu_kernels.build()  # once here, not in every worker at the same time
    sets = core_sets(planned)
    n = min(len(sets), len(todo))
    procs: list[tuple[subprocess.Popen, Path]] = []
    try:
        for i in range(n):
            procs += spawn_worker(module, [out] + todo[i::n], sets[i], logs / f"worker{i}.log", batch)
        while any(p.poll() is None for p, _ in procs):
            time.sleep(0.5)
            if tick is not None:
                tick()
            failed = [(p, log) for p, log in procs if p.poll() not in (None, 0)]
            if failed:
                log = failed[0][1]
                text = log.read_text(errors="replace").strip()
                last = text.splitlines()[-1] if text else "no output"
                raise RegmixError(f"{out}: {what} {log.stem.removeprefix('worker')} failed: {last} (see {log})")
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def worker_main(argv: list[str], record_file: str, run_one, after_each=None) -> int:
    """Body of a worker process started by `spawn`: `CORES PARENT OUT ITEM...`.

    Exits with its parent, pins itself, shares the JAX compile cache under OUT, reads the JSON
    record OUT/record_file and calls `run_one(out, item, record, replicas)` for each item
    (`replicas`: the replica set this process belongs to, or None)."""
    from proxies.replicas import from_env

    cores, parent, out, items = parse_cores(argv[0]), int(argv[1]), Path(argv[2]), [int(i) for i in argv[3:]]
    die_with_parent(parent)
    pin(cores)
    enable_compile_cache(out / ".jax_cache")
    record = json.loads((out / record_file).read_text())
    replicas = from_env()
    for item in items:
        run_one(out, item, record, replicas)
        if after_each is not None:
            after_each()
    return 0


def main(argv: list[str]) -> int:
    def train(out: Path, group: int, record: dict, replicas) -> None:
        from proxies.sweep import train_group  # imports JAX: only after the process is pinned

        train_group(out, group, record, replicas=replicas)

    return worker_main(argv, "sweep.json", train, after_each=release_memory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
