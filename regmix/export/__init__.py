"""Write a mixture (or an end-of-training schedule) in the formats trainers read.

| format    | consumer, as it reads the file today                                  | schedule     |
|-----------|-----------------------------------------------------------------------|--------------|
| json      | regmix's own: weights, schedule, tokens and epochs per domain          | native       |
| hf        | `datasets.interleave_datasets` (see `regmix.export.hf.interleave`)     | one per phase|
| megatron  | Megatron-LM `--data-args-path` (the same text works for `--data-path`) | one per phase|
| mosaic    | llm-foundry `train_loader.dataset.streams` (MosaicML Streaming)        | one per phase|
| olmo      | OLMo-core `SourceMixtureDatasetConfig`                                 | one per phase|
| olmix     | allenai/olmix launch config `mix:`                                     | one per phase|
| lit-gpt   | RegMix's lit-gpt fork `--data_yaml_file` (current litgpt has no weights)| one per phase|
| levanter  | Levanter `LMMixtureDatasetConfig` (`data:`), `train_weights` stages    | native       |
| nanotron  | nanotron `data_stages` with Nanoset folders                            | native       |

`export()` returns the files; every one is read back and checked against the weights it carries.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from regmix.errors import RegmixError
from regmix.export import scheduled, static
from regmix.export.inputs import (Budget, ExportOptions, Mixture, Phase, Schedule, plan_table, read_mixture,
                                  read_token_counts)
from regmix.export.paths import check_name, check_path, check_template, fill
from regmix.weights import tidy_weights

__all__ = ["FORMATS", "Budget", "ExportFile", "ExportOptions", "Mixture", "Schedule", "export", "get_format", "parse",
           "plan_table", "read_mixture", "read_token_counts"]


@dataclass(frozen=True)
class Format:
    name: str
    extension: str
    render: Callable
    parse: Callable  # text -> weights (static) or [(step, weights)] (scheduled), keyed as `keyed_by` says
    paths: str | None  # the default path template; None: the format has no paths
    no_paths: str = ""  # why --path-template is refused, for formats without paths
    scheduled: bool = False
    keyed_by: str = "domain"  # what the parsed weights are keyed by: domain, path or litgpt


_REGISTRY = [
    Format("json", "json", scheduled.render_json, scheduled.parse_json, None,
           "json names domains, not data paths", scheduled=True),
    Format("hf", "json", static.render_hf, static.parse_hf, "{domain}"),
    Format("megatron", "txt", static.render_megatron, static.parse_megatron, "/data/{domain}_text_document",
           keyed_by="path"),
    Format("mosaic", "yaml", static.render_mosaic, static.parse_mosaic, "/data/{domain}"),
    Format("olmo", "yaml", static.render_olmo, static.parse_olmo, "/data/{domain}/*.npy"),
    Format("olmix", "yaml", static.render_olmix, static.parse_olmix, None,
           "olmix matches mix entries to its data.sources by name; the paths live in those sources"),
    Format("lit-gpt", "yaml", static.render_litgpt, static.parse_litgpt, None,
           "RegMix's trainer globs '<key>-*' in --train_data_dir; the keys come from the sweep's column names",
           keyed_by="litgpt"),
    Format("levanter", "yaml", scheduled.render_levanter, scheduled.parse_levanter, "/data/{domain}/*.jsonl.gz",
           scheduled=True),
    Format("nanotron", "yaml", scheduled.render_nanotron, scheduled.parse_nanotron, "/data/{domain}",
           scheduled=True, keyed_by="path"),
]
BY_NAME = {f.name: f for f in _REGISTRY}
FORMATS = tuple(BY_NAME)


@dataclass(frozen=True)
class ExportFile:
    part: str  # "" for the one file of an export; the phase's name for one file per phase
    text: str

    def path(self, out: Path) -> Path:
        return out if not self.part else out.with_name(f"{out.stem}.{self.part}{out.suffix}")


def get_format(name: str) -> Format:
    if name not in BY_NAME:
        raise RegmixError(f"unknown export format '{name}' (choices: {', '.join(FORMATS)})")
    return BY_NAME[name]


def phases(mix: Mixture, opts: ExportOptions) -> list[Phase]:
    """The run as phases: one, or the base and late phases of a schedule (tokens shared by steps)."""
    budget = opts.budget.token_budget if opts.budget is not None else None
    s = opts.schedule
    if s is None:
        return [Phase("", tidy(mix.weights), 0, budget)]
    domains = list(mix.weights) + [d for d in s.late if d not in mix.weights]
    base = tidy({d: mix.weights.get(d, 0.0) for d in domains})
    late = tidy({d: s.late.get(d, 0.0) for d in domains})
    share = s.switch_step / s.total_steps
    return [Phase("base", base, 0, budget and budget * share),
            Phase("late", late, s.switch_step, budget and budget * (1 - share))]


def tidy(weights: dict[str, float]) -> dict[str, float]:
    """Weights as files show them: 6 decimals that still sum to 1 (0.17942, not 0.17941999999999989)."""
    return dict(zip(weights, map(float, tidy_weights(np.fromiter(weights.values(), np.float64)))))


def export(mix: Mixture, fmt: str, opts: ExportOptions | None = None) -> list[ExportFile]:
    """The files of `mix` in format `fmt`; each is parsed back and checked before it is returned."""
    opts = opts or ExportOptions()
    f = get_format(fmt)
    runs = phases(mix, opts)
    for d in runs[0].weights:
        check_name(d)
    used = [d for d in runs[0].weights if any(p.weights[d] > 0 for p in runs)]
    paths = _paths(f, used, opts.path_template)
    if opts.budget is not None:
        capped = opts.budget.max_epochs is not None and opts.budget.tokens is not None
        plan = opts.budget.plan(opts.overall(mix.weights)) if capped else {}
        for d, row in plan.items():
            if opts.budget.exceeds(row["epochs"]):
                warnings.warn(f"domain '{d}' would repeat {row['epochs']:.2f} times (cap {opts.budget.max_epochs:g} epochs)")
    if f.scheduled:
        files = [ExportFile("", f.render(runs, paths, mix, opts))]
        expected = [runs]
    else:
        files = [ExportFile(p.name, f.render(p, paths, mix, opts)) for p in runs]
        expected = [[p] for p in runs]
    for file, stages in zip(files, expected):
        _check_round_trip(f, file.text, stages, paths, mix)
    return files


def _paths(f: Format, domains: list[str], template: str | None) -> dict[str, str]:
    if f.paths is None:
        if template is not None:
            raise RegmixError(f"--path-template does not apply to {f.name}: {f.no_paths}")
        return {}
    template = template if template is not None else f.paths
    check_template(template)
    out = {d: fill(template, d) for d in domains}
    for d, p in out.items():
        check_path(f.name, d, p)
    if len(set(out.values())) < len(out):
        raise RegmixError(f"--path-template '{template}': two domains get the same path")
    return out


def _check_round_trip(f: Format, text: str, stages: list[Phase], paths: dict[str, str], mix: Mixture) -> None:
    back = parse(text, f.name)
    key = {"domain": lambda d: d, "path": lambda d: paths[d], "litgpt": lambda d: static.litgpt_keys(d, mix)[0]}[f.keyed_by]
    ok = len(back) == len(stages)
    for (_, got), phase in zip(back, stages):
        want = static.nonzero(phase.weights)
        ok = ok and all(np.isclose(got.get(key(d), 0.0), w, atol=1e-8) for d, w in want.items())
        ok = ok and np.isclose(sum(got.values()), 1.0, atol=1e-8)
    if not ok:
        raise RegmixError(f"export {f.name}: the written weights did not read back as given")


def parse(text: str, fmt: str) -> list[tuple[int, dict[str, float]]]:
    """The (start step, weights) stages an exported text holds, keyed as the format keys them:
    domain names, except data paths for megatron and nanotron and file prefixes for lit-gpt."""
    f = get_format(fmt)
    back = f.parse(text)
    return back if f.scheduled else [(0, back)]
