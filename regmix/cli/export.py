"""`regmix export`: write a mixture, or an end-of-training schedule, in a trainer's format."""

from __future__ import annotations

import sys
from pathlib import Path

from regmix.cli import add_cap_flags, check_cap_numbers, command_parser
from regmix.errors import RegmixError
from regmix.export import (FORMATS, Budget, ExportOptions, Schedule, export, parse, plan_table, read_mixture,
                           read_token_counts)
from regmix.export.static import HF_STRATEGIES
from regmix.files import atomic_write_text
from regmix.files import check_out


def register(sub) -> None:
    p = command_parser(
        sub, "export", "Write a mixture for a trainer (Megatron, OLMo-core, olmix, Levanter, nanotron, HF datasets, "
        "MosaicML, RegMix's lit-gpt).",
        "regmix export mixture.json --format olmo --token-budget 25e9 --tokens store --max-epochs 4 "
        "--global-batch-size 512 --sequence-length 2048 --out olmo.yaml",
    )
    p.add_argument("mixture", help="mixture.json from `regmix optimize` (or a {domain: weight} JSON file)")
    p.add_argument("--format", default="json", choices=FORMATS, help="the trainer's format (see README: Exports)")
    p.add_argument("--out", help="file to write (default: standard output); phases go to OUT's name + .base/.late")
    p.add_argument("--path-template", help="data path per domain, e.g. '/data/{domain}_text_document'")
    budget = p.add_argument_group("token budget (tokens and epochs per domain, repetition caps)")
    add_cap_flags(budget, "tokens of the whole run", "repetition cap; warns where a domain would repeat more")
    sched = p.add_argument_group("end-of-training schedule (levanter, nanotron and json natively; others one file per phase)")
    sched.add_argument("--late", help="mixture.json for the last part of training")
    sched.add_argument("--late-fraction", type=float, help="share of the steps trained on the late mixture (e.g. 0.2)")
    sched.add_argument("--steps", type=int, help="total optimizer steps of the run")
    fmt = p.add_argument_group("trainer fields")
    fmt.add_argument("--global-batch-size", type=int, help="sequences per step (olmo: with --sequence-length; levanter)")
    fmt.add_argument("--sequence-length", type=int, help="tokens per sequence (olmo)")
    fmt.add_argument("--stopping-strategy", default="first_exhausted", choices=HF_STRATEGIES, help="hf")
    fmt.add_argument("--seed", type=int, default=0, help="data-order seed where the trainer has one")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.out:
        check_out(args.out, "file")
    check_cap_numbers(args)
    mix = read_mixture(args.mixture)
    budget = None
    if args.token_budget is not None:
        tokens = read_token_counts(args.tokens) if args.tokens is not None else None
        budget = Budget(args.token_budget, tokens, args.max_epochs)
    elif args.tokens is not None or args.max_epochs is not None:
        raise RegmixError("--tokens and --max-epochs need --token-budget")
    schedule = None
    given = [args.late is not None, args.late_fraction is not None, args.steps is not None]
    if any(given):
        if not all(given):
            raise RegmixError("a schedule needs --late, --late-fraction and --steps together")
        schedule = Schedule(read_mixture(args.late, "--late").weights, args.late_fraction, args.steps)
    for flag in ("global_batch_size", "sequence_length"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise RegmixError(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    opts = ExportOptions(path_template=args.path_template, budget=budget, schedule=schedule, seed=args.seed,
                         stopping_strategy=args.stopping_strategy, global_batch_size=args.global_batch_size,
                         sequence_length=args.sequence_length)
    files = export(mix, args.format, opts)
    report = sys.stdout
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise RegmixError(f"--out {out}: is a folder; give a file name")
        for f in files:
            write_text(f.path(out), f.text)
            print(f"{args.format} {f.part + ' ' if f.part else ''}mixture written to {f.path(out)}")
    elif len(files) > 1:
        raise RegmixError(f"{args.format} takes one mixture, so the schedule is written as {len(files)} files "
                          f"({', '.join(f.part for f in files)}): give --out FILE")
    else:
        sys.stdout.write(files[0].text)
        report = sys.stderr
    if schedule is not None:
        how = "in the file" if len(files) == 1 else f"{args.format} takes one mixture, so switch to the .late file"
        step = parse(files[0].text, args.format)[-1][0] if len(files) == 1 else schedule.switch_step
        print(f"late mixture from step {step} of {schedule.total_steps} "
              f"({(schedule.total_steps - step) / schedule.total_steps:.3g} of training; {how})", file=report)
    if budget is not None and budget.tokens is not None:
        print(plan_table(opts.overall(mix.weights), budget), file=report)
    return 0


def write_text(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError as err:
        raise RegmixError(f"--out {path}: cannot write: {err.strerror or err}") from None
