"""Search the mixture space with a fitted regressor.

`topk` (RegMix): score N simulated candidates and average the k best (every candidate is scored by
a screening model, for LightGBM one booster of the bag; the best 5% are rescored by the full
model). `refine`: start there and
for several rounds resample around the current answer with a tightening Dirichlet, moving to the
mean of the round's k best when it scores better. The objective is the weighted sum of the
predicted targets, plus an optional `kl_strength * KL(w || prior)` that keeps the answer near the
runs' centre, where the regressor was trained. The answer always satisfies the space's bounds and
repetition caps (checked, projected if rounding pushed it out).

Constraints bound other targets' predictions: `TARGET<=natural+0.02` (at most 0.02 above its
prediction at the space's prior, the natural mixture), `TARGET<=natural*1.01`, or `TARGET<=4.1`.
Candidates that break one are ranked after every candidate that keeps them all; if the mean of the
k best breaks one, k is halved until it does not (k = 1 is a kept candidate). A constraint binds
when the unconstrained answer (same candidates) would break it.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from regmix.errors import RegmixError
from regmix.files import usable_cores
from regmix.progress import Progress
from regmix.regress.fit import FittedModel
from regmix.sample import Method, sample_mixtures
from regmix.space import MixtureSpace
from regmix.weights import tidy_weights

CHUNK = 200_000
SCREEN_KEEP = 0.05


@dataclass(frozen=True)
class OptimizeConfig:
    samples: int = 1_000_000
    top_k: int = 100
    method: Literal["topk", "refine"] = "topk"
    sampler: Method = "regmix"
    refine_rounds: int = 6
    refine_samples: int = 20_000
    refine_concentration: float = 100.0
    kl_strength: float = 0.0
    target_weights: tuple[float, ...] | None = None
    seed: int = 0
    interval: float = 0.8  # coverage of the reported conformal interval of each target at the answer
    constraints: tuple[str, ...] = ()  # 'TARGET<=natural+0.02', 'TARGET<=natural*1.01' or 'TARGET<=4.1'


@dataclass
class OptimizeResult:
    domains: tuple[str, ...]
    weights_K: np.ndarray
    method: str
    targets: list[str]
    target_weights: list[float]
    predicted_T: np.ndarray  # full-model prediction per target at the answer
    fold_mean_T: np.ndarray  # mean over the cross-validation fold models
    fold_std_T: np.ndarray  # spread over the fold models: the reported uncertainty
    objective: float
    topk_K: np.ndarray
    refined_K: np.ndarray | None
    candidates: int
    seconds: float
    prior_K: np.ndarray
    kl_to_prior: float
    columns: tuple[str, ...] = ()  # the sweep table's column per domain, for exports keyed by file names
    interval_level: float | None = None
    lower_T: np.ndarray | None = None  # conformal interval of each target at the answer (None: not calibrated)
    upper_T: np.ndarray | None = None
    constraints: list[dict] | None = None  # per constraint: target, bound, predicted, slack, binds

    def to_json(self) -> dict:
        named = lambda v: {d: float(x) for d, x in zip(self.domains, tidy_weights(v))}
        out = {
            "format": "regmix.mixture/1",
            "weights": named(self.weights_K),
            "columns": dict(zip(self.domains, self.columns or self.domains)),
            "method": self.method,
            "targets": self.targets,
            "target_weights": self.target_weights,
            "predicted": {t: float(v) for t, v in zip(self.targets, self.predicted_T)},
            "uncertainty": {
                t: {"fold_mean": float(m), "fold_std": float(s)}
                for t, m, s in zip(self.targets, self.fold_mean_T, self.fold_std_T)
            },
            "objective": self.objective,
            "interval": None if self.lower_T is None else {
                "level": self.interval_level,
                **{t: {"lower": float(lo), "upper": float(hi)} for t, lo, hi in zip(self.targets, self.lower_T, self.upper_T)},
            },
            "kl_to_prior": self.kl_to_prior,
            "prior": named(self.prior_K),
            "alternatives": {"topk": named(self.topk_K)},
            "constraints": self.constraints or [],
            "candidates_scored": self.candidates,
            "seconds": round(self.seconds, 3),
        }
        if self.refined_K is not None:
            out["alternatives"]["refine"] = named(self.refined_K)
        return out


def kl_N(w_NxK: np.ndarray, prior_K: np.ndarray) -> np.ndarray:
    """KL(w || prior) per row, with 0 log 0 = 0 (inf where w puts mass on a zero-prior domain)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(w_NxK > 0, w_NxK * (np.log(w_NxK) - np.log(prior_K)), 0.0)
    return terms.sum(axis=1)


INFEASIBLE = 1e6  # added to the objective of a candidate that breaks a constraint


_CONSTRAINT = re.compile(r"^\s*(?P<target>[^<>=]+?)\s*<=\s*(?:(?P<natural>natural)\s*(?:(?P<op>[+*])\s*(?P<x>[^\s]+))?|(?P<value>[^\s]+))\s*$")


def parse_constraints(texts, model: FittedModel, prior_K: np.ndarray) -> list[tuple[int, float, str]]:
    """(target index, upper bound, text) per constraint; the bound of `natural` is the full model's
    prediction at the prior."""
    from regmix.tables import resolve_target

    out = []
    natural_T = model.predict(np.asarray(prior_K)[None, :])[0] if texts else None
    for text in texts:
        m = _CONSTRAINT.match(text)
        if not m:
            raise RegmixError(f"--constrain {text[:80]!r}: expected TARGET<=natural+X, TARGET<=natural*X or TARGET<=NUMBER")
        name = resolve_target(m["target"], model.targets, "--constrain")
        t = model.targets.index(name)
        try:
            number = float(m["value"] if m["value"] is not None else (m["x"] if m["x"] is not None else 0.0))
        except ValueError:
            raise RegmixError(f"--constrain {text[:80]!r}: {m['value'] or m['x']!r} is not a number") from None
        if not np.isfinite(number):
            raise RegmixError(f"--constrain {text[:80]!r}: the bound must be finite")
        if m["natural"] is None:
            bound = number
        else:
            bound = natural_T[t] * number if m["op"] == "*" else natural_T[t] + number
        out.append((t, float(bound), text.strip()))
    return out


class Objective:
    """Weighted sum of predicted targets plus the KL penalty (plus INFEASIBLE + the violation where
    a candidate breaks a constraint); lower is better."""

    def __init__(self, model: FittedModel, weights_T: np.ndarray, prior_K: np.ndarray, kl_strength: float,
                 constraints: list[tuple[int, float, str]] = ()):
        self.model, self.weights_T, self.prior_K, self.kl_strength = model, weights_T, prior_K, kl_strength
        self.constraints = list(constraints)

    def __call__(self, w_NxK: np.ndarray, screen: bool = False) -> np.ndarray:
        return self.both(w_NxK, screen)[0]

    def both(self, w_NxK: np.ndarray, screen: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The objective with and without the constraints' penalty."""
        pred = self.model.predict(w_NxK, screen=screen)
        value = pred @ self.weights_T
        if self.kl_strength:
            value = value + self.kl_strength * kl_N(w_NxK, self.prior_K)
        if not self.constraints:
            return value, value
        excess = np.zeros(len(value))
        for t, bound, _ in self.constraints:
            excess += np.maximum(pred[:, t] - bound, 0.0)
        return np.where(excess > 0, value + INFEASIBLE + excess, value), value

    def free(self) -> "Objective":
        return Objective(self.model, self.weights_T, self.prior_K, self.kl_strength)


def optimize(
    model: FittedModel,
    space: MixtureSpace | None = None,
    config: OptimizeConfig = OptimizeConfig(),
    progress: bool = True,
) -> OptimizeResult:
    start = time.perf_counter()
    if space is None:
        space = MixtureSpace.from_prior(list(model.domains), model.prior_K)
    if config.top_k < 1:
        raise RegmixError(f"--top-k must be >= 1, got {config.top_k}")
    rng = np.random.default_rng(config.seed)
    space, objective, candidates, scores, free_scores = screen(model, space, config, rng, progress)
    constraints = objective.constraints
    k = min(config.top_k, len(candidates))
    topk = _top_k_mean(space, objective, candidates, scores, k)
    scored = len(candidates)

    refined = None
    answer = topk
    if config.method == "refine":
        refined, refine_scored = _refine(space, objective, topk, config, rng, progress)
        scored += refine_scored
        answer = refined

    folds_FxT = model.predict_folds(answer[None, :])[:, 0, :]
    predicted = model.predict(answer[None, :])[0]
    report = None
    if constraints:
        report = _constraint_report(model, objective, space, candidates, free_scores, k, predicted, constraints)
    lower = upper = None
    if all(t in model.calibration for t in model.targets):
        _, lower, upper = (v[0] for v in model.interval(answer[None, :], config.interval))
    return OptimizeResult(
        domains=model.domains,
        weights_K=answer,
        method=config.method,
        targets=model.targets,
        target_weights=objective.weights_T.tolist(),
        predicted_T=predicted,
        fold_mean_T=folds_FxT.mean(axis=0),
        fold_std_T=folds_FxT.std(axis=0, ddof=1) if len(folds_FxT) > 1 else np.zeros(len(predicted)),
        objective=float(objective(answer[None, :])[0]),
        topk_K=topk,
        refined_K=refined,
        candidates=scored,
        seconds=time.perf_counter() - start,
        prior_K=space.prior_K,
        kl_to_prior=float(kl_N(answer[None, :], space.prior_K)[0]),
        columns=tuple(model.columns),
        interval_level=config.interval,
        lower_T=lower,
        upper_T=upper,
        constraints=report,
    )


def screen(model: FittedModel, space: MixtureSpace, config: OptimizeConfig, rng: np.random.Generator,
           progress: bool = False) -> tuple[MixtureSpace, Objective, np.ndarray, np.ndarray, np.ndarray]:
    """optimize's first stage: the space on the model's domains, the objective, `config.samples`
    candidates drawn with `rng`, and their screening scores with and without the constraints (the same
    array when there are none)."""
    space = space.with_domains(list(model.domains))
    weights_T = _target_weights(model, config.target_weights)
    constraints = parse_constraints(tuple(space.constraints) + tuple(config.constraints), model, space.prior_K)
    objective = Objective(model, weights_T, space.prior_K, config.kl_strength, constraints)
    candidates = sample_mixtures(space, config.samples, rng, config.sampler, threads=usable_cores(), allow_fewer=True,
                                 progress=progress)
    scores = np.empty(len(candidates))
    free_scores = np.empty(len(candidates)) if constraints else scores  # without the constraints
    bar = Progress("score candidates", len(candidates), "mixtures", enabled=progress)
    for lo in range(0, len(candidates), CHUNK):
        scores[lo : lo + CHUNK], free_scores[lo : lo + CHUNK] = objective.both(candidates[lo : lo + CHUNK], screen=True)
        bar.update(min(lo + CHUNK, len(candidates)))
    bar.close()
    return space, objective, candidates, scores, free_scores


def shortlist(objective: Objective, candidates: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """optimize's second stage: the best-screened SCREEN_KEEP of the candidates (at least 50 k) rescored
    by the full model; their indices, best first, and their full scores in that order."""
    keep = min(len(candidates), max(50 * k, int(SCREEN_KEEP * len(candidates))))
    short = np.argpartition(scores, keep - 1)[:keep]
    full = objective(candidates[short])
    order = np.argsort(full)
    return short[order], full[order]


def _top_k_mean(space, objective, candidates, scores, k: int) -> np.ndarray:
    """Mean of the k best of the shortlist (two stages: every candidate gets the screening score, the
    shortlist the full model's). With constraints only kept candidates count, and k halves until the
    mean keeps them too."""
    order, full = shortlist(objective, candidates, scores, k)
    if objective.constraints:
        ok = full < INFEASIBLE
        if not ok.any():
            raise RegmixError("no candidate mixture satisfies the constraints: loosen them (--constrain)")
        order = order[ok]
        k = min(k, len(order))
    while True:
        answer = _feasible(space, candidates[order[:k]].mean(axis=0))
        if k == 1 or not objective.constraints or objective(answer[None, :])[0] < INFEASIBLE:
            return answer
        k = max(1, k // 2)


def _constraint_report(model, objective, space, candidates, free_scores, k, predicted_T, constraints) -> list[dict]:
    """Bound, prediction and slack at the answer; `binds`: the unconstrained answer breaks it."""
    free = objective.free()
    unconstrained = model.predict(_top_k_mean(space, free, candidates, free_scores, k)[None, :])[0]
    return [{"constraint": text, "target": model.targets[t], "bound": bound, "predicted": float(predicted_T[t]),
             "slack": float(bound - predicted_T[t]), "unconstrained": float(unconstrained[t]),
             "binds": bool(unconstrained[t] > bound)} for t, bound, text in constraints]


def _refine(space, objective, start_K, config: OptimizeConfig, rng, progress) -> tuple[np.ndarray, int]:
    current, current_score = start_K, float(objective(start_K[None, :])[0])
    concentration = config.refine_concentration
    scored = 0
    for _ in tqdm(range(config.refine_rounds), desc="refine", disable=not progress, leave=False):
        alpha = np.maximum(concentration * current, 1e-3)
        g = rng.standard_gamma(np.broadcast_to(alpha, (config.refine_samples, space.k)))
        cand = g / g.sum(axis=1, keepdims=True)
        cand = cand[space.feasible_N(cand)]
        if len(cand) == 0:
            concentration *= 2
            continue
        s = objective(cand)
        scored += len(cand)
        k = min(config.top_k, len(cand))
        proposal = _feasible(space, cand[np.argpartition(s, k - 1)[:k]].mean(axis=0))
        proposal_score = float(objective(proposal[None, :])[0])
        if proposal_score < current_score:
            current, current_score = proposal, proposal_score
        concentration *= 2
    return current, scored


def _feasible(space: MixtureSpace, w_K: np.ndarray) -> np.ndarray:
    w_K = w_K / w_K.sum()
    if not space.feasible_N(w_K[None, :], tol=1e-9)[0]:
        w_K = space.project(w_K)
    if not space.feasible_N(w_K[None, :], tol=1e-6)[0]:
        raise RegmixError("optimizer could not find a mixture inside the bounds and caps")
    return w_K


def _target_weights(model: FittedModel, weights) -> np.ndarray:
    t = len(model.targets)
    if weights is None:
        return np.full(t, 1.0 / t)
    weights = np.asarray(weights, np.float64)
    if weights.shape != (t,):
        raise RegmixError(f"--target-weights: {len(weights)} weight(s) for {t} target(s) ({', '.join(model.targets)})")
    return weights


def warn_if_worse_than_runs(result: OptimizeResult, ids, observed_NxT: np.ndarray) -> None:
    """Warn where the chosen mixture is predicted worse than the best run measured in the sweep."""
    observed = np.asarray(observed_NxT, np.float64) @ np.asarray(result.target_weights)
    if not np.isfinite(observed).any():
        return
    i = int(np.nanargmin(observed))
    predicted = float(result.predicted_T @ np.asarray(result.target_weights))
    if predicted > observed[i]:
        warnings.warn(f"the chosen mixture is predicted {predicted:.4f}, worse than run {ids[i]} measured in the sweep "
                      f"({observed[i]:.4f}): the model finds nothing better than that run; consider training it instead")
