"""`regmix sample`: write sampled mixtures as a mixtures table any trainer can train from."""

from __future__ import annotations

import numpy as np
import pandas as pd

from regmix.cli import add_cap_flags, check_cap_numbers, command_parser
from regmix.config import load_yaml
from regmix.errors import RegmixError
from regmix.export import read_token_counts
from regmix.sample import METHODS, sample_mixtures
from regmix.space import load_space
from regmix.weights import tidy_weights
from regmix.tables import write_table
from regmix.files import check_out


def register(sub) -> None:
    p = command_parser(
        sub, "sample", "Sample feasible mixtures into a table (run, one weight per domain) to train proxies from.",
        "regmix sample --domains web,code,books --n 64 --seed 0 --out candidates.csv",
    )
    p.add_argument("--space", help="YAML: domains, prior, bounds {domain: [lo, hi]}, max_epochs, token_budget, tokens")
    p.add_argument("--domains", help="comma-separated domain names (default: the space file's, or the --tokens store's)")
    p.add_argument("--n", type=int, required=True, help="mixtures to sample")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw; the same seed writes the same file")
    p.add_argument("--method", choices=METHODS, default="regmix", help="sampler")
    add_cap_flags(p)
    p.add_argument("--out", required=True, help="CSV or parquet: `run`, then one weight column per domain")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def space_domains(args) -> list[str]:
    """Domains from --domains, else from the space file (its `domains:`, else the keys it names), else from
    --tokens (a token store's domains)."""
    if args.domains:
        names = [d.strip() for d in args.domains.split(",") if d.strip()]
        if not names:
            raise RegmixError("--domains: no domain names")
        return names
    if not args.space and args.tokens:  # a token store (or counts file) names its domains
        return list(read_token_counts(args.tokens))
    if not args.space:
        raise RegmixError("give --domains a,b,c, --space SPACE.yaml or --tokens STORE")
    data = load_yaml(args.space) or {}
    if isinstance(data, dict) and data.get("domains"):
        return [str(d) for d in data["domains"]]
    keys = next((data[k] for k in ("prior", "tokens", "bounds") if isinstance(data, dict) and isinstance(data.get(k), dict)), None)
    if not keys:
        raise RegmixError(f"{args.space}: no domains: list them under `domains:` or pass --domains")
    return [str(d) for d in keys]


def run(args) -> int:
    check_out(args.out, "file")
    if args.n < 1:
        raise RegmixError(f"--n must be >= 1, got {args.n}")
    check_cap_numbers(args)
    domains = space_domains(args)
    caps = {"token_budget": args.token_budget, "max_epochs": args.max_epochs}
    caps["tokens"] = args.tokens if any(v is not None for v in caps.values()) else None  # else: only the domains
    space = load_space(args.space, domains, None, **caps)
    w = sample_mixtures(space, args.n, np.random.default_rng(args.seed), args.method, allow_fewer=True,
                        progress=not args.no_progress)
    frame = pd.DataFrame(tidy_weights(w), columns=list(space.domains))
    width = len(str(len(frame) - 1))
    frame.insert(0, "run", [f"mix{i:0{width}d}" for i in range(len(frame))])
    write_table(frame, args.out)
    print(f"{len(frame):,} mixtures of {space.k} domains ({args.method} sampler, seed {args.seed}) written to {args.out}")
    return 0
