"""`regmix suggest`: the next mixtures to train, by expected improvement, a D-optimal design, or both."""

from __future__ import annotations

import numpy as np
import pandas as pd

from regmix.cli import add_cap_flags, check_cap_numbers, command_parser
from regmix.errors import RegmixError
from regmix.files import check_out, usable_cores
from regmix.optimize import _target_weights
from regmix.regress.acquire import DESIGNS, EI_SHARE, STRATEGIES, choose
from regmix.regress.fit import FittedModel
from regmix.sample import METHODS, sample_mixtures
from regmix.space import MixtureSpace, load_space
from regmix.weights import tidy_weights
from regmix.tables import write_table


def register(sub) -> None:
    p = command_parser(
        sub, "suggest", "Propose the next mixtures to train: expected improvement on the fitted model, "
        "spread over a batch (kriging believer for the GP, a minimum distance for other models); or a D-optimal "
        "design for a log-linear law that builds on the trained runs; or a share of each.",
        "regmix suggest --model models/pile_cc --n 16 --seed 0 --out next.csv   # then: regmix sweep --mixtures next.csv\n"
        "  regmix suggest --model models/pile_cc --n 16 --strategy mixed --out next.csv",
    )
    p.add_argument("--model", required=True, help="directory written by `regmix fit`")
    p.add_argument("--n", type=int, required=True, help="mixtures to propose")
    p.add_argument("--space", help="YAML: prior, bounds {domain: [lo, hi]}, max_epochs, token_budget, tokens")
    add_cap_flags(p)
    p.add_argument("--samples", type=int, default=100_000, help="candidate mixtures drawn (as optimize draws them)")
    p.add_argument("--sampler", choices=METHODS, default="regmix", help="how candidates are drawn")
    p.add_argument("--target-weights", type=float, nargs="+", help="one weight per target of the model")
    p.add_argument("--strategy", choices=STRATEGIES, default="ei",
                   help="ei: expected improvement near the predicted optimum; doptimal: the candidates that most raise "
                   "log det of a log-linear law's information matrix (the trained runs included), which spreads runs "
                   "to learn the law everywhere; mixed: the first --ei-share of the batch by ei, the rest doptimal")
    p.add_argument("--ei-share", type=float, default=EI_SHARE,
                   help="with --strategy mixed: the share of the batch chosen by ei (at least one mixture)")
    p.add_argument("--design-features", choices=DESIGNS, default=DESIGNS[0],
                   help="the D-optimal design's features: log-weights, an intercept and log(w + 0.001) (the law's "
                   "power-law form; its runs rank best on the RegMix table), or weights (the law regmix fits, "
                   "c + exp(b + t . w))")
    p.add_argument("--explore", type=float, default=0.0,
                   help="share of the batch placed where the GP is least sure (largest posterior variance) instead "
                   "of by expected improvement: better rankings everywhere, slower to the optimum")
    p.add_argument("--prefix", default="next", help="run id prefix of the proposed mixtures")
    p.add_argument("--seed", type=int, default=0, help="seed of the candidates")
    p.add_argument("--out", required=True, help="mixtures table (CSV/parquet): `run`, then one weight column per domain")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    check_out(args.out, "file")
    check_cap_numbers(args)
    if args.n < 1 or args.samples < args.n:
        raise RegmixError(f"--n must be >= 1 and at most --samples ({args.samples}), got {args.n}")
    model = FittedModel.load(args.model)
    caps = {"token_budget": args.token_budget, "tokens": args.tokens, "max_epochs": args.max_epochs}
    given = args.space or any(v is not None for v in caps.values())
    space = load_space(args.space, list(model.domains), model.prior_K, **caps) if given else None
    space = (space or MixtureSpace.from_prior(list(model.domains), model.prior_K)).with_domains(list(model.domains))
    weights_T = _target_weights(model, args.target_weights)
    rng = np.random.default_rng(args.seed)
    cand = sample_mixtures(space, args.samples, rng, args.sampler, threads=usable_cores(), allow_fewer=True,
                           progress=not args.no_progress)
    best = measured_best(args.model, model, weights_T)
    picked = choose(model.full, model.folds, weights_T, cand, args.n, best, args.explore, args.seed,
                    args.strategy, model.runs_NxK, args.design_features, args.ei_share)
    w = tidy_weights(cand[picked])
    frame = pd.DataFrame(w, columns=list(model.columns))
    width = len(str(len(frame) - 1))
    frame.insert(0, "run", [f"{args.prefix}{i:0{width}d}" for i in range(len(frame))])
    write_table(frame, args.out)
    pred = model.predict(cand[picked]) @ weights_T
    print(f"{len(frame)} mixtures proposed ({args.strategy}) from {len(cand):,} candidates (predicted {pred.min():.4f} to {pred.max():.4f}; "
          f"best measured {best:.4f})" if best is not None else f"{len(frame)} mixtures proposed ({args.strategy}) from {len(cand):,} candidates")
    print(f"written to {args.out}")
    return 0


def measured_best(directory, model: FittedModel, weights_T: np.ndarray) -> float | None:
    """The best measured objective of the fitted sweep (its cv_predictions.csv), if there."""
    from pathlib import Path

    path = Path(directory) / "cv_predictions.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path)
    if not all(t in table.columns for t in model.targets):
        return None
    values = table[model.targets].to_numpy(np.float64) @ weights_T
    return float(np.nanmin(values)) if np.isfinite(values).any() else None
