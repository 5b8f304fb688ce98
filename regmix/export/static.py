"""Formats of trainers that take one mixture for the whole run (a schedule becomes one file per phase).

Each renderer writes one phase as its consumer reads it today; the consumer, its version and the
source the field names come from are named next to it. `parse_*` read the weights back, keyed as
the format keys them, for the round-trip check in `regmix.export`.
"""

from __future__ import annotations

import json
import warnings

import yaml

from regmix.errors import RegmixError
from regmix.export.inputs import ExportOptions, Mixture, Phase

HF_STRATEGIES = ("first_exhausted", "all_exhausted", "all_exhausted_without_replacement")


def nonzero(weights: dict[str, float]) -> dict[str, float]:
    """Positive weights only, renormalised: several consumers refuse a zero weight (see each format)."""
    kept = {d: w for d, w in weights.items() if w > 0}
    total = sum(kept.values())
    if abs(total - 1.0) < 1e-12:  # already a mixture: dividing by 0.9999999999999999 would only add float noise
        return kept
    return {d: w / total for d, w in kept.items()}


def dump_yaml(data, comment: str, flow_leaves: bool = False) -> str:
    """YAML with the consumer named in a comment on top; `flow_leaves` writes innermost lists and maps inline."""
    lines = "".join(f"# {line}\n" for line in comment.splitlines())
    return lines + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000,
                                  default_flow_style=None if flow_leaves else False)


# -- HF datasets: interleave_datasets(datasets, probabilities, seed, stopping_strategy) (datasets 5.2.0) --
def render_hf(phase: Phase, paths: dict[str, str], mix: Mixture, opts: ExportOptions) -> str:
    # A zero probability makes "all_exhausted" raise (map-style) or never stop (iterable), and
    # "all_exhausted_without_replacement" hang: zero-weight domains are left out.
    if opts.stopping_strategy not in HF_STRATEGIES:
        raise RegmixError(f"--stopping-strategy: expected one of {', '.join(HF_STRATEGIES)}, got '{opts.stopping_strategy}'")
    kept = nonzero(phase.weights)
    return json.dumps({
        "format": "hf",
        "consumer": "datasets.interleave_datasets (datasets >= 4.2; see regmix.export.hf.interleave)",
        "domains": list(kept),
        "datasets": [paths[d] for d in kept],
        "probabilities": list(kept.values()),
        "seed": opts.seed,
        "stopping_strategy": opts.stopping_strategy,
    }, indent=2, ensure_ascii=False) + "\n"


def parse_hf(text: str) -> dict[str, float]:
    data = json.loads(text)
    return dict(zip(data["domains"], map(float, data["probabilities"])))


# -- Megatron-LM: `--data-args-path FILE` (or `--data-path $(cat FILE)`) ----------------------------------
def render_megatron(phase: Phase, paths: dict[str, str], mix: Mixture, opts: ExportOptions) -> str:
    # megatron/training/utils: get_blend_from_list(open(path).read().split()): "w1 p1 w2 p2 ...";
    # megatron/core/datasets/blended_dataset.py asserts every weight > 0; weights are normalised.
    return "".join(f"{w:.12g} {paths[d]}\n" for d, w in nonzero(phase.weights).items())


def parse_megatron(text: str) -> dict[str, float]:
    parts = text.split()
    return {p: float(w) for w, p in zip(parts[::2], parts[1::2])}


# -- MosaicML Streaming / llm-foundry: train_loader.dataset.streams.<name>.{local, proportion} ------------
def render_mosaic(phase: Phase, paths: dict[str, str], mix: Mixture, opts: ExportOptions) -> str:
    # llm-foundry build_streams -> streaming.Stream(local=..., proportion=...) (mosaicml-streaming 0.13.0).
    streams = {d: {"local": paths[d], "proportion": w} for d, w in nonzero(phase.weights).items()}
    return dump_yaml({"train_loader": {"dataset": {"streams": streams}}},
                     "llm-foundry train_loader.dataset.streams (mosaicml-streaming 0.13 Stream: local, proportion)")


def parse_mosaic(text: str) -> dict[str, float]:
    streams = yaml.safe_load(text)["train_loader"]["dataset"]["streams"]
    return {d: float(s["proportion"]) for d, s in streams.items()}


# -- OLMo-core: NumpyFSLDatasetConfig.source_mixture_config (ai2-olmo-core 3.0.0) ----------------------------
def render_olmo(phase: Phase, paths: dict[str, str], mix: Mixture, opts: ExportOptions) -> str:
    # olmo_core/data/source_mixture.py: SourceMixtureDatasetConfig(source_list: SourceMixtureList(sources=
    # [SourceMixtureConfig(source_name, target_ratio, paths, max_repetition_ratio=1.0, max_source_fraction=1.0)]),
    # requested_tokens, global_batch_size (tokens), seed); build() checks that the ratios sum to 1 and that
    # available * max_source_fraction * max_repetition_ratio covers requested_tokens * target_ratio.
    budget = opts.budget
    if budget is None or opts.global_batch_size is None or opts.sequence_length is None:
        raise RegmixError("export olmo: OLMo-core's SourceMixtureDatasetConfig needs requested_tokens and "
                          "global_batch_size: give --token-budget, --global-batch-size and --sequence-length")
    sources = []
    for d, w in nonzero(phase.weights).items():
        entry = {"source_name": d, "target_ratio": w, "paths": [paths[d]]}
        if budget.max_epochs is not None:
            if budget.max_epochs >= 1:
                entry["max_repetition_ratio"] = float(budget.max_epochs)
            else:
                entry["max_source_fraction"] = float(budget.max_epochs)
        sources.append(entry)
    if budget.max_epochs is None and budget.tokens is not None:
        needs = {d: r["epochs"] for d, r in budget.plan(phase.weights).items() if r["epochs"] > 1 + 1e-9}
        for d, epochs in needs.items():
            warnings.warn(f"export olmo: '{d}' needs {epochs:.2f} epochs, but OLMo-core allows 1 unless "
                          "max_repetition_ratio is raised: give --max-epochs")
    config = {
        "source_list": {"sources": sources},
        "requested_tokens": int(round(phase.tokens)),
        "global_batch_size": opts.global_batch_size * opts.sequence_length,
        "seed": opts.seed,
    }
    return dump_yaml({"source_mixture_config": config},
                     "OLMo-core NumpyFSLDatasetConfig.source_mixture_config: SourceMixtureDatasetConfig.from_dict(...)\n"
                     "(ai2-olmo-core >= 2.3, tested with 3.0.0; global_batch_size is in tokens)")


def parse_olmo(text: str) -> dict[str, float]:
    sources = yaml.safe_load(text)["source_mixture_config"]["source_list"]["sources"]
    return {s["source_name"]: float(s["target_ratio"]) for s in sources}


# -- olmix: LaunchConfig.mix: {source: {weight, repetition_factor}} (allenai/olmix olmix/aliases.py) ---------
def render_olmix(phase: Phase, paths: dict[str, str], mix: Mixture, opts: ExportOptions) -> str:
    # MixEntry has both fields required; entries are matched to data.sources by name ("source:topic"
    # names a topic) and passed on unnormalised as OLMo-core target_ratio/max_repetition_ratio.
    cap = opts.budget.max_epochs if opts.budget is not None and opts.budget.max_epochs is not None else 1.0
    entries = {d: {"weight": w, "repetition_factor": float(cap)} for d, w in nonzero(phase.weights).items()}
    return dump_yaml({"mix": entries}, "olmix LaunchConfig.mix (allenai/olmix): weight and repetition_factor per source")


def parse_olmix(text: str) -> dict[str, float]:
    return {d: float(e["weight"]) for d, e in yaml.safe_load(text)["mix"].items()}


# -- RegMix's lit-gpt fork: model_training/pretrain/tinyllama.py --data_yaml_file (sail-sg/regmix) ----------
def litgpt_keys(domain: str, mix: Mixture) -> tuple[str, str]:
    """The train and valid file prefixes: the trainer globs `<prefix>-*` in its data folders."""
    column = mix.column(domain)
    rest = column.removeprefix("train_") if column.startswith("train_") else column
    return f"train_{rest}", f"valid_{rest}"


def render_litgpt(phase: Phase, paths: dict[str, str], mix: Mixture, opts: ExportOptions) -> str:
    # The trainer reads config["train"] and config["valid"] and then deletes both keys (so both are
    # required); a valid prefix with no files is skipped. Keys are the sweep's original column names
    # (train_the_pile_arxiv), the prefix of the files RegMix's preprocessing writes.
    train = {litgpt_keys(d, mix)[0]: w for d, w in nonzero(phase.weights).items()}
    valid = {litgpt_keys(d, mix)[1]: 1.0 for d in phase.weights}
    return dump_yaml({"train": train, "valid": valid, "data_seed": opts.seed},
                     "RegMix lit-gpt fork (sail-sg/regmix model_training/pretrain/tinyllama.py --data_yaml_file);\n"
                     "keys are file prefixes under --train_data_dir / --val_data_dir. Current litgpt has no weight key.")


def parse_litgpt(text: str) -> dict[str, float]:
    return {k: float(w) for k, w in yaml.safe_load(text)["train"].items()}
