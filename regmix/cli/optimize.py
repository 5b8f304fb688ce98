"""`regmix optimize`: search the mixture space with a fitted model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from regmix.cli import add_cap_flags, check_cap_numbers, command_parser
from regmix.errors import RegmixError
from regmix.files import atomic_write_text, check_out
from regmix.optimize import OptimizeConfig, optimize, warn_if_worse_than_runs
from regmix.regress.fit import FittedModel
from regmix.regress.interval import conformal_quantile
from regmix.report_text import weights_table
from regmix.sample import METHODS
from regmix.space import load_space
from regmix.trust import compare_optima, warn_if_far_from_runs
from regmix.weights import tidy_weights


def register(sub) -> None:
    p = command_parser(
        sub, "optimize", "Find the mixture a fitted model predicts best, inside bounds and repetition caps.",
        "regmix optimize --model models/pile_cc --space space.yaml --samples 1000000 --top-k 100 --out mixture.json",
    )
    p.add_argument("--model", required=True, help="directory written by `regmix fit`")
    p.add_argument("--space", help="YAML: prior, bounds {domain: [lo, hi]}, max_epochs, token_budget, tokens")
    add_cap_flags(p)
    p.add_argument("--samples", type=int, default=OptimizeConfig.samples, help="simulated candidate mixtures to score")
    p.add_argument("--top-k", type=int, default=OptimizeConfig.top_k, help="average the k best candidates (RegMix)")
    p.add_argument("--method", choices=["topk", "refine"], default=OptimizeConfig.method,
                   help="topk: mean of the k best; refine: then resample around it for several rounds")
    p.add_argument("--sampler", choices=METHODS, default=OptimizeConfig.sampler, help="how candidates are drawn")
    p.add_argument("--kl", type=float, default=0.0, dest="kl_strength",
                   help="penalty strength on KL(mixture || prior): keeps the answer near the runs")
    p.add_argument("--target-weights", type=float, nargs="+", help="one weight per target of the model")
    p.add_argument("--constrain", action="append", default=[], metavar="TARGET<=BOUND",
                   help="bound another target's prediction (repeatable; the model must be fitted on that target too): "
                   "'TARGET<=natural+0.02' (at most 0.02 above its prediction at the prior, the natural mixture), "
                   "'TARGET<=natural*1.01' or 'TARGET<=4.1'; the objective is set by --target-weights, "
                   "and the answer says which constraints bind")
    p.add_argument("--seed", type=int, default=OptimizeConfig.seed, help="seed of the candidates")
    p.add_argument("--interval", type=float, default=OptimizeConfig.interval, metavar="LEVEL",
                   help="coverage of the conformal interval reported for each target at the answer")
    p.add_argument("--compare", nargs="+", metavar="MODEL_DIR",
                   help="other fitted models of the same sweep (e.g. `regmix fit --model lightgbm`): optimize with each "
                   "under the same space and seed, show the optima side by side and warn where they disagree")
    p.add_argument("--out", required=True, help="mixture.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def check_numbers(args) -> None:
    """Flags that must be finite (and positive where a count or a budget): one line, before any work."""
    if not math.isfinite(args.kl_strength) or args.kl_strength < 0:
        raise RegmixError(f"--kl must be a finite number >= 0, got {args.kl_strength}")
    if args.target_weights and not all(math.isfinite(v) and v >= 0 for v in args.target_weights):
        raise RegmixError(f"--target-weights must be finite numbers >= 0, got {args.target_weights}"[:200])
    check_cap_numbers(args)
    conformal_quantile([0.0], args.interval)
    for flag, value in (("--samples", args.samples), ("--top-k", args.top_k)):
        if value < 1:
            raise RegmixError(f"{flag} must be at least 1, got {value}")


def compare(args, model: FittedModel, result, others: dict, space, config) -> dict:
    """The optima of other regressors of the same sweep, beside this one's; warns where they disagree."""
    optima = {f"{model.kind} ({args.model})": result.weights_K}
    for directory, other in others.items():
        if tuple(other.domains) != tuple(model.domains):
            raise RegmixError(f"{directory}: fitted on domains {', '.join(other.domains)[:120]}, not those of {args.model}")
        optima[f"{other.kind} ({directory})"] = optimize(other, space, config, progress=False).weights_K
    names = list(optima)
    print("optima of the compared regressors:")
    print(f"  {'domain':<24}" + "".join(f"{n.split(' ')[0]:>12}" for n in names))
    for j, d in enumerate(model.domains):
        print(f"  {d[:24]:<24}" + "".join(f"{optima[n][j]:>12.4f}" for n in names))
    distances, worst, pair = compare_optima(optima)
    print(f"largest total-variation distance between optima: {worst:.3f} ({pair[0]} vs {pair[1]})")
    return {"optima": {n: dict(zip(model.domains, map(float, tidy_weights(w)))) for n, w in optima.items()},
            "largest_distance": round(worst, 6), "pair": list(pair)}


def run(args) -> int:
    check_out(args.out, "file")
    check_numbers(args)
    model = FittedModel.load(args.model)
    caps = {"token_budget": args.token_budget, "tokens": args.tokens, "max_epochs": args.max_epochs}
    given = args.space or any(v is not None for v in caps.values())
    space = load_space(args.space, list(model.domains), model.prior_K, **caps) if given else None
    config = OptimizeConfig(
        samples=args.samples, top_k=args.top_k, method=args.method, sampler=args.sampler,
        kl_strength=args.kl_strength, seed=args.seed, interval=args.interval, constraints=tuple(args.constrain),
        target_weights=tuple(args.target_weights) if args.target_weights else None,
    )
    others = {d: FittedModel.load(d) for d in args.compare or []}  # every model loads before any work
    result = optimize(model, space, config, progress=not args.no_progress)
    runs = Path(args.model) / "cv_predictions.csv"  # the fitted sweep's measured targets
    if runs.exists():
        table = pd.read_csv(runs)
        if all(t in table.columns for t in result.targets):
            warn_if_worse_than_runs(result, table.iloc[:, 0].astype(str).tolist(), table[result.targets].to_numpy())
    data = result.to_json()
    if model.runs_NxK is not None:
        data["trust"] = warn_if_far_from_runs(result.weights_K, model.runs_NxK, model.run_ids, model.domains)
    if others:
        data["compare"] = compare(args, model, result, others, space, config)
    data["model"] = str(args.model)
    if args.space:
        data["space"] = str(args.space)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(data, indent=2) + "\n")
    print(weights_table(data["weights"], data["prior"]))
    for t in result.targets:
        u = data["uncertainty"][t]
        span = data["interval"]
        line = f"predicted {t}: {data['predicted'][t]:.4f} (fold models {u['fold_mean']:.4f} +- {u['fold_std']:.4f})"
        if span:
            line += f"; {span['level']:.0%} interval [{span[t]['lower']:.4f}, {span[t]['upper']:.4f}]"
        print(line)
    for c in data["constraints"]:
        state = "binds" if c["binds"] else "does not bind"
        print(f"constraint {c['constraint']}: bound {c['bound']:.4f}, predicted {c['predicted']:.4f} "
              f"(slack {c['slack']:.4f}; unconstrained {c['unconstrained']:.4f}): {state}")
    print(f"{result.candidates:,} candidates scored in {result.seconds:.1f}s; mixture written to {out}")
    return 0
