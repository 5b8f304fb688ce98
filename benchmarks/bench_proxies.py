"""Proxy training throughput for M = 1, 4, 16, 64 proxies: tokens/s, MFU, peak RSS (a table).

    python benchmarks/bench_proxies.py [--preset 1m] [--batch 16] [--seq-len 256] [--steps 8]
        [--min-tokens 300000] [--out FILE.md]

Each row is one `regmix bench proxies` run (the sweep's code path: groups sized to the memory
budget, one pinned worker per core). MFU is against the float32 matmul peak measured in the same
process (the definition used throughout); "workers' peak" is the same product timed inside the workers, all
at once; "per CPU-s" divides model FLOPs per CPU-second by matmul FLOPs per CPU-second, which
leaves out time taken by other processes. On a shared machine the first two move with the load,
so the load average is recorded too. Each row trains at least --min-tokens tokens per proxy group
in its timed steps: a lone proxy's steps are short, and a few slow ones would otherwise decide
its figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from proxies.bench import run_bench


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="1m")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--min-tokens", type=int, default=300_000, help="timed tokens per row at least")
    p.add_argument("--proxies", default="1,4,16,64")
    p.add_argument("--memory-budget-gb", type=float, default=8.0)
    p.add_argument("--out", help="also write the table (markdown) and the JSON records here")
    args = p.parse_args(argv)
    rows = []
    for m in [int(x) for x in args.proxies.split(",")]:
        steps = max(args.steps, -(-args.min_tokens // (m * args.batch * args.seq_len)))
        rec = run_bench(args.preset, m, args.batch, args.seq_len, steps, memory_budget_gb=args.memory_budget_gb)
        rec["load_avg_1m"] = os.getloadavg()[0]
        rows.append(rec)
        print(json.dumps(rec), file=sys.stderr)
    lines = [f"preset {args.preset}, batch {args.batch} x {args.seq_len}, timed steps: "
             + ", ".join(f"M={r['n_proxies']}: {r['steps']}" for r in rows),
             "", ("| M | workers x group | tokens/s | MFU | peak matmul GFLOP/s | MFU (workers' peak) "
                  "| MFU (per CPU-s) | peak RSS (GB) | load |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        layout = f"{r['workers']} x {r['groups'][0]} ({len(r['groups'])} groups)"
        if r.get("processes", r["workers"]) > r["workers"]:  # a lone group split over replicas
            layout = f"{r['processes']} replicas x {r['groups'][0]}"
        lines.append(f"| {r['n_proxies']} | {layout} | "
                     f"{r['tokens_per_s']:,.0f} | {r['mfu']:.3f} | {r['peak_matmul_flops_per_s'] / 1e9:.0f} | "
                     f"{r['mfu_workers']:.3f} | {r['mfu_cpu']:.3f} | "
                     f"{r['peak_rss_bytes'] / 1e9:.2f} | {r['load_avg_1m']:.1f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(table + "\n\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
