"""`regmix sweep`: train proxy models on sampled mixtures; writes mixtures.csv and metrics.csv."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import pandas as pd

from regmix.cli import check_config_kind, command_parser, require_jax_side
from regmix.config import load_config
from regmix.corpus.prepare import ensure_store
from regmix.errors import RegmixError
from regmix.files import check_out, disk_full_is_an_error


def register(sub) -> None:
    p = command_parser(sub, "sweep", help="Sample mixtures, train a tiny proxy LM on each, write the tables `regmix fit` reads.",
                       example="regmix sweep --config quick --out runs/quick")
    p.add_argument("--config", required=True, help="sweep YAML, or a preset name (quick, pile-1m)")
    p.add_argument("--out", required=True, help="output folder; re-running the same command resumes")
    p.add_argument("--store", help="token store folder, or a corpus ('demo' or a folder) prepared into OUT/store "
                   "(overrides the config's `store`)")
    p.add_argument("--n-proxies", type=int, help="overrides the config's `n_proxies`")
    p.add_argument("--workers", type=int, help="worker processes (default: config run.workers, 0 = one per core)")
    p.add_argument("--force", action="store_true", help="discard a different sweep found in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    with disk_full_is_an_error(args.out):  # a full disk is one line; what finished is kept
        return _run(args)


def _run(args) -> int:
    check_out(args.out, "folder")  # before the JAX side is even looked for
    if args.workers is not None and args.workers < 0:
        raise RegmixError(f"--workers must be >= 0 (0: one per core), got {args.workers}")
    require_jax_side("sweep")
    from proxies.config import SweepConfig
    from proxies.sweep import run_sweep
    from proxies.pool import enable_compile_cache

    overrides = {}
    if args.store:
        overrides["store"] = args.store
    if args.n_proxies is not None:
        overrides["n_proxies"] = args.n_proxies
    check_config_kind(args.config, "sweep")
    cfg = load_config(SweepConfig, args.config, overrides)
    store = ensure_store(cfg.store, Path(args.out) / "store", cfg.train.seq_len, log=sys.stderr)
    cfg = dataclasses.replace(cfg, store=store)
    enable_compile_cache(Path(args.out) / ".jax_cache")
    t0 = time.perf_counter()
    metrics = run_sweep(cfg, args.out, where=args.config, force=args.force, workers=args.workers,
                        progress=not args.quiet)
    status = pd.read_csv(Path(args.out) / "status.csv")
    bad = int((status["status"] != "ok").sum())
    print(f"sweep: {len(status)} proxies ({bad} diverged) in {time.perf_counter() - t0:.0f} s; tables: "
          f"{Path(args.out) / 'mixtures.csv'}, {metrics}")
    return 0
