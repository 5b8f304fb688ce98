"""`regmix fit`: cross-validate and fit a regressor from mixture weights to a target metric."""

from __future__ import annotations

import sys

from regmix.cli import command_parser
from regmix.errors import RegmixError
from regmix.regress.fit import FitConfig, fit_sweep, save_fit
from regmix.regress.kinds import MODEL_KINDS
from regmix.report_text import cv_table
from regmix.tables import EMBEDDED_TARGET, load_sweep
from regmix.files import check_out


def register(sub) -> None:
    p = command_parser(
        sub, "fit", "Fit a regressor (mixture -> metric) and print its out-of-fold scores.",
        "regmix fit --target pile_cc --model lightgbm --out models/pile_cc   # embedded RegMix table",
    )
    p.add_argument("--mixtures", help="mixtures table (CSV/parquet: run id, then one weight column per domain)")
    p.add_argument("--metrics", help="metrics table (CSV/parquet: run id, then metric columns)")
    p.add_argument("--target", action="append", help="metric column, or an unambiguous part of its name; "
                   f"repeat for several (default: {EMBEDDED_TARGET} on the embedded table)")
    p.add_argument("--model", default=FitConfig.kind, choices=MODEL_KINDS, help="regressor")
    p.add_argument("--folds", type=int, default=FitConfig.folds, help="cross-validation folds for the out-of-fold scores")
    p.add_argument("--seed", type=int, default=FitConfig.seed, help="seed of the folds and the models")
    p.add_argument("--renormalize", action="store_true", help="rescale rows whose weights do not sum to 1")
    p.add_argument("--out", required=True, help="directory for model.json, tree files and cv_predictions.csv")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    check_out(args.out, "folder")
    if args.target and not all(t.strip() for t in args.target):
        raise RegmixError("--target: a target name is empty")
    targets = args.target or ([EMBEDDED_TARGET] if args.mixtures is None else None)
    if not targets:
        raise RegmixError("--target is required with --mixtures/--metrics")
    mixtures, y, names = load_sweep(args.mixtures, args.metrics, targets, args.renormalize)
    model, oof = fit_sweep(mixtures, y, names, args.model, args.folds, args.seed, progress=not args.no_progress)
    save_fit(model, oof, args.out)
    print(f"{args.model}: {len(y)} runs, {len(mixtures.domains)} domains, {args.folds}-fold out-of-fold scores")
    print(cv_table(model.cv))
    print(f"model written to {args.out}")
    sys.stdout.flush()
    return 0
