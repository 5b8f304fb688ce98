"""What an export is made from: a mixture, an optional end-of-training schedule, a token budget."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from regmix.config import parse_yaml
from regmix.errors import RegmixError


@dataclass(frozen=True)
class Mixture:
    """Domain weights on the simplex, with the column each domain had in the sweep table."""

    weights: dict[str, float]
    columns: dict[str, str] = field(default_factory=dict)  # domain -> raw column (e.g. train_the_pile_arxiv)

    def __post_init__(self):  # numpy scalars from a notebook become floats; the weights are checked once
        object.__setattr__(self, "weights", checked_weights(self.weights, "mixture"))

    def column(self, domain: str) -> str:
        return self.columns.get(domain, domain)


@dataclass(frozen=True)
class Schedule:
    """Train on the base mixture, then on `late` for the last `fraction` of `total_steps` (Blakeney et al.)."""

    late: dict[str, float]
    fraction: float
    total_steps: int

    def __post_init__(self):
        object.__setattr__(self, "late", checked_weights(self.late, "late mixture"))
        if not 0 < self.fraction < 1:
            raise RegmixError(f"--late-fraction must be in (0, 1), got {self.fraction:g}")
        if self.total_steps < 2:
            raise RegmixError(f"--steps must be at least 2, got {self.total_steps}")
        if not 0 < self.switch_step < self.total_steps:
            raise RegmixError(f"--late-fraction {self.fraction:g} of {self.total_steps} steps leaves no step for a phase")

    @property
    def switch_step(self) -> int:
        """The first (0-based) step trained on the late mixture."""
        return round((1 - self.fraction) * self.total_steps)

    def overall(self, base: dict[str, float]) -> dict[str, float]:
        """The share of all the run's tokens each domain gets over both phases."""
        f = self.fraction
        return {d: (1 - f) * base.get(d, 0.0) + f * self.late.get(d, 0.0) for d in {**base, **self.late}}


@dataclass(frozen=True)
class Budget:
    """A run's token budget and the tokens available per domain, for epochs and repetition checks."""

    token_budget: float
    tokens: dict[str, float] | None = None  # None: counts unknown, so no epochs
    max_epochs: float | None = None

    def __post_init__(self):
        if not math.isfinite(self.token_budget) or self.token_budget <= 0:
            raise RegmixError(f"--token-budget must be a finite number > 0, got {self.token_budget:g}")
        if self.max_epochs is not None and not (math.isfinite(self.max_epochs) and self.max_epochs > 0):
            raise RegmixError(f"--max-epochs must be a finite number > 0, got {self.max_epochs:g}")

    def plan(self, weights: dict[str, float]) -> dict[str, dict[str, float]]:
        if self.tokens is None:
            raise RegmixError("token counts: give --tokens (a token store or a {domain: tokens} file)")
        missing = [d for d, w in weights.items() if w > 0 and d not in self.tokens]
        if missing:
            raise RegmixError(f"token counts: no count for domain '{missing[0]}' (counts for: {_few(self.tokens)})")
        out = {}
        for d, w in weights.items():
            used = w * self.token_budget
            avail = self.tokens.get(d, 0.0)
            epochs = used / avail if avail > 0 else (0.0 if used == 0 else math.inf)
            out[d] = {"weight": w, "tokens": used, "available_tokens": avail, "epochs": epochs}
        return out

    def over_cap(self, weights: dict[str, float]) -> list[str]:
        if self.max_epochs is None or self.tokens is None:
            return []
        return [d for d, row in self.plan(weights).items() if self.exceeds(row["epochs"])]

    def exceeds(self, epochs: float) -> bool:
        """Whether `epochs` repetitions break the cap (none without a cap)."""
        return self.max_epochs is not None and epochs > self.max_epochs * (1 + 1e-9)


def read_mixture(path: str | Path, flag: str = "mixture") -> Mixture:
    """A mixture.json written by `regmix optimize` (or a plain {domain: weight} file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegmixError(f"{flag} {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RegmixError(f"{flag} {path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise RegmixError(f"{flag} {path}: not valid JSON ({err})") from None
    weights = data.get("weights", data) if isinstance(data, dict) else None
    columns = data.get("columns", {}) if isinstance(data, dict) and "weights" in data else {}
    if not isinstance(columns, dict) or not all(isinstance(c, str) and c for c in columns.values()):
        raise RegmixError(f"{path}: columns: expected a mapping of domain to column name")
    weights = checked_weights(weights, str(path))
    return Mixture(weights, {d: c for d, c in columns.items() if d in weights})


def checked_weights(weights, where: str) -> dict[str, float]:
    """{domain: weight} with non-negative finite weights summing to 1 within 1e-2, renormalised."""
    if not isinstance(weights, dict) or not weights:
        raise RegmixError(f"{where}: expected a 'weights' mapping of domain to weight")
    out = {}
    for d, w in weights.items():
        if not isinstance(d, str) or not d.strip():
            raise RegmixError(f"{where}: weights: domain names must be non-empty strings, got {d!r}")
        try:
            value = float(w) if not isinstance(w, (bool, str)) else math.nan
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise RegmixError(f"{where}: weights.{d}: expected a non-negative number, got {w!r}")
        out[d] = value
    total = sum(out.values())
    if abs(total - 1.0) > 1e-2:
        raise RegmixError(f"{where}: weights sum to {total:.6g}, not 1")
    return {d: w / total for d, w in out.items()}


def read_token_counts(path: str | Path) -> dict[str, float]:
    """Tokens per domain from a token store (its folder or meta.json), or a JSON/YAML {domain: tokens}."""
    path = Path(path)
    if path.is_dir():
        path = path / "meta.json"
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegmixError(f"--tokens {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RegmixError(f"--tokens {path}: cannot read: {err}") from None
    except Exception as err:  # PyYAML's errors (and its constructors' ValueErrors) on malformed text
        raise RegmixError(f"--tokens {path}: cannot parse: {str(err).splitlines()[0] if str(err) else err!r}") from None
    if isinstance(data, dict) and isinstance(data.get("domains"), dict):
        data = {d: v.get("train_tokens") if isinstance(v, dict) else v for d, v in data["domains"].items()}
    if not isinstance(data, dict):
        raise RegmixError(f"--tokens {path}: expected a mapping of domain to token count")
    out = {}
    for d, v in data.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise RegmixError(f"--tokens {path}: {d}: expected a token count, got {v!r}")
        out[str(d)] = float(v)
    return out


def plan_table(weights: dict[str, float], budget: Budget) -> str:
    """A plain-text table of weight, tokens and epochs per domain."""
    rows = budget.plan(weights)
    width = max(len("domain"), *(len(d) for d in rows))
    lines = [f"{'domain':<{width}}  {'weight':>8}  {'tokens':>12}  {'available':>12}  {'epochs':>7}"]
    for d, r in rows.items():
        flag = "  over cap" if budget.exceeds(r["epochs"]) else ""
        lines.append(
            f"{d:<{width}}  {r['weight']:8.4f}  {r['tokens']:12.4g}  {r['available_tokens']:12.4g}  {r['epochs']:7.2f}{flag}"
        )
    return "\n".join(lines)


def _few(names, n: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "") if names else "none"


@dataclass(frozen=True)
class ExportOptions:
    """The knobs of `regmix export` beyond the mixture; each format reads the ones it has a field for."""

    path_template: str | None = None
    """Data path per domain, with `{domain}`; default: the format's own layout."""
    budget: Budget | None = None
    """Token budget and tokens per domain: requested tokens and repetition caps where a format has them."""
    schedule: Schedule | None = None
    """Late mixture for the end of training; schedule formats write it natively, others one file per phase."""
    seed: int = 0
    """Data-order seed, written where the consumer has one (hf, olmo, nanotron, lit-gpt)."""
    stopping_strategy: str = "first_exhausted"
    """hf: `interleave_datasets`' stopping strategy; the default always terminates."""
    global_batch_size: int | None = None
    """Sequences per optimizer step (olmo: times `sequence_length` gives its token batch; levanter: block check)."""
    sequence_length: int | None = None
    """Tokens per sequence (olmo)."""

    def overall(self, weights: dict[str, float]) -> dict[str, float]:
        """Each domain's share of the whole run: the mixture itself, or both phases of the schedule."""
        return self.schedule.overall(weights) if self.schedule is not None else weights


@dataclass(frozen=True)
class Phase:
    """One stretch of training at one mixture: the whole run, or the base or late phase of a schedule."""

    name: str  # "" for a static export
    weights: dict[str, float]
    start_step: int = 0  # 0-based
    tokens: float | None = None  # the phase's share of the token budget
