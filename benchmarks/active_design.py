"""Active design vs random, pool-based on the embedded RegMix table (512 runs, Pile-CC loss).

Start from 32 random runs; each round fit the GP and add a batch of 16 runs from the remaining
pool, chosen either by `regmix suggest`'s rule (expected improvement, kriging-believer batch;
regress/acquire.py) restricted to the pool, the same with half of each batch by largest posterior
variance (`--explore 0.5`), or at random. After each round: Spearman of the GP on
the runs still in the pool, the regret of its pick among them (true loss of the pool run it ranks
best minus the pool's best), and the found regret (best loss among the runs trained so far minus
the best of all 512).

    nice python benchmarks/active_design.py --seeds 3 --rounds 6 --out bench-out/active
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from regmix.regress.acquire import choose  # noqa: E402
from regmix.regress.gp import GPModel  # noqa: E402
from regmix.tables import EMBEDDED_TARGET, load_sweep  # noqa: E402


def run_arm(w, y, arm: str, seed: int, start: int, batch: int, rounds: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    chosen = list(rng.permutation(len(y))[:start])
    rows = []
    for r in range(rounds + 1):
        pool = np.setdiff1d(np.arange(len(y)), chosen)
        model = GPModel().fit(w[chosen], y[chosen], seed)
        pred = model.predict(w[pool])
        rows.append({"arm": arm, "seed": seed, "runs": len(chosen),
                     "spearman_pool": float(stats.spearmanr(pred, y[pool]).statistic),
                     "pick_regret": float(y[pool][np.argmin(pred)] - y[pool].min()),
                     "found_regret": float(y[chosen].min() - y.min())})
        if r == rounds:
            break
        if arm != "random":
            explore = 0.5 if arm == "suggest-explore" else 0.0
            add = pool[choose([model], None, np.ones(1), w[pool], batch, float(y[chosen].min()), explore, seed + r)]
        else:
            add = rng.choice(pool, batch, replace=False)
        chosen += [int(i) for i in add]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--start", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    mix, y, _ = load_sweep(None, None, [EMBEDDED_TARGET])
    rows = []
    for seed in range(args.seeds):
        for arm in ("suggest", "suggest-explore", "random"):
            rows += run_arm(mix.w_NxK, y[:, 0], arm, seed, args.start, args.batch, args.rounds)
            print(pd.DataFrame(rows[-args.rounds - 1:]).to_string(index=False), flush=True)
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["runs", "arm"])[["spearman_pool", "pick_regret", "found_regret"]].mean().unstack("arm")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "active_design.csv", index=False)
    lines = ["| runs | " + " | ".join(f"{m} {a}" for m, a in summary.columns) + " |", "|---" * (len(summary.columns) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for n, row in summary.iterrows()]
    text = f"mean over {args.seeds} seeds (start {args.start}, batches of {args.batch})\n\n" + "\n".join(lines) + "\n"
    (out / "active_design.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
