"""`regmix predict`: predict the target for every mixture of a table."""

from __future__ import annotations

import pandas as pd

from regmix.cli import command_parser
from regmix.regress.fit import FittedModel, align_columns
from regmix.regress.interval import conformal_quantile
from regmix.tables import load_mixtures, write_table
from regmix.files import check_out


def register(sub) -> None:
    p = command_parser(
        sub, "predict", "Predict a fitted model's target for each row of a mixtures table.",
        "regmix predict --model models/pile_cc --mixtures candidates.csv --out predictions.csv",
    )
    p.add_argument("--model", required=True, help="directory written by `regmix fit`")
    p.add_argument("--mixtures", required=True, help="mixtures table; domains are matched by name")
    p.add_argument("--renormalize", action="store_true", help="rescale rows whose weights do not sum to 1")
    p.add_argument("--interval", type=float, metavar="LEVEL",
                   help="also write `lower` and `upper`: a conformal interval meant to hold a new run's target "
                   "with this probability (e.g. 0.8), calibrated on the fit's out-of-fold residuals")
    p.add_argument("--out", required=True, help="CSV: the table's id column, then `prediction` (and `lower`, `upper`)")
    p.set_defaults(func=run)


def run(args) -> int:
    check_out(args.out, "file")
    if args.interval is not None:
        conformal_quantile([0.0], args.interval)  # a bad level fails before any work
    model = FittedModel.load(args.model)
    table = load_mixtures(args.mixtures, renormalize=args.renormalize)
    w = align_columns(model, table)
    if args.interval is None:
        pred = model.predict(w)
    else:
        pred, lower, upper = model.interval(w, args.interval)
    out = pd.DataFrame({table.id_column: table.ids})
    for t, name in enumerate(model.targets):
        suffix = "" if t == 0 else f":{name}"
        out[f"prediction{suffix}"] = pred[:, t]
        if args.interval is not None:
            out[f"lower{suffix}"], out[f"upper{suffix}"] = lower[:, t], upper[:, t]
    write_table(out, args.out)
    print(f"{len(out)} predictions written to {args.out}")
    return 0
