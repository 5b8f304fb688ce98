"""`regmix run`: one stage of the demo pipeline (the earlier stages must be done in --out)."""

from __future__ import annotations

from regmix.cli import command_parser, require_jax_side
from regmix.errors import RegmixError


def register(sub) -> None:
    p = command_parser(
        sub, "run", "Run one stage of the pipeline (prepare, sample, sweep, fit, optimize, export, final, report).",
        "regmix run --config demo --stage sweep --out runs/demo",
    )
    p.add_argument("--config", required=True, help="pipeline YAML, or a preset name (demo, demo-quick)")
    p.add_argument("--stage", required=True, help="stage name; the earlier stages must be done in --out")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds of the final runs (overrides final.seeds)")
    p.add_argument("--force", action="store_true", help="run the stage again even if it is done")
    p.add_argument("--out", required=True, help="the pipeline's output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    require_jax_side("run")
    from regmix.pipeline import STAGES, load_pipeline_config, run_stage

    if args.stage not in STAGES:
        raise RegmixError(f"unknown stage '{args.stage}' (stages: {', '.join(STAGES)})")
    cfg = load_pipeline_config(args.config, args.seeds)
    ran = run_stage(cfg, args.out, args.stage, force=args.force)
    print(f"{args.stage}: {'done' if ran else 'already done (use --force to run it again)'} in {args.out}")
    return 0
