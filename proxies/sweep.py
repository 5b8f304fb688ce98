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
workers=None, progress=True) -> Path` (the path of metrics.csv). Each group is a job of
proxies.jobs; to spread a sweep over hosts, run `python -m proxies.pool CORES 0 proxies.sweep:work
DIR G...` (parent 0: none) with disjoint groups on each host sharing DIR.
"""

from __future__ import annotations

import json
import math
import shutil
from contextlib import contextmanager
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from proxies import jobs
from proxies.config import ModelConfig, SweepConfig, TrainConfig, preset
from proxies.model import count_params
from regmix.config import from_dict, to_dict
from regmix.corpus.store import TokenStore
from regmix.errors import RegmixError
from regmix.files import atomic_write_text, clean_temp_files, locked, usable_cores
from regmix.progress import Progress, Rate, eta_note
from regmix.sample import SamplerConfig, sample_mixtures
from regmix.space import MixtureSpace

PROCESS_OVERHEAD_BYTES = 0.6e9  # one JAX process before any proxy (runtime, compiled code, data)
ACTIVATION_FACTOR = 2.2  # measured peak RSS / the activation count below (XLA buffers, malloc slack:
                         # 0.45-0.6 GB per 1m proxy at batch 16 x 256, varying from run to run)


def run_id(i: int) -> str:
    return f"p{i:04d}"


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """A table as the sweep writes it (NaN spelled out), atomically."""
    atomic_write_text(path, frame.to_csv(index=False, na_rep="NaN"))


def proxy_bytes(cfg: ModelConfig, vocab: int, train: TrainConfig) -> float:
    """Rough peak bytes of one proxy in a vmapped group: state, gradients and saved activations."""
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
    if jax.default_backend() != "cpu":
        return 1
    return usable_cores()


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


def create_sweep(cfg: SweepConfig, out: Path, where: str, force: bool = False, workers: int | None = None) -> dict:
    """Create or check DIR/sweep.json and DIR/mixtures.csv; returns the sweep record."""
    store = TokenStore.open(cfg.store)
    train_domains, eval_domains = _check_domains(cfg, store, where)
    workers = workers or cfg.run.workers or default_workers()
    config = to_dict(cfg)
    config["store"] = str(Path(cfg.store).absolute())
    identity = {"config": {k: v for k, v in config.items() if k != "run"}, "store": _store_identity(store)}
    path = out / "sweep.json"
    if path.exists():
        record = read_record(out)
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
    write_csv(out / "mixtures.csv", frame)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")  # not json_safe: an lr_scale may be inf
    return record


def group_dir(out: Path, g: int) -> Path:
    return out / "groups" / f"g{g:04d}"


def group_job(out: Path, record: dict, g: int) -> jobs.Job:
    """Group g of the sweep in `out` as a job of proxies.jobs."""
    cfg = from_dict(SweepConfig, record["config"], where=str(out / "sweep.json"))
    members = record["groups"][g]
    mixtures = pd.read_csv(out / "mixtures.csv")
    ids = [run_id(i) for i in members]
    gdir = group_dir(out, g)
    return jobs.Job(store=cfg.store, domains=record["train_domains"],
                    w_MxK=mixtures[record["train_domains"]].to_numpy(np.float64)[members], model=cfg.model,
                    train=cfg.train, eval_domains=record["eval_domains"], proxy_ids=np.array(members),
                    lr_scale_M=np.array([cfg.lr_scale.get(r, 1.0) for r in ids]), checkpoint_dir=gdir / "ckpt",
                    scratch=gdir / "ckpt", header={"runs": ids}, progress=gdir / "progress.json")


SWEEP = jobs.Stage(name="sweep", record="sweep.json", jobs="groups", folder="groups",
                   result=lambda out, g: group_dir(out, g) / "result.json", job=group_job,
                   fields=("val_loss", "bpb", "curve_steps", "curve_loss", "diverged", "steps", "tokens", "seconds"),
                   worker="proxies.sweep:work")


def work(args: list[str]) -> int:
    """Body of a pool worker (proxies.pool): `OUT G...` trains the groups G of the sweep in OUT."""
    return jobs.work(SWEEP, args)


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise RegmixError(f"{path}: cannot read the {what}: {type(err).__name__}: {err}") from None


RECORD_KEYS = {"config": dict, "store": dict, "train_domains": list, "eval_domains": list, "groups": list}
RESULT_KEYS = ("runs", "eval_domains", "val_loss", "bpb", "diverged", "steps", "tokens", "seconds")


def read_record(out: Path) -> dict:
    """DIR/sweep.json, checked enough that what reads it cannot fail on its shape."""
    path = out / "sweep.json"
    record = _read_json(path, "sweep record")
    fix = "; use --force to start the sweep again, or another --out"
    if not isinstance(record, dict):
        raise RegmixError(f"{path}: expected a JSON object{fix}")
    for key, kind in RECORD_KEYS.items():
        if not isinstance(record.get(key), kind):
            raise RegmixError(f"{path}: '{key}' missing or not a {'mapping' if kind is dict else 'list'}{fix}")
    if not all(isinstance(g, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in g)
               for g in record["groups"]):
        raise RegmixError(f"{path}: 'groups' must be lists of run indices{fix}")
    return record


def finished_groups(out: Path, record: dict) -> dict[int, dict]:
    done = {}
    for g, members in enumerate(record["groups"]):
        path = group_dir(out, g) / "result.json"
        if path.exists():
            done[g] = _check_result(_read_json(path, "group result"), path, len(members))
    return done


def _check_result(result: object, path: Path, n: int) -> dict:
    """A group's result.json as write_tables reads it: n runs, a row of numbers per run and eval domain."""
    fix = "; delete it to train the group again"
    if not isinstance(result, dict):
        raise RegmixError(f"{path}: expected a JSON object{fix}")
    for key in RESULT_KEYS:
        if key not in result:
            raise RegmixError(f"{path}: missing key '{key}'{fix}")
    k = len(result["eval_domains"]) if isinstance(result["eval_domains"], list) else -1
    for key in ("runs", "val_loss", "bpb", "diverged", "steps", "tokens"):
        if not isinstance(result[key], list) or len(result[key]) != n:
            raise RegmixError(f"{path}: '{key}' must list the group's {n} runs{fix}")
    for key in ("val_loss", "bpb"):
        for row in result[key]:
            if not isinstance(row, list) or len(row) != k or not all(
                    v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in row):
                raise RegmixError(f"{path}: '{key}' must hold {k} numbers per run (one per eval domain){fix}")
    if isinstance(result["seconds"], bool) or not isinstance(result["seconds"], (int, float)):
        raise RegmixError(f"{path}: 'seconds' must be a number{fix}")
    return result


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
    write_csv(out / "metrics.csv", metrics)
    write_csv(out / "status.csv", status_frame)
    return len(rows)


def _progress_tokens(out: Path, record: dict) -> int:
    total = 0
    for g in range(len(record["groups"])):
        path = group_dir(out, g) / "progress.json"
        try:
            total += int(json.loads(path.read_text())["tokens"])
        except (OSError, ValueError, KeyError):
            pass
    return total


@contextmanager
def progress_bar(out: Path, record: dict, progress: bool = True):
    """Finished proxies with tokens per second and an ETA (a bar on a terminal, plain lines elsewhere);
    yields `refresh()`, which also rebuilds the tables when a group has finished."""
    n_total = sum(len(g) for g in record["groups"])
    done = finished_groups(out, record)
    count = lambda groups: sum(len(record["groups"][g]) for g in groups)
    bar = Progress("sweep", n_total, "proxies", initial=count(done), enabled=progress)
    rate_of = Rate(_progress_tokens(out, record))
    cfg = record["config"]["train"]
    all_tokens = n_total * cfg["steps"] * cfg["batch"] * cfg["seq_len"]

    def refresh() -> None:
        nonlocal done
        now = finished_groups(out, record)
        if len(now) != len(done):
            write_tables(out, record)
            done = now
        tokens = _progress_tokens(out, record)
        bar.update(count(done), eta_note(rate_of(tokens), all_tokens - tokens, "tok"))

    try:
        yield refresh
    finally:
        bar.close()


def tidy(out: Path, record: dict) -> None:
    """What a killed run leaves behind: temporary files of interrupted writes, and the checkpoint of a group
    killed between writing its result and removing the checkpoint (the result is the durable record)."""
    groups = [group_dir(out, g) for g in range(len(record["groups"]))]
    clean_temp_files([out, *(g for g in groups if g.is_dir())])
    for gdir in groups:
        if (gdir / "result.json").is_file() and (gdir / "ckpt").exists():
            shutil.rmtree(gdir / "ckpt", ignore_errors=True)


def run_sweep(cfg: SweepConfig, out: str | Path, *, where: str = "config", force: bool = False,
              workers: int | None = None, progress: bool = True) -> Path:
    """Run (or resume) a sweep into `out`; returns the path of metrics.csv."""
    out = Path(out)
    with locked(out, "sweep"):
        record = create_sweep(cfg, out, where, force=force, workers=workers)
        tidy(out, record)
        workers = workers or cfg.run.workers or default_workers()
        write_tables(out, record)
        todo = jobs.unfinished(SWEEP, out, record)
        if todo:
            with progress_bar(out, record, progress) as refresh:
                jobs.run_jobs(SWEEP, out, record, todo, workers, record["config"]["train"]["batch"], tick=refresh)
        write_tables(out, record)
    return out / "metrics.csv"
