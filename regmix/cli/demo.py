"""`regmix demo`: the whole method end to end on the embedded corpus, down to final runs and a report."""

from __future__ import annotations

import json

from regmix.cli import check_config_kind, command_parser, require_jax_side
from regmix.files import check_out, disk_full_is_an_error

DEFAULT_CONFIG = "demo"  # presets shipped in regmix/configs
QUICK_CONFIG = "demo-quick"


def register(sub) -> None:
    p = command_parser(
        sub, "demo", "Run the whole method on the embedded corpus: sweep, fit, optimize, export, final runs, report.",
        "regmix demo --out runs/demo && xdg-open runs/demo/report.html",
    )
    p.add_argument("--config", help=f"pipeline YAML or preset (default: {DEFAULT_CONFIG}; with --quick: {QUICK_CONFIG})")
    p.add_argument("--quick", action="store_true", help="a small preset that runs in about a minute (tests)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds of the final runs (overrides final.seeds)")
    p.add_argument("--out", required=True, help="output folder; re-running the same command resumes")
    p.set_defaults(func=run)


def config_path(args) -> str:
    return args.config or (QUICK_CONFIG if args.quick else DEFAULT_CONFIG)


def run(args) -> int:
    with disk_full_is_an_error(args.out):  # a full disk is one line; what finished is kept
        return _run(args)


def _run(args) -> int:
    check_out(args.out, "folder")  # before the JAX side is even looked for
    require_jax_side("demo")
    from regmix.pipeline import load_pipeline_config, run_pipeline

    check_config_kind(config_path(args), "pipeline")
    cfg = checked_config(config_path(args), args.seeds, args.out)
    path, reused = run_pipeline(cfg, args.out)
    print_summary(path, reused, args.out)
    return 0


def checked_config(path: str, seeds, out):
    """The pipeline config, with the sweep config its stages build from it checked too, before any stage runs
    (its checks, such as `n_proxies >= 1` or a known model preset, would otherwise stop a later stage)."""
    from pathlib import Path

    from regmix.config import preset_path
    from regmix.errors import RegmixError
    from regmix.pipeline import load_pipeline_config
    from regmix.pipeline.stages import sweep_config

    cfg = load_pipeline_config(path, seeds)
    try:
        sweep_config(cfg, Path(out))
    except (TypeError, ValueError) as err:
        raise RegmixError(f"{preset_path(path)}: {err}") from None
    return cfg


def print_summary(path, reused: list[str], out) -> None:
    """The final runs' ranking and margins, from summary.json."""
    s = json.loads(path.read_text())
    print(f"target: {s['target_metric']}")
    for name in s["ranking"]:
        r = s["final_runs"][name]
        print(f"  {name:<15} {r['target']:.4f}  (seeds: {', '.join(f'{v:.3f}' for v in r['seeds'])})")
    for b, r in s["margins"].items():
        lo, hi = r.get("ci95") or (None, None)  # null in JSON: one seed, no interval
        interval = "no interval from one seed" if lo is None or hi is None else \
            f"95% paired interval {lo:+.4f} to {hi:+.4f}"
        print(f"optimized {r.get('verdict', 'vs')} {b}: {r['mean']:+.4f} nats/byte ({interval}), "
              f"better on {r['wins']}/{r['n_seeds']} seeds")
    took = f"total {s['total_seconds'] / 60:.1f} min"
    if reused:
        took = ("every stage reused: computed earlier in " if len(reused) == len(s["stage_seconds"])
                else f"{len(reused)} stage(s) reused; ") + took
    print(f"{took}; report: {out}/report.html")
