"""`regmix report`: the analysis notebooks' main figures as PNG files, one HTML page and Markdown."""

from __future__ import annotations

from regmix.cli import add_cap_flags, check_cap_numbers, command_parser
from regmix.errors import RegmixError
from regmix.files import check_out


def register(sub) -> None:
    p = command_parser(
        sub, "report", "Figures of a fitted model and its sweep (fit quality, learning curve, domain effects, "
        "the optimum and its sensitivity) as PNGs, one self-contained HTML page and Markdown.",
        "regmix fit --out models/pile_cc && regmix report --model models/pile_cc --out report   # embedded table",
    )
    p.add_argument("--model", help="directory written by `regmix fit` (default with --demo: DIR/fit/model)")
    p.add_argument("--sweep", help="the sweep the model was fitted on: a folder with mixtures.csv and metrics.csv, "
                   "or 'embedded' (default: the embedded RegMix table; with --demo: DIR/sweep)")
    p.add_argument("--demo", help="a `regmix demo`/`regmix run` folder: its model, sweep and final runs")
    p.add_argument("--samples", type=int, default=100_000, help="candidate mixtures for the optimum")
    p.add_argument("--top-k", type=int, default=100, help="average the k best candidates (RegMix)")
    p.add_argument("--repeats", type=int, default=3, help="learning-curve repeats per subset size")
    p.add_argument("--no-sensitivity", action="store_true", help="skip re-running the optimizer per setting")
    add_cap_flags(p, "tokens of the run, for the epoch plan (with --tokens)")
    p.add_argument("--seed", type=int, default=0, help="seed of subsets, candidates and backgrounds")
    p.add_argument("--out", required=True, help="folder for report.html, report.md and figures/*.png")
    p.set_defaults(func=run)


def run(args) -> int:
    check_out(args.out, "folder")
    check_cap_numbers(args)
    for flag, value, least in (("--samples", args.samples, 100), ("--top-k", args.top_k, 1), ("--repeats", args.repeats, 1)):
        if value < least:
            raise RegmixError(f"{flag} must be at least {least}, got {value}")
    from regmix.export.inputs import read_token_counts
    from regmix.sweep_report import ReportConfig, build, resolve_inputs

    if (args.tokens is None) != (args.token_budget is None) or (args.max_epochs is not None and args.tokens is None):
        raise RegmixError("the epoch plan and the repetition cap need both --tokens and --token-budget")
    tokens = read_token_counts(args.tokens) if args.tokens is not None else None
    config = ReportConfig(samples=args.samples, top_k=args.top_k, repeats=args.repeats,
                          sensitivity=not args.no_sensitivity, token_budget=args.token_budget, tokens=tokens,
                          max_epochs=args.max_epochs, seed=args.seed)
    page = build(resolve_inputs(args.model, args.sweep, args.demo), args.out, config)
    print(f"report written to {page} (figures in {page.parent / 'figures'})")
    return 0
