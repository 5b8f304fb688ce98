"""`regmix bench proxies`: training throughput and MFU of the sweep's code path.

The proxies are split over worker processes exactly as `regmix sweep` splits them (groups sized
to the memory budget, one pinned single-threaded worker per core; with fewer groups than cores a
worker's cores run it as replicas that split every batch, proxies.replicas), each worker runs
`train_mixtures` on a synthetic byte-level store, and
the timed region starts at the end of the first (compiling) step. MFU is model
FLOPs per second over the float32 matmul peak measured in this process (best of jitted square
products of sizes 1024 and 2048, on all cores, before and after the workers run). Model FLOPs per token = 6 x matmul parameters
(output head in, embedding lookups out) + 12 x layers x seq_len x d_model.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from proxies import cpu_kernels
from proxies.config import TrainConfig
from proxies.config import preset as get_preset
from proxies.mesh import proxy_mesh
from proxies.model import count_params, flops_per_token
from proxies.pool import core_sets, current_rss_bytes, release_memory, spawn_worker
from proxies.replicas import from_env
from proxies.sweep import default_workers, plan_groups, proxy_bytes
from proxies.train import train_mixtures
from regmix.corpus.store import TokenStore, write_store
from regmix.files import atomic_write_json
from regmix.progress import Progress, eta_note

VOCAB = 257
BENCH_DOMAINS = 4
MATMUL_SIZES = (1024, 2048)  # the peak: best of MATMUL_REPS products of each size
MATMUL_REPS = 5


def peak_matmul_flops(clock=time.perf_counter) -> float:
    """Best float32 FLOP/s of a jitted square matrix product in this process.

    With several local devices (a worker with one host device per core), every device multiplies
    its own pair at once and the FLOPs add up. `clock=time.process_time` gives FLOPs per
    CPU-second instead: on a shared machine that is less sensitive to time lost to other processes.
    """
    d = jax.local_device_count()
    split = NamedSharding(proxy_mesh(jax.local_devices()), PartitionSpec("proxies"))
    best = 0.0
    for n in MATMUL_SIZES:
        a = jax.device_put(jax.random.normal(jax.random.key(0), (d, n, n), jnp.float32), split)
        b = jax.device_put(jax.random.normal(jax.random.key(1), (d, n, n), jnp.float32), split)
        f = jax.jit(lambda x, y: x @ y)
        f(a, b).block_until_ready()
        for _ in range(MATMUL_REPS):
            t = clock()
            f(a, b).block_until_ready()
            best = max(best, d * 2.0 * n ** 3 / max(clock() - t, 1e-9))
    return best


def synthetic_store(path: Path, seq_len: int):
    rng = np.random.default_rng(0)
    n = max(200_000, 20 * seq_len)
    arrays = {f"d{k}": (rng.integers(0, 256, n), rng.integers(0, 256, 4 * (seq_len + 1))) for k in range(BENCH_DOMAINS)}
    return write_store(path, arrays, vocab_size=VOCAB, eod_id=256)


def run_bench(preset: str = "1m", n_proxies: int = 16, batch: int = 16, seq_len: int = 256, steps: int = 10,
              workers: int = 0, memory_budget_gb: float = 8.0, tunables: bool = True, group_size: int = 0,
              progress: bool = True) -> dict:
    """Train `n_proxies` for `steps` timed steps (after one warm-up step); returns the JSON record.
    `group_size` 0: the groups a sweep would plan (memory budget)."""
    cfg = get_preset(preset)
    workers = workers or default_workers()
    train = TrainConfig(steps=steps + 1, batch=batch, seq_len=seq_len, warmup_steps=1, eval_windows=1,
                        eval_batch=1, checkpoint_every=0)
    per_proxy = proxy_bytes(cfg, VOCAB, train)
    groups = plan_groups(n_proxies, workers, memory_budget_gb * 1e9, per_proxy, group_size)
    workers = min(workers, len(groups))
    peak = peak_matmul_flops()
    cpu_kernels.build()  # once here, not in every worker at the same time
    with tempfile.TemporaryDirectory(prefix="regmix-bench-") as tmp:
        work = Path(tmp)
        synthetic_store(work / "store", seq_len)
        procs = []
        for i, cores in enumerate(core_sets(workers)):
            procs += spawn_worker("proxies.bench:work", [work, i], cores, work / f"worker{i}.log", batch, tunables)
        spec = {"preset": preset, "train": train.__dict__, "groups": groups, "workers": workers,
                "processes": len(procs)}
        atomic_write_json(work / "spec.json", spec)  # whole, or not there yet
        codes = _wait_with_progress(procs, work, groups, progress)
        if any(codes):
            log = next(log for (_, log), c in zip(procs, codes) if c)
            raise RuntimeError(f"bench worker {log.stem} failed:\n" + log.read_text()[-3000:])
        results = [json.loads(f.read_text()) for f in sorted(work.glob("result*.json"))]
    peak = max(peak, peak_matmul_flops())  # best of before and after: one slow moment on a shared machine
    tokens_per_s = sum(r["tokens"] / r["seconds"] for r in results)
    model_flops = tokens_per_s * flops_per_token(cfg, VOCAB, seq_len)
    workers_peak = sum(r["peak_matmul_flops_per_s"] for r in results)
    fpt = flops_per_token(cfg, VOCAB, seq_len)
    cpu_tokens = sum(r["tokens"] for r in results) / sum(r["cpu_seconds"] for r in results)
    cpu_peak = float(np.mean([r["peak_matmul_flops_per_cpu_s"] for r in results]))
    return {"preset": preset, "n_proxies": n_proxies, "batch": batch, "seq_len": seq_len, "steps": steps,
            "workers": workers, "processes": len(procs), "groups": [len(g) for g in groups],
            "params_per_proxy": count_params(cfg, VOCAB)["total"], "tokens_per_s": round(tokens_per_s, 1),
            "model_flops_per_s": model_flops, "peak_matmul_flops_per_s": peak, "mfu": round(model_flops / peak, 4),
            "peak_rss_bytes": sum(r["peak_rss_bytes"] for r in results),
            # The same matmul peak measured inside the workers, all at once (their cores' aggregate):
            "peak_matmul_flops_per_s_workers": workers_peak, "mfu_workers": round(model_flops / workers_peak, 4),
            # Per CPU-second (time lost to other processes on a shared machine left out):
            "tokens_per_cpu_s": round(cpu_tokens, 1), "mfu_cpu": round(cpu_tokens * fpt / cpu_peak, 4),
            "glibc_tunables": tunables,
            "rss_after_groups_gb": [[round(x / 1e9, 2) for x in r["rss_after_groups"]] for r in results]}


def _wait_with_progress(procs, work: Path, groups: list[list[int]], progress: bool) -> list[int]:
    """Wait for the bench's workers, showing proxies done (a bar on a terminal, plain lines in a log)."""
    bar = Progress("bench", sum(map(len, groups)), "proxies", enabled=progress)
    t0 = time.monotonic()
    while any(p.poll() is None for p, _ in procs):
        done = [int(f.stem[5:]) for f in work.glob("group*.done")]
        n = sum(len(groups[g]) for g in done)
        bar.update(n, eta_note(n / (time.monotonic() - t0), sum(map(len, groups)) - n, "proxy") if n else "")
        time.sleep(0.5)
    done = [int(f.stem[5:]) for f in work.glob("group*.done")]
    bar.update(sum(len(groups[g]) for g in done))
    bar.close()
    return [p.wait() for p, _ in procs]


def work(args: list[str]) -> None:
    """Body of a pool worker (proxies.pool): `DIR INDEX` trains worker INDEX's groups of DIR/spec.json."""
    folder, index = Path(args[0]), int(args[1])
    while not (folder / "spec.json").exists():  # written once every process is started
        time.sleep(0.01)
    spec = json.loads((folder / "spec.json").read_text())
    replicas = from_env()
    rank = 0 if replicas is None else replicas.rank
    name = f"{index}" if rank == 0 else f"{index}r{rank}"
    train = TrainConfig(**spec["train"])
    store = TokenStore.open(folder / "store")
    mine = spec["groups"][index::spec["workers"]]
    tokens, seconds, cpu_seconds = 0, 0.0, 0.0
    rss_after = []

    def barrier(what: str) -> None:  # every process of the bench at once
        (folder / f"{what}.{name}").touch()
        while len(list(folder.glob(f"{what}.*"))) < spec["processes"]:
            time.sleep(0.01)

    barrier("ready")  # every worker at once: the cores' aggregate peak
    peak = peak_matmul_flops()
    cpu_peak = peak_matmul_flops(clock=time.process_time)
    barrier("measured")
    for g, members in enumerate(mine):
        rng = np.random.default_rng(members[0])
        w = rng.dirichlet(np.ones(BENCH_DOMAINS), size=len(members))
        marks = {}

        def on_step(step, _tokens):  # step 1 includes compiling: timed from its end
            marks[step] = (time.perf_counter(), time.process_time())

        train_mixtures(store, store.domains, w, model=spec["preset"], train=train, proxy_ids=members,
                       on_step=on_step, replicas=replicas)
        release_memory()
        rss_after.append(current_rss_bytes())
        (folder / f"group{index + g * spec['workers']}.done").touch()  # progress, for the parent
        if rank == 0:  # a group's tokens count once, however many replicas share its batches
            tokens += (train.steps - 1) * train.batch * train.seq_len * len(members)
        seconds += marks[train.steps][0] - marks[1][0]
        cpu_seconds += marks[train.steps][1] - marks[1][1]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    (folder / f"result{name}.json").write_text(json.dumps({"tokens": tokens, "seconds": seconds, "peak_rss_bytes": rss,
                                                               "peak_matmul_flops_per_s": peak,
                                                               "cpu_seconds": cpu_seconds,
                                                               "peak_matmul_flops_per_cpu_s": cpu_peak,
                                                               "rss_after_groups": rss_after}))

