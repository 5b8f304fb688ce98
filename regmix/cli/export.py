"""`regmix export`: write a mixture in a trainer's format."""

from __future__ import annotations

from regmix.cli import command_parser
from regmix.export import FORMATS


def register(sub) -> None:
    p = command_parser(
        sub, "export", "Write a mixture for a trainer (lit-gpt, Megatron, HF datasets, OLMo, MosaicML).",
        "regmix export mixture.json --format megatron --token-budget 25e9 --tokens store/meta.json --max-epochs 4",
    )
    p.add_argument("mixture", help="mixture.json from `regmix optimize`")
    p.add_argument("--format", default="json", choices=FORMATS)
    p.add_argument("--out", help="file to write (default: standard output)")
    p.add_argument("--path-template", help="data path per domain, e.g. '/data/{domain}_text_document'")
    p.add_argument("--token-budget", type=float, help="tokens of the run, for tokens and epochs per domain")
    p.add_argument("--tokens", help="tokens per domain: a token store (dir or meta.json) or a {domain: count} file")
    p.add_argument("--max-epochs", type=float, help="warn where a domain would repeat more than this")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    from regmix.errors import RegmixError
    from regmix.export import Budget, check_round_trip, plan_table, read_mixture, read_token_counts, render

    weights = read_mixture(args.mixture)
    budget = None
    if args.token_budget is not None or args.tokens is not None:
        if args.token_budget is None or args.tokens is None:
            raise RegmixError("--token-budget and --tokens go together")
        if args.token_budget <= 0:
            raise RegmixError(f"--token-budget must be > 0, got {args.token_budget:g}")
        budget = Budget(args.token_budget, read_token_counts(args.tokens), args.max_epochs)
    text = render(weights, args.format, args.path_template, budget)
    check_round_trip(weights, args.format, text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"{args.format} mixture written to {args.out}")
    else:
        sys.stdout.write(text)
    if budget is not None:
        print(plan_table(weights, budget), file=sys.stderr if not args.out else sys.stdout)
    return 0
