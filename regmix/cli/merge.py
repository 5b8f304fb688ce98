"""`regmix merge`: seed + one branch per domain, then merged-model losses in the sweep's table format."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from regmix.cli import command_parser, require_jax_side
from regmix.config import load_config
from regmix.corpus.prepare import ensure_store


def register(sub) -> None:
    p = command_parser(sub, "merge", help="Train a seed proxy and one branch per domain, score mixtures by merging "
                       "the branches' weights; writes the tables `regmix fit` reads.",
                       example="regmix merge --config merge.yaml --out runs/merge")
    p.add_argument("--config", required=True, help="sweep YAML with a `merge:` section (seed_steps, branch_steps, "
                   "branch_lr_factor, n_candidates)")
    p.add_argument("--out", required=True, help="output folder; re-running the same command resumes")
    p.add_argument("--mixtures", help="mixtures table to score (default: merge.n_candidates sampled mixtures)")
    p.add_argument("--store", help="token store folder, or a corpus prepared into OUT/store (overrides `store`)")
    p.add_argument("--force", action="store_true", help="discard different branches found in --out")
    p.set_defaults(func=run)


def run(args) -> int:
    require_jax_side("merge")
    from proxies.branches import MergeConfig, run_merge
    from proxies.pool import enable_compile_cache

    cfg = load_config(MergeConfig, args.config, {"store": args.store} if args.store else None)
    store = ensure_store(cfg.store, Path(args.out) / "store", cfg.train.seq_len, log=sys.stderr)
    cfg = dataclasses.replace(cfg, store=store)
    enable_compile_cache(Path(args.out) / ".jax_cache")
    t0 = time.perf_counter()
    metrics = run_merge(cfg, args.out, where=args.config, mixtures=args.mixtures, force=args.force)
    print(f"merge: merged-model losses in {time.perf_counter() - t0:.0f} s; tables: "
          f"{Path(args.out) / 'mixtures.csv'}, {metrics} (rows are merged models: see merge.json)")
    return 0
