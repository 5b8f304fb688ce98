"""Benchmarks of the core library on the embedded RegMix table; prints one JSON object.

- sampling 1,000,000 mixtures over 17 domains on one core (target <= 3 s)
- `regmix optimize` with 1,000,000 candidates, as a command (target <= 10 s)
- LightGBM out-of-fold Spearman on the 512 runs (target >= 0.985), and its mean over random
  64-run subsets (LightGBM's defaults reach about 0.89 there)

Run: python benchmarks/bench_core.py [--subsets 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def sampling_seconds(repeats: int = 3) -> dict:
    from regmix.sample import sample_mixtures
    from regmix.space import MixtureSpace
    from regmix.tables import embedded_tables, load_mixtures

    mix = load_mixtures(embedded_tables()[0])
    space = MixtureSpace.from_prior(list(mix.domains), mix.w_NxK.mean(axis=0))
    out = {}
    for method in ("regmix", "uniform", "sobol"):
        times = []
        for r in range(repeats):
            start = time.process_time()
            w = sample_mixtures(space, 1_000_000, np.random.default_rng(r), method)
            times.append(time.process_time() - start)
        out[method] = {"cpu_seconds_best": round(min(times), 3), "rows": len(w)}
    return out


def optimize_seconds(model_dir: str) -> dict:
    cmd = [sys.executable, "-m", "regmix", "optimize", "--model", model_dir, "--samples", "1000000",
           "--out", os.path.join(model_dir, "mixture.json"), "--no-progress"]
    subprocess.run(cmd, check=True, capture_output=True)  # first call compiles and caches the trees
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return {"wall_seconds_best": round(min(times), 2), "wall_seconds_all": [round(t, 2) for t in times]}


def fit_scores(model_dir: str, subsets: int) -> dict:
    from regmix.regress.fit import fit_sweep, save_fit
    from regmix.tables import EMBEDDED_TARGET, load_sweep

    mix, y, names = load_sweep(None, None, [EMBEDDED_TARGET])
    start = time.perf_counter()
    model, oof = fit_sweep(mix, y, names, "lightgbm", folds=5, seed=0, progress=False)
    fit_s = time.perf_counter() - start
    save_fit(model, oof, model_dir)
    full = model.cv[names[0]]
    rhos = []
    for s in range(subsets):
        rows = np.random.default_rng(1000 + s).choice(len(y), 64, replace=False)
        sub, _ = fit_sweep(mix.subset(rows), y[rows], names, "lightgbm", folds=5, seed=s, progress=False)
        rhos.append(sub.cv[names[0]]["spearman"])
    return {
        "spearman_512": round(full["spearman"], 4),
        "pearson_512": round(full["pearson"], 4),
        "fit_seconds_512": round(fit_s, 1),
        "spearman_64_mean": round(float(np.mean(rhos)), 4),
        "spearman_64_std": round(float(np.std(rhos)), 4),
        "subsets_64": subsets,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subsets", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"load_average": os.getloadavg()[0]}
        result["fit"] = fit_scores(tmp, args.subsets)
        result["sampling_1M"] = sampling_seconds()
        result["optimize_1M"] = optimize_seconds(tmp)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
