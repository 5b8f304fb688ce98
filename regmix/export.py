"""Write a mixture in the formats trainers read.

- `json`: the weights (and, given a token budget, tokens and epochs per domain).
- `lit-gpt`: RegMix/lit-gpt YAML, a `train:` block of `train_<domain>: weight` (RegMix config_1b).
- `megatron`: a Megatron-LM `--data-path` blend string: weight and path pairs.
- `hf`: JSON for `datasets.interleave_datasets(datasets, probabilities=...)`.
- `olmo`: an OLMo-core / olmix source-mixture YAML (`source_name`, `target_ratio`, repetition cap).
- `mosaic`: MosaicML Streaming / llm-foundry `streams` with `proportion`.
Paths are templates over `{domain}` so the output drops into an existing data layout.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from regmix.errors import RegmixError

FORMATS = ("json", "lit-gpt", "megatron", "hf", "olmo", "mosaic")
DEFAULT_PATHS = {
    "megatron": "/data/{domain}_text_document",
    "olmo": "/data/{domain}/*.npy",
    "mosaic": "/data/{domain}",
    "hf": "{domain}",
}


@dataclass(frozen=True)
class Budget:
    """A run's token budget and the tokens available per domain, for epochs and repetition checks."""

    token_budget: float
    tokens: dict[str, float]
    max_epochs: float | None = None

    def plan(self, weights: dict[str, float]) -> dict[str, dict[str, float]]:
        missing = [d for d, w in weights.items() if w > 0 and d not in self.tokens]
        if missing:
            raise RegmixError(f"token counts: no count for domain '{missing[0]}'")
        out = {}
        for d, w in weights.items():
            used = w * self.token_budget
            avail = self.tokens.get(d, 0.0)
            epochs = used / avail if avail > 0 else (0.0 if used == 0 else math.inf)
            out[d] = {"weight": w, "tokens": used, "available_tokens": avail, "epochs": epochs}
        return out

    def over_cap(self, weights: dict[str, float]) -> list[str]:
        if self.max_epochs is None:
            return []
        return [d for d, row in self.plan(weights).items() if row["epochs"] > self.max_epochs * (1 + 1e-9)]


def read_mixture(path: str | Path) -> dict[str, float]:
    """Weights from a mixture.json written by `regmix optimize` (or a plain {domain: weight})."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RegmixError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RegmixError(f"{path}: not valid JSON ({err})") from None
    weights = data.get("weights", data) if isinstance(data, dict) else None
    if not isinstance(weights, dict) or not weights:
        raise RegmixError(f"{path}: expected a 'weights' mapping of domain to weight")
    out = {}
    for d, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise RegmixError(f"{path}: weights.{d}: expected a non-negative number, got {w!r}")
        out[str(d)] = float(w)
    total = sum(out.values())
    if abs(total - 1.0) > 1e-2:
        raise RegmixError(f"{path}: weights sum to {total:.6g}, not 1")
    return {d: w / total for d, w in out.items()}


def render(weights: dict[str, float], fmt: str, path_template: str | None = None, budget: Budget | None = None,
           prefix: str = "train_") -> str:
    """The mixture as text in format `fmt`."""
    if fmt not in FORMATS:
        raise RegmixError(f"unknown export format '{fmt}' (choices: {', '.join(FORMATS)})")
    template = path_template or DEFAULT_PATHS.get(fmt, "{domain}")
    if budget is not None:
        for d in budget.over_cap(weights):
            row = budget.plan(weights)[d]
            warnings.warn(f"domain '{d}' would repeat {row['epochs']:.2f} times (cap {budget.max_epochs:g} epochs)")
    plan = budget.plan(weights) if budget is not None else None
    nonzero = {d: w for d, w in weights.items() if w > 0}
    if fmt == "json":
        out = {"weights": weights}
        if plan is not None:
            out["token_budget"] = budget.token_budget
            out["max_epochs"] = budget.max_epochs
            out["domains"] = plan
        return json.dumps(out, indent=2) + "\n"
    if fmt == "lit-gpt":
        train = {(d if d.startswith(prefix) else prefix + d): float(w) for d, w in weights.items()}
        return yaml.safe_dump({"train": train}, sort_keys=False)
    if fmt == "megatron":
        return " ".join(f"{w:.10g} {template.format(domain=d)}" for d, w in nonzero.items()) + "\n"
    if fmt == "hf":
        names = list(weights)
        return json.dumps(
            {
                "datasets": [template.format(domain=d) for d in names],
                "probabilities": [weights[d] for d in names],
                "stopping_strategy": "all_exhausted",
            },
            indent=2,
        ) + "\n"
    if fmt == "olmo":
        sources = []
        for d, w in nonzero.items():
            entry = {"source_name": d, "target_ratio": float(w), "paths": [template.format(domain=d)]}
            if budget is not None and budget.max_epochs is not None:
                entry["max_repetition_ratio"] = float(budget.max_epochs)
            sources.append(entry)
        config = {"source_configs": sources}
        if budget is not None:
            config["max_tokens"] = int(budget.token_budget)
        return yaml.safe_dump({"source_mixture_config": config}, sort_keys=False)
    streams = {d: {"local": template.format(domain=d), "proportion": float(w)} for d, w in nonzero.items()}
    return yaml.safe_dump({"train_loader": {"dataset": {"streams": streams}}}, sort_keys=False)


def parse(text: str, fmt: str, prefix: str = "train_") -> dict[str, float]:
    """Read weights back from an exported text (used to check exports and by tests)."""
    if fmt == "json":
        return {d: float(w) for d, w in json.loads(text)["weights"].items()}
    if fmt == "lit-gpt":
        return {d.removeprefix(prefix): float(w) for d, w in yaml.safe_load(text)["train"].items()}
    if fmt == "megatron":
        parts = text.split()
        return {_domain_of(p): float(w) for w, p in zip(parts[::2], parts[1::2])}
    if fmt == "hf":
        data = json.loads(text)
        return dict(zip(data["datasets"], map(float, data["probabilities"])))
    if fmt == "olmo":
        sources = yaml.safe_load(text)["source_mixture_config"]["source_configs"]
        return {s["source_name"]: float(s["target_ratio"]) for s in sources}
    if fmt == "mosaic":
        streams = yaml.safe_load(text)["train_loader"]["dataset"]["streams"]
        return {d: float(s["proportion"]) for d, s in streams.items()}
    raise RegmixError(f"unknown export format '{fmt}'")


def _domain_of(path: str) -> str:
    name = Path(path).name
    return name.removesuffix("_text_document")


def read_token_counts(path: str | Path) -> dict[str, float]:
    """Tokens per domain from a token store's meta.json, or a JSON/YAML mapping {domain: tokens}."""
    path = Path(path)
    if path.is_dir():
        path = path / "meta.json"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RegmixError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise RegmixError(f"{path}: cannot parse: {str(err).splitlines()[0]}") from None
    if isinstance(data, dict) and isinstance(data.get("domains"), dict):
        data = {d: v.get("train_tokens") if isinstance(v, dict) else v for d, v in data["domains"].items()}
    if not isinstance(data, dict):
        raise RegmixError(f"{path}: expected a mapping of domain to token count")
    out = {}
    for d, v in data.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise RegmixError(f"{path}: {d}: expected a token count, got {v!r}")
        out[str(d)] = float(v)
    return out


def plan_table(weights: dict[str, float], budget: Budget) -> str:
    """A plain-text table of weight, tokens and epochs per domain."""
    rows = budget.plan(weights)
    width = max(len(d) for d in rows)
    lines = [f"{'domain':<{width}}  {'weight':>8}  {'tokens':>12}  {'available':>12}  {'epochs':>7}"]
    for d, r in rows.items():
        flag = "  over cap" if budget.max_epochs is not None and r["epochs"] > budget.max_epochs * (1 + 1e-9) else ""
        lines.append(
            f"{d:<{width}}  {r['weight']:8.4f}  {r['tokens']:12.4g}  {r['available_tokens']:12.4g}  {r['epochs']:7.2f}{flag}"
        )
    return "\n".join(lines)


def check_round_trip(weights: dict[str, float], fmt: str, text: str) -> None:
    back = parse(text, fmt)
    for d, w in weights.items():
        if not np.isclose(back.get(d, 0.0), w, atol=1e-8):
            raise RegmixError(f"export {fmt}: weight of '{d}' did not survive the round trip")
