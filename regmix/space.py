"""The mixture space: domains, the natural prior, per-domain bounds and repetition (epoch) caps.

A mixture `w_K` is feasible when it lies on the simplex and `lower_K <= w_K <= upper_K`, where the
effective upper bound folds in the repetition cap: a domain with `tokens_k` tokens may be seen at
most `max_epochs_k` times in a run of `token_budget` tokens, so `w_k <= max_epochs_k * tokens_k /
token_budget`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regmix.config import load_yaml, from_dict
from regmix.errors import RegmixError
from regmix.export.inputs import read_token_counts

FEASIBILITY_TOL = 1e-9


@dataclass(frozen=True)
class SpaceFile:
    """The YAML form of a space (`regmix optimize --space SPACE.yaml`); every key is optional."""

    domains: list[str] | None = None
    prior: dict[str, float] | None = None
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_epochs: float | dict[str, float] | None = None
    token_budget: float | None = None
    tokens: dict[str, float] | str | None = None  # counts, or a token store / counts file (next to the space file)
    constraints: list[str] = field(default_factory=list)  # bounds on other targets, as `optimize --constrain` takes


@dataclass(frozen=True, eq=False)
class MixtureSpace:
    domains: tuple[str, ...]
    prior_K: np.ndarray
    lower_K: np.ndarray
    upper_K: np.ndarray
    max_epochs_K: np.ndarray | None = None
    token_budget: float | None = None
    tokens_K: np.ndarray | None = None
    constraints: tuple[str, ...] = ()  # 'TARGET<=natural+0.02' and the like, checked against the model by optimize

    def __post_init__(self):
        k = len(self.domains)
        if k == 0:
            raise RegmixError("mixture space: no domains")
        if len(set(self.domains)) != k:
            dup = next(d for d in self.domains if self.domains.count(d) > 1)
            raise RegmixError(f"mixture space: domain '{dup}' appears twice")
        for name in ("prior_K", "lower_K", "upper_K", "max_epochs_K", "tokens_K"):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, dtype=np.float64)
            if value.shape != (k,):
                raise RegmixError(f"mixture space: {name[:-2]} has {value.size} values for {k} domains")
            finite = np.isfinite(value) | (name == "max_epochs_K")
            if np.any(np.isnan(value)) or not np.all(finite) or np.any(value < 0):
                raise RegmixError(f"mixture space: {name[:-2]} must be finite and >= 0")
            object.__setattr__(self, name, value)
        if (self.max_epochs_K is None) != (self.token_budget is None) or (
            self.max_epochs_K is not None and self.tokens_K is None
        ):
            raise RegmixError("mixture space: repetition caps need max_epochs, token_budget and tokens together")
        if self.token_budget is not None and not self.token_budget > 0:
            raise RegmixError("mixture space: token_budget must be > 0")
        total = self.prior_K.sum()
        if not total > 0:
            raise RegmixError("mixture space: prior sums to 0")
        object.__setattr__(self, "prior_K", self.prior_K / total)
        bad = np.flatnonzero(self.lower_K > self.upper_K + FEASIBILITY_TOL)
        if bad.size:
            d = self.domains[bad[0]]
            raise RegmixError(f"mixture space: bounds of '{d}' are empty (lower {self.lower_K[bad[0]]} > upper {self.upper_K[bad[0]]})")
        hi = self.effective_upper_K
        if self.lower_K.sum() > 1 + 1e-9:
            raise RegmixError(f"mixture space: lower bounds sum to {self.lower_K.sum():.4g} > 1, no feasible mixture")
        if hi.sum() < 1 - 1e-9:
            if self.upper_K.sum() < 1 - 1e-9:
                raise RegmixError(f"mixture space: upper bounds sum to {self.upper_K.sum():.4g} < 1, no feasible mixture")
            raise RegmixError(
                f"mixture space: repetition caps (max_epochs x tokens / token_budget) and upper bounds sum to "
                f"{hi.sum():.4g} < 1, no feasible mixture: {self.tokens_K.sum():.4g} tokens at "
                f"{_few_epochs(self.max_epochs_K)} epoch(s) cannot fill a budget of {self.token_budget:.4g}; "
                "raise max_epochs or lower the token budget")
        cap_bad = np.flatnonzero(self.lower_K > hi + FEASIBILITY_TOL)
        if cap_bad.size:
            d = self.domains[cap_bad[0]]
            raise RegmixError(f"mixture space: lower bound of '{d}' exceeds its repetition cap {hi[cap_bad[0]]:.4g}")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_prior(
        cls,
        domains,
        prior,
        lower=None,
        upper=None,
        max_epochs=None,
        token_budget: float | None = None,
        tokens=None,
    ) -> "MixtureSpace":
        k = len(domains)
        broadcast = lambda v, d: None if v is None else np.broadcast_to(np.asarray(v, np.float64), (k,)).copy()
        return cls(
            domains=tuple(domains),
            prior_K=np.asarray(prior, np.float64),
            lower_K=np.zeros(k) if lower is None else broadcast(lower, 0.0),
            upper_K=np.ones(k) if upper is None else broadcast(upper, 1.0),
            max_epochs_K=broadcast(max_epochs, None),
            token_budget=token_budget,
            tokens_K=None if tokens is None else np.asarray(tokens, np.float64),
        )

    @classmethod
    def from_token_counts(cls, tokens: dict[str, float], **kwargs) -> "MixtureSpace":
        """Natural mixture: token shares of the domains."""
        domains = list(tokens)
        counts = np.array([tokens[d] for d in domains], np.float64)
        return cls.from_prior(domains, counts, tokens=counts if "max_epochs" in kwargs else None, **kwargs)

    # -- derived -----------------------------------------------------------------------------------
    @property
    def k(self) -> int:
        return len(self.domains)

    @property
    def cap_K(self) -> np.ndarray:
        """Largest weight per domain allowed by the repetition cap (1 where there is none)."""
        if self.max_epochs_K is None:
            return np.ones(self.k)
        return np.minimum(1.0, self.max_epochs_K * self.tokens_K / self.token_budget)

    @property
    def effective_upper_K(self) -> np.ndarray:
        return np.minimum(self.upper_K, self.cap_K)

    def feasible_N(self, w_NxK: np.ndarray, tol: float = 1e-6) -> np.ndarray:
        """Boolean per row: on the simplex (within tol) and inside bounds and caps."""
        w_NxK = np.atleast_2d(w_NxK)
        return (
            (np.abs(w_NxK.sum(axis=1) - 1.0) <= tol)
            & np.all(w_NxK >= self.lower_K - tol, axis=1)
            & np.all(w_NxK <= self.effective_upper_K + tol, axis=1)
        )

    def project(self, w_K: np.ndarray) -> np.ndarray:
        """Euclidean projection onto {sum w = 1, lower <= w <= effective upper} (bisection on the shift)."""
        lo, hi = self.lower_K, self.effective_upper_K
        w_K = np.asarray(w_K, np.float64)
        a, b = float(np.min(w_K - hi)), float(np.max(w_K - lo))
        for _ in range(200):
            tau = 0.5 * (a + b)
            if np.clip(w_K - tau, lo, hi).sum() > 1.0:
                a = tau
            else:
                b = tau
        out = np.clip(w_K - 0.5 * (a + b), lo, hi)
        # Spread the last rounding residue over coordinates with room, keeping bounds exact.
        resid = 1.0 - out.sum()
        room = (hi - out) if resid > 0 else (out - lo)
        if room.sum() > 0:
            out = out + resid * room / room.sum()
        return out

    def with_domains(self, domains) -> "MixtureSpace":
        """The same space with domains reordered (names must match exactly)."""
        missing = [d for d in domains if d not in self.domains]
        if missing or len(domains) != self.k:
            extra = [d for d in self.domains if d not in domains]
            raise RegmixError(f"mixture space: domains differ (missing {missing or '-'}, extra {extra or '-'})")
        idx = np.array([self.domains.index(d) for d in domains])
        pick = lambda v: None if v is None else v[idx]
        return dataclasses.replace(
            self,
            domains=tuple(domains),
            prior_K=self.prior_K[idx],
            lower_K=self.lower_K[idx],
            upper_K=self.upper_K[idx],
            max_epochs_K=pick(self.max_epochs_K),
            tokens_K=pick(self.tokens_K),
        )

    def to_dict(self) -> dict:
        out = {
            "domains": list(self.domains),
            "prior": dict(zip(self.domains, self.prior_K.tolist())),
            "bounds": {d: [float(l), float(u)] for d, l, u in zip(self.domains, self.lower_K, self.upper_K)},
        }
        if self.max_epochs_K is not None:
            out["max_epochs"] = dict(zip(self.domains, self.max_epochs_K.tolist()))
            out["token_budget"] = self.token_budget
            out["tokens"] = dict(zip(self.domains, self.tokens_K.tolist()))
        return out


def _few_epochs(max_epochs_K: np.ndarray) -> str:
    values = np.unique(max_epochs_K)
    return f"{values[0]:g}" if len(values) == 1 else f"{values.min():g}-{values.max():g}"


def _partial_prior(given: dict, domains: list[str], prior_K, where: str, per_domain) -> np.ndarray:
    """The listed shares as given; the domains left out share the rest in the runs' proportions."""
    prior = per_domain(given, "prior", 0.0)
    rest = [i for i, d in enumerate(domains) if d not in given]
    if not rest:
        return prior
    if prior_K is None:
        raise RegmixError(f"{where}: prior: no share for {', '.join(domains[i] for i in rest[:5])}: list every domain")
    left = 1.0 - prior.sum()
    base = np.asarray(prior_K, np.float64)[rest]
    if left <= 0 or base.sum() <= 0:
        raise RegmixError(f"{where}: prior: the listed shares sum to {prior.sum():.4g}, leaving nothing for the "
                          f"{len(rest)} unlisted domain(s) ({', '.join(domains[i] for i in rest[:5])})")
    prior[rest] = left * base / base.sum()
    return prior


def load_space(path: str | Path, domains: list[str], prior_K: np.ndarray | None = None, **overrides) -> MixtureSpace:
    """Read a space YAML for a model that knows `domains`; keys it leaves out come from the model.
    `overrides` (token_budget, tokens, max_epochs: the CLI's flags) replace the file's keys."""
    where = str(path) if path is not None else "space"
    spec = from_dict(SpaceFile, load_yaml(path) if path is not None else {}, where=where)
    spec = dataclasses.replace(spec, **{k: v for k, v in overrides.items() if v is not None})
    if isinstance(spec.tokens, str):
        folder = Path(path).parent if path is not None else Path(".")
        name = spec.tokens if Path(spec.tokens).exists() else folder / spec.tokens
        spec = dataclasses.replace(spec, tokens=read_token_counts(name))
    return space_from_spec(spec, domains, prior_K, where)


def space_from_spec(spec: SpaceFile, domains: list[str], prior_K: np.ndarray | None, where: str) -> MixtureSpace:
    if spec.domains is not None and sorted(spec.domains) != sorted(domains):
        missing = sorted(set(domains) - set(spec.domains))
        extra = sorted(set(spec.domains) - set(domains))
        raise RegmixError(f"{where}: domains differ from the model's (missing {missing or '-'}, unknown {extra or '-'})")

    def per_domain(mapping, key, default):
        values = np.full(len(domains), default, dtype=np.float64)
        for name, value in (mapping or {}).items():
            if name not in domains:
                raise RegmixError(f"{where}: {key}.{name}: unknown domain (known: {', '.join(domains)})")
            values[domains.index(name)] = value
        return values

    if spec.prior is not None:
        prior = _partial_prior(spec.prior, domains, prior_K, where, per_domain)
    elif prior_K is not None:
        prior = np.asarray(prior_K, np.float64)
    else:
        prior = np.ones(len(domains))
    lower = np.zeros(len(domains))
    upper = np.ones(len(domains))
    for name, (lo, hi) in spec.bounds.items():
        if name not in domains:
            raise RegmixError(f"{where}: bounds.{name}: unknown domain (known: {', '.join(domains)})")
        if not (0.0 <= lo <= hi <= 1.0):
            raise RegmixError(f"{where}: bounds.{name}: need 0 <= lower <= upper <= 1, got [{lo}, {hi}]")
        lower[domains.index(name)], upper[domains.index(name)] = lo, hi
    max_epochs = tokens = None
    if spec.max_epochs is not None or spec.token_budget is not None or spec.tokens is not None:
        if spec.max_epochs is None or spec.token_budget is None or spec.tokens is None:
            raise RegmixError(f"{where}: repetition caps need max_epochs, token_budget and tokens together")
        missing = [d for d in domains if d not in spec.tokens]
        if missing:
            raise RegmixError(f"{where}: tokens: no count for domain '{missing[0]}'")
        tokens = per_domain(spec.tokens, "tokens", 0.0)
        if isinstance(spec.max_epochs, dict):
            max_epochs = per_domain(spec.max_epochs, "max_epochs", np.inf)
        else:
            max_epochs = np.full(len(domains), float(spec.max_epochs))
    try:
        space = MixtureSpace.from_prior(domains, prior, lower, upper, max_epochs, spec.token_budget, tokens)
        return dataclasses.replace(space, constraints=tuple(spec.constraints))
    except RegmixError as err:
        raise RegmixError(f"{where}: {str(err).removeprefix('mixture space: ')}") from None
