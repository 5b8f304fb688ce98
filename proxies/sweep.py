"""`regmix sweep`: sample mixtures, train every proxy in groups, write the tables `regmix fit` reads.

Layout of the output folder::

    DIR/sweep.json        the config, the store's identity and the group plan (fixed on first run)
    DIR/mixtures.csv      run, <train domain>...           (written before any training)
    DIR/metrics.csv       run, <eval domain>_val_loss, <eval domain>_bpb ..., mean_val_loss, mean_bpb
    DIR/status.csv        run, status (ok|diverged), steps, tokens, seconds
    DIR/groups/gNNNN/     ckpt/ (orbax, while training), result.json (when done), progress.json

Every file is written atomically (temp file + os.replace) and the tables are rebuilt from the
groups' result.json files whenever a group finishes. Re-running the same command after a kill
(SIGKILL included) skips finished groups and resumes the others from their last checkpoint; the
data stream of a proxy is a pure function of (seed, run index, step), so the tables equal those of
an uninterrupted run.

Library entry point: `run_sweep(cfg: SweepConfig, out, *, where="config", force=False,
workers=None, progress=True) -> Path` (the path of metrics.csv).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from proxies.config import ModelConfig, SweepConfig, TrainConfig, preset
from proxies.replicas import leads
from regmix.config import from_dict, to_dict
from regmix.corpus.store import TokenStore
from regmix.errors import RegmixError

PROCESS_OVERHEAD_BYTES = 0.6e9  # one JAX process before any proxy (runtime, compiled code, data)
ACTIVATION_FACTOR = 2.2  # measured peak RSS / the activation count below (XLA buffers, malloc slack:
                         # 0.45-0.6 GB per 1m proxy at batch 16 x 256, varying from run to run)


def run_id(i: int) -> str:
    return f"p{i:04d}"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False, na_rep="NaN"))


def proxy_bytes(cfg: ModelConfig, vocab: int, train: TrainConfig) -> float:
    """Rough peak bytes of one proxy in a vmapped group: state, gradients and saved activations."""
    from proxies.model import count_params

    b, t, d, n = train.batch, train.seq_len, cfg.d_model, cfg.attn_blocks
    params = count_params(cfg, vocab)["total"]
    attn = cfg.n_heads * t * t * (n + 1) / (2 * n) * 2  # probabilities and their gradient
    per_layer = t * (12 * d + 4 * cfg.d_ff) + attn
    acts = b * (cfg.n_layers * per_layer + 3 * t * vocab)
    return 4.0 * (5 * params + ACTIVATION_FACTOR * acts)


def plan_groups(n: int, workers: int, budget_bytes: float, per_proxy: float, group_size: int = 0) -> list[list[int]]:
    """Split run indices 0..n-1 into equal groups fitting the memory budget, a multiple of workers."""
    if group_size <= 0:
        fit = (budget_bytes / workers - PROCESS_OVERHEAD_BYTES) / per_proxy
        group_size = max(1, min(int(fit), math.ceil(n / workers)))
    n_groups = math.ceil(n / group_size)
    n_groups = min(n, math.ceil(n_groups / workers) * workers)
    # Sizes differ by at most one (at most two compiled shapes), larger groups first.
    return [part.tolist() for part in np.array_split(np.arange(n), n_groups)]


def default_workers() -> int:
    """One worker per core on CPUs; one process (whose mesh spans the devices) on accelerators."""
    import jax

    if jax.default_backend() != "cpu":
        return 1
    return len(os.sched_getaffinity(0))


@contextmanager
def locked(out: Path):
    """Exclusive lock on the output folder (released by the kernel if the process dies)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RegmixError(f"{out}: another sweep is running in this folder") from None
        yield


def _store_identity(store: TokenStore) -> dict:
    return {"tokenizer": store.tokenizer_hash, "vocab_size": store.vocab_size,
            "domains": {d: {k: store.meta["domains"][d].get(k) for k in ("train_tokens", "valid_tokens")}
                        for d in store.domains}}


def _check_domains(cfg: SweepConfig, store: TokenStore, where: str) -> tuple[list[str], list[str]]:
    train = list(cfg.train_domains or store.domains)
    evals = list(cfg.eval_domains or store.domains)
    for field, names in (("train_domains", train), ("eval_domains", evals), ("bounds", list(cfg.bounds))):
        for d in names:
            if d not in store.domains:
                raise RegmixError(f"{where}: {field}: unknown domain '{d}' (store has: {', '.join(store.domains)})")
    need = cfg.train.seq_len + 1
    for split, names in (("valid", evals), ("train", train)):
        for d in names:
            have = int(store.meta["domains"][d].get(f"{split}_tokens", 0))
            if have < need:
                raise RegmixError(f"{where}: train.seq_len {cfg.train.seq_len} is longer than the {split} split "
                                  f"of '{d}' ({have} tokens)")
    for name in cfg.lr_scale:
        if not (name.startswith("p") and name[1:].isdigit() and int(name[1:]) < cfg.n_proxies):
            raise RegmixError(f"{where}: lr_scale: unknown run '{name}'")
    return train, evals


def sample(cfg: SweepConfig, store: TokenStore, domains: list[str]) -> np.ndarray:
    """The sweep's mixtures w_NxK over `domains` (prior: natural token shares)."""
    from regmix.sample import SamplerConfig, sample_mixtures
    from regmix.space import MixtureSpace

    natural = store.natural_weights()
    prior = np.array([natural[d] for d in domains])
    if prior.sum() <= 0:
        raise RegmixError(f"{cfg.store}: train_domains hold no training tokens")
    lower = [cfg.bounds.get(d, (0.0, 1.0))[0] for d in domains]
    upper = [cfg.bounds.get(d, (0.0, 1.0))[1] for d in domains]
    space = MixtureSpace.from_prior(domains, prior / prior.sum(), lower=lower, upper=upper)
    rng = np.random.default_rng(cfg.seed)
    return sample_mixtures(space, cfg.n_proxies, rng, method=cfg.sampler,
                           config=SamplerConfig(temperature=cfg.temperature))


def _difference(old: dict, new: dict, path: str = "") -> str:
    """First differing dotted key of two JSON-like mappings, described; '' when equal."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        where = f"{path}.{key}" if path else key
        if isinstance(a, dict) and isinstance(b, dict):
            found = _difference(a, b, where)
            if found:
                return found
        elif a != b:
            if where == "store.tokenizer":
                return f"the token store's tokenizer changed: {a!r} -> {b!r}"
            text = lambda v: (repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "...")
            return f"{where.removeprefix('config.')}: {text(a)} -> {text(b)}"
    return ""


def prepare(cfg: SweepConfig, out: Path, where: str, force: bool = False, workers: int | None = None) -> dict:
    """Create or check DIR/sweep.json and DIR/mixtures.csv; returns the sweep record."""
    store = TokenStore.open(cfg.store)
    train_domains, eval_domains = _check_domains(cfg, store, where)
    workers = workers or cfg.run.workers or default_workers()
    config = to_dict(cfg)
    config["store"] = str(Path(cfg.store).absolute())
    identity = {"config": {k: v for k, v in config.items() if k != "run"}, "store": _store_identity(store)}
    path = out / "sweep.json"
    if path.exists():
        record = json.loads(path.read_text())
        what = _difference({"config": record["config"], "store": record["store"]}, json.loads(json.dumps(identity)))
        if what:
            if not force:
                raise RegmixError(f"{out}: holds a different sweep ({what}); use another --out or --force to discard it")
            for name in ("sweep.json", "mixtures.csv", "metrics.csv", "status.csv"):
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / "groups", ignore_errors=True)
        else:
            return record
    elif force:
        shutil.rmtree(out / "groups", ignore_errors=True)
    w = sample(cfg, store, train_domains)
    ids = [run_id(i) for i in range(cfg.n_proxies)]
    per_proxy = proxy_bytes(preset(cfg.model), store.vocab_size, cfg.train)
    groups = plan_groups(cfg.n_proxies, workers, cfg.run.memory_budget_gb * 1e9, per_proxy, cfg.run.group_size)
    record = dict(identity, train_domains=train_domains, eval_domains=eval_domains, groups=groups,
                  workers=workers)
    frame = pd.DataFrame(w, columns=train_domains)
    frame.insert(0, "run", ids)
    atomic_write_csv(out / "mixtures.csv", frame)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def group_dir(out: Path, g: int) -> Path:
    return out / "groups" / f"g{g:04d}"


def train_group(out: Path, g: int, record: dict | None = None, mesh=None, replicas=None) -> dict:
    """Train group g of the sweep in DIR (resuming its checkpoint) and write its result.json
    (`replicas`: one of several processes splitting the group's batches; rank 0 writes)."""
    from proxies.train import train_mixtures

    record = record or json.loads((out / "sweep.json").read_text())
    cfg = from_dict(SweepConfig, record["config"], where=str(out / "sweep.json"))
    members = record["groups"][g]
    mixtures = pd.read_csv(out / "mixtures.csv")
    w = mixtures[record["train_domains"]].to_numpy(np.float64)[members]
    ids = [run_id(i) for i in members]
    scale = np.array([cfg.lr_scale.get(r, 1.0) for r in ids])
    gdir = group_dir(out, g)
    gdir.mkdir(parents=True, exist_ok=True)
    last = [0.0]

    def on_step(step: int, tokens: int) -> None:
        now = time.monotonic()
        if now - last[0] > 1.0 or step == cfg.train.steps:
            last[0] = now
            atomic_write_text(gdir / "progress.json", json.dumps({"step": step, "tokens": tokens * len(ids)}))

    res = train_mixtures(TokenStore.open(cfg.store), record["train_domains"], w, model=cfg.model,
                         train=cfg.train, eval_domains=record["eval_domains"], proxy_ids=np.array(members),
                         lr_scale_M=scale, checkpoint_dir=gdir / "ckpt", mesh=mesh,
                         on_step=on_step if leads(replicas) else None, replicas=replicas)
    nan = lambda a: [None if not math.isfinite(v) else v for v in a]
    result = {"runs": ids, "eval_domains": res.eval_domains,
              "val_loss": [nan(r) for r in res.val_loss_MxE.tolist()],
              "bpb": [nan(r) for r in res.bpb_MxE.tolist()],
              "curve_steps": res.curve_steps_S.tolist(),
              "curve_loss": [[nan(r) for r in s] for s in res.curve_loss_SxMxE.tolist()],
              "diverged": res.diverged_M.tolist(), "steps": res.steps_M.tolist(),
              "tokens": res.tokens_M.tolist(), "seconds": res.seconds}
    if leads(replicas):
        atomic_write_text(gdir / "result.json", json.dumps(result) + "\n")
        shutil.rmtree(gdir / "ckpt", ignore_errors=True)  # the result is the durable record now
    return result


def finished_groups(out: Path, record: dict) -> dict[int, dict]:
    done = {}
    for g in range(len(record["groups"])):
        path = group_dir(out, g) / "result.json"
        if path.exists():
            done[g] = json.loads(path.read_text())
    return done


def write_tables(out: Path, record: dict) -> int:
    """Rebuild metrics.csv and status.csv from the finished groups; returns the rows written."""
    rows, status = [], []
    for result in finished_groups(out, record).values():
        domains = result["eval_domains"]
        for i, run in enumerate(result["runs"]):
            loss = np.array(result["val_loss"][i], dtype=np.float64)
            bpb = np.array(result["bpb"][i], dtype=np.float64)
            row = {"run": run}
            for e, d in enumerate(domains):
                row[f"{d}_val_loss"] = loss[e]
                row[f"{d}_bpb"] = bpb[e]
            row["mean_val_loss"] = float(np.mean(loss))
            row["mean_bpb"] = float(np.mean(bpb))
            rows.append(row)
            status.append({"run": run, "status": "diverged" if result["diverged"][i] else "ok",
                           "steps": result["steps"][i], "tokens": result["tokens"][i],
                           "seconds": round(result["seconds"], 3)})
    columns = ["run"] + [f"{d}_{m}" for d in record["eval_domains"] for m in ("val_loss", "bpb")]
    metrics = pd.DataFrame(rows, columns=columns + ["mean_val_loss", "mean_bpb"]).sort_values("run")
    status_frame = pd.DataFrame(status, columns=["run", "status", "steps", "tokens", "seconds"]).sort_values("run")
    atomic_write_csv(out / "metrics.csv", metrics)
    atomic_write_csv(out / "status.csv", status_frame)
    return len(rows)


def run_sweep(cfg: SweepConfig, out: str | Path, *, where: str = "config", force: bool = False,
              workers: int | None = None, progress: bool = True) -> Path:
    """Run (or resume) a sweep into `out`; returns the path of metrics.csv."""
    from proxies.workers import run_groups

    out = Path(out)
    with locked(out):
        record = prepare(cfg, out, where, force=force, workers=workers)
        workers = workers or cfg.run.workers or default_workers()
        write_tables(out, record)
        todo = [g for g in range(len(record["groups"])) if g not in finished_groups(out, record)]
        if todo:
            run_groups(out, record, todo, workers, progress=progress)
        write_tables(out, record)
    return out / "metrics.csv"
