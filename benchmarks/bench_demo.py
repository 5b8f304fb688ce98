"""Time `regmix demo` (full and --quick) from scratch, per stage.

    python benchmarks/bench_demo.py [--which quick full] [--out DIR]

Targets (issue 5): full demo <= 15 minutes wall on 2 CPU cores, --quick <= 3 minutes. Each run
starts in an empty folder (a fresh XLA compile cache included), so compile time is counted. The
machine may be shared: the load average before and after each run is printed with it, and the
CPU seconds of the demo and its workers (user + system of the children) beside the wall time.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_demo(which: str, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    args = [sys.executable, "-m", "regmix", "demo", "--out", str(out)] + (["--quick"] if which == "quick" else [])
    load0 = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"regmix demo ({which}) failed:\n{proc.stderr[-2000:]}")
    s = json.loads((out / "summary.json").read_text())
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "stage_seconds": s["stage_seconds"],
        "load_before": round(load0, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "cores": len(os.sched_getaffinity(0)),
        "margins": {b: {k: round(r[k], 4) for k in ("mean", "std")} | {"wins": r["wins"], "n_seeds": r["n_seeds"]}
                    for b, r in s["margins"].items()},
        "cv_spearman": round(s["cv"]["spearman"], 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--which", nargs="+", choices=["quick", "full"], default=["quick", "full"])
    p.add_argument("--out", help="folder for the runs (default: a temporary folder, removed)")
    args = p.parse_args()
    base = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-demo-"))
    try:
        print(json.dumps({w: time_demo(w, base / w) for w in args.which}, indent=1))
    finally:
        if not args.out:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
