"""`regmix transfer`: do the small proxies rank mixtures as the large ones do?"""

from __future__ import annotations

import json
from pathlib import Path

from regmix.cli import command_parser
from regmix.errors import RegmixError
from regmix.files import atomic_write_text, check_out
from regmix.regress.kinds import MODEL_KINDS


def register(sub) -> None:
    p = command_parser(
        sub, "transfer", "Rank agreement between two sweeps of the same mixtures at two proxy sizes, and of a "
        "model fitted on the small one predicting the large one: are the proxies big enough?",
        "regmix transfer --small runs/tiny --large runs/small --target pydocs --out runs/transfer",
    )
    p.add_argument("--small", required=True, help="sweep folder of the small proxies (mixtures.csv, metrics.csv)")
    p.add_argument("--large", required=True, help="sweep folder of the large proxies, sharing mixture ids")
    p.add_argument("--target", action="append", required=True, help="metric column or an unambiguous part; repeatable")
    p.add_argument("--model", default="gp", choices=MODEL_KINDS, help="regressor fitted on the small sweep")
    p.add_argument("--folds", type=int, default=5, help="folds of the out-of-fold predictions")
    p.add_argument("--top-k", type=int, default=5, help="size of the best-mixtures sets compared")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and the model")
    p.add_argument("--out", required=True, help="folder for transfer.json and transfer.png")
    p.set_defaults(func=run)


def run(args) -> int:
    check_out(args.out, "folder")
    if args.folds < 2 or args.top_k < 1:
        raise RegmixError(f"--folds must be >= 2 and --top-k >= 1, got {args.folds} and {args.top_k}")
    import matplotlib

    matplotlib.use("Agg")
    from regmix.transfer import HOLDS, plot, transfer

    results = transfer(args.small, args.large, args.target, args.model, args.folds, args.seed, args.top_k)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"small": str(args.small), "large": str(args.large), "model": args.model,
            "targets": [r.to_json() for r in results]}
    atomic_write_text(out / "transfer.json", json.dumps(data, indent=2) + "\n")
    fig = plot(results)
    fig.savefig(out / "transfer.png", dpi=110, bbox_inches="tight")
    print(f"{'target':<28}{'runs':>6}{'true vs true':>14}{'model vs large':>16}{'top-k overlap':>15}{'regret':>9}")
    for r in results:
        print(f"{r.target[:28]:<28}{len(r.ids):>6}{r.true['spearman']:>14.3f}{r.model['spearman']:>16.3f}"
              f"{f'{r.overlap}/{r.top_k}':>15}{r.regret:>9.4f}")
    for r in results:
        verdict = ("holds: the small proxies are a fair stand-in" if r.to_json()["holds"] else
                   f"does not hold (Spearman under {HOLDS}): train larger proxies before trusting the small sweep's optimum")
        print(f"{r.target}: the ranking {verdict}")
    print(f"written to {out / 'transfer.json'} and {out / 'transfer.png'}")
    return 0
