"""`regmix bench proxies`: throughput and MFU of proxy training, one JSON object."""

from __future__ import annotations

import json
import math

from regmix.cli import command_parser, require_jax_side
from regmix.errors import RegmixError


def register(sub) -> None:
    p = command_parser(sub, "bench", help="Measure the toolkit's speed (group: `regmix bench proxies`).",
                       example="regmix bench proxies --preset 1m --n-proxies 16 --batch 16 --seq-len 256 --json")
    groups = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    q = command_parser(groups, "proxies", help="Train proxies for a few steps on the sweep's code path; report tokens/s, MFU, peak RSS.",
                       example="regmix bench proxies --preset 1m --n-proxies 16 --json")
    q.add_argument("--preset", default="1m", help="model preset (tiny, small, 1m, 60m)")
    q.add_argument("--n-proxies", type=int, default=16, help="proxies trained at once")
    q.add_argument("--batch", type=int, default=16, help="sequences per proxy per step")
    q.add_argument("--seq-len", type=int, default=256, help="tokens per sequence")
    q.add_argument("--steps", type=int, default=10, help="timed steps (after one warm-up step)")
    q.add_argument("--workers", type=int, default=0, help="worker processes (0: one per core)")
    q.add_argument("--memory-budget-gb", type=float, default=8.0, help="memory the proxy groups may take")
    q.add_argument("--group-size", type=int, default=0, help="proxies per vmapped group (0: as a sweep plans them)")
    q.add_argument("--no-tunables", action="store_true", help="leave glibc malloc defaults (for comparison)")
    q.add_argument("--json", action="store_true", help="print one JSON object (default: a short summary too)")
    q.set_defaults(func=run)


def run(args) -> int:
    require_jax_side("bench")
    from proxies.bench import run_bench
    from proxies.config import preset

    preset(args.preset)
    for name in ("n_proxies", "batch", "seq_len", "steps"):
        if getattr(args, name) < 1:
            raise RegmixError(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("workers", "group_size"):
        if getattr(args, name) < 0:
            raise RegmixError(f"--{name.replace('_', '-')} must be >= 0 (0: {'one per core' if name == 'workers' else 'as a sweep plans them'}), got {getattr(args, name)}")
    if not (math.isfinite(args.memory_budget_gb) and args.memory_budget_gb > 0):
        raise RegmixError(f"--memory-budget-gb must be a finite number > 0, got {args.memory_budget_gb}")
    record = run_bench(args.preset, args.n_proxies, args.batch, args.seq_len, args.steps, args.workers,
                       args.memory_budget_gb, tunables=not args.no_tunables, group_size=args.group_size)
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{record['preset']} x {record['n_proxies']}: {record['tokens_per_s']:,.0f} tokens/s, "
              f"MFU {record['mfu']:.3f}, peak RSS {record['peak_rss_bytes'] / 1e9:.2f} GB")
    return 0
