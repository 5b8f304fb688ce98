"""Active design vs random, pool-based on the embedded RegMix table (512 runs, Pile-CC loss).

Start from 32 random runs; each round fit the GP and add a batch of 16 runs from the remaining
pool, chosen by one of `regmix suggest`'s strategies restricted to the pool (regress/acquire.py),
or at random:

  ei          expected improvement, kriging-believer batch (the default)
  ei-explore  the same with half of each batch by largest posterior variance (--explore 0.5)
  doptimal    greedy D-optimal for a log-linear law, trained runs included (features: intercept and
              log weights, suggest's default --design-features)
  doptimal-weights  the same with the weights as features (the law loglinear.py fits)
  mixed       a quarter of each batch by EI, the rest D-optimal given the runs and those picks
  mixed-half  the same with half by EI (--ei-share 0.5)
  random      uniformly from the pool

After each round: Spearman of the GP on the runs still in the pool, the regret of its pick among
them (true loss of the pool run it ranks best minus the pool's best), the found regret (best loss
among the runs trained so far minus the best of all 512), and log det of the design's information
matrix (X^T X of the intercept and log weights, what doptimal maximises).

    nice python benchmarks/active_design.py --seeds 3 --rounds 6 --out bench-out/active --plot docs/active_design.png
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
from regmix.regress.acquire import DESIGNS, EI_SHARE, choose, design_features, log_det_information  # noqa: E402
from regmix.regress.gp import GPModel  # noqa: E402
from regmix.tables import EMBEDDED_TARGET, load_sweep  # noqa: E402

ARMS = ("ei", "ei-explore", "doptimal", "doptimal-weights", "mixed", "mixed-half", "random")
METRICS = ("spearman_pool", "pick_regret", "found_regret", "log_det")


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
                     "found_regret": float(y[chosen].min() - y.min()),
                     "log_det": log_det_information(design_features(w[chosen]))})
        if r == rounds:
            break
        if arm == "random":
            add = rng.choice(pool, batch, replace=False)
        else:
            strategy = {"ei-explore": "ei", "doptimal-weights": "doptimal", "mixed-half": "mixed"}.get(arm, arm)
            explore = 0.5 if arm == "ei-explore" else 0.0
            design = "weights" if arm == "doptimal-weights" else DESIGNS[0]
            share = 0.5 if arm == "mixed-half" else EI_SHARE
            add = pool[choose([model], None, np.ones(1), w[pool], batch, float(y[chosen].min()), explore, seed + r,
                              strategy, w[chosen], design, share)]
        chosen += [int(i) for i in add]
    return rows


def plot(frame: pd.DataFrame, path: Path, arms, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from regmix.plots import PALETTE

    panels = [("spearman_pool", "Spearman on the runs left in the pool", "higher is better"),
              ("pick_regret", "regret of the model's pick in the pool", "lower is better"),
              ("found_regret", "best run trained so far minus best of all 512", "lower is better")]
    colours = dict(zip(("random", "ei", "doptimal", "mixed", "ei-explore", "doptimal-weights", "mixed-half"), PALETTE))
    step = float(np.diff(sorted(frame.runs.unique()))[:1].mean()) if frame.runs.nunique() > 1 else 1.0
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.6))
    for ax, (col, label, note) in zip(axes, panels):
        for a, arm in enumerate(arms):
            g = frame[frame.arm == arm].groupby("runs")[col]
            mean, lo, hi = g.mean(), g.min(), g.max()
            x = mean.index.to_numpy(float) + (a - (len(arms) - 1) / 2) * 0.08 * step  # dodge, so bars do not hide each other
            ax.errorbar(x, mean.values, yerr=[mean.values - lo.values, hi.values - mean.values], fmt="o-", ms=4,
                        lw=1.8, elinewidth=1, capsize=2.5, color=colours[arm], label=arm)
        ax.set_xlabel("proxy runs trained")
        ax.set_title(f"{label}\n({note})", fontsize=10)
        ax.set_xticks(sorted(frame.runs.unique()))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Spearman")
    axes[1].set_ylabel("loss regret (nats/byte)")
    axes[2].set_ylabel("loss regret (nats/byte)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    p.add_argument("--start", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--out", required=True, help="folder for active_design.csv and active_design.md")
    p.add_argument("--plot", help="PNG of Spearman and regrets against runs (mean over seeds, min-max bars)")
    args = p.parse_args(argv)
    mix, y, _ = load_sweep(None, None, [EMBEDDED_TARGET])
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for arm in args.arms:
            rows += run_arm(mix.w_NxK, y[:, 0], arm, seed, args.start, args.batch, args.rounds)
            print(pd.DataFrame(rows[-args.rounds - 1:]).to_string(index=False), flush=True)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "active_design.csv", index=False)
    text = f"mean over {args.seeds} seeds from {args.first_seed} (start {args.start}, batches of {args.batch}); per seed in brackets\n"
    for col in METRICS:
        mean = frame.groupby(["runs", "arm"])[col].mean().unstack("arm")[args.arms]
        per = frame.groupby(["runs", "arm"])[col].apply(lambda s: " ".join(f"{v:.3f}" for v in s)).unstack("arm")[args.arms]
        lines = [f"\n{col}\n", "| runs | " + " | ".join(args.arms) + " |", "|---" * (len(args.arms) + 1) + "|"]
        lines += [f"| {n} | " + " | ".join(f"{mean.loc[n, a]:.4f} ({per.loc[n, a]})" for a in args.arms) + " |"
                  for n in mean.index]
        text += "\n".join(lines) + "\n"
    (out / "active_design.md").write_text(text)
    print(text)
    if args.plot:
        plot(frame, Path(args.plot), [a for a in ("random", "ei", "doptimal", "mixed") if a in args.arms] or args.arms,
             f"Active design on the RegMix table (Pile-CC loss, GP): start {args.start} random runs, batches of "
             f"{args.batch}; mean over {args.seeds} seeds, bars min-max over seeds")
        print(f"figure written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
