"""`regmix run`: the pipeline on your config (every stage, resuming), or one stage of it."""

from __future__ import annotations

from regmix.cli import check_config_kind, command_parser, require_jax_side
from regmix.errors import RegmixError
from regmix.files import check_out, disk_full_is_an_error


def register(sub) -> None:
    p = command_parser(
        sub, "run", "Run the pipeline on your config (every stage, resuming), or one stage of it with --stage "
        "(prepare, sample, sweep, fit, optimize, export, final, report).",
        "regmix run --config my_pipeline.yaml --out runs/mine\n  regmix run --config demo --stage sweep --out runs/demo",
    )
    p.add_argument("--config", required=True, help="pipeline YAML, or a preset name (demo, demo-quick)")
    p.add_argument("--stage", help="run only this stage; the earlier stages must be done in --out (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds of the final runs (overrides final.seeds)")
    p.add_argument("--force", action="store_true", help="run the stage again even if it is done")
    p.add_argument("--out", required=True, help="the pipeline's output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    with disk_full_is_an_error(args.out):  # a full disk is one line; what finished is kept
        return _run(args)


def _run(args) -> int:
    check_out(args.out, "folder")  # before the JAX side is even looked for
    require_jax_side("run")
    from regmix.cli.demo import checked_config, print_summary
    from regmix.pipeline import STAGES, run_pipeline, run_stage

    check_config_kind(args.config, "pipeline")
    if args.stage is None:
        if args.force:
            raise RegmixError("--force needs --stage (the stage to run again)")
        cfg = checked_config(args.config, args.seeds, args.out)
        path, reused = run_pipeline(cfg, args.out)
        print_summary(path, reused, args.out)
        return 0
    if args.stage not in STAGES:
        raise RegmixError(f"unknown stage '{args.stage}' (stages: {', '.join(STAGES)})")
    cfg = checked_config(args.config, args.seeds, args.out)
    ran = run_stage(cfg, args.out, args.stage, force=args.force)
    print(f"{args.stage}: {'done' if ran else 'already done (use --force to run it again)'} in {args.out}")
    return 0
