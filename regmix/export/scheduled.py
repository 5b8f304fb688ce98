"""Formats that carry a mixture schedule natively: regmix's own JSON, Levanter, nanotron.

A static export is the one-phase case of the same files.
"""

from __future__ import annotations

import json
import math
import warnings

import yaml

from regmix.errors import RegmixError
from regmix.export.inputs import ExportOptions, Mixture, Phase
from regmix.export.static import dump_yaml, nonzero

LEVANTER_BLOCK = 2048  # LMMixtureDatasetConfig.mixture_block_size default, written out explicitly
LEVANTER_BATCH = 512  # TrainerConfig.train_batch_size default, assumed without --global-batch-size


def render_json(phases: list[Phase], paths: dict[str, str], mix: Mixture, opts: ExportOptions) -> str:
    out = {"format": "regmix.export/1", "weights": phases[0].weights}
    if mix.columns:
        out["columns"] = {d: mix.column(d) for d in phases[0].weights}
    if len(phases) > 1:
        out["schedule"] = [{"name": p.name, "start_step": p.start_step, "weights": p.weights} for p in phases]
        out["total_steps"] = opts.schedule.total_steps
    budget = opts.budget
    if budget is not None:
        out["token_budget"] = budget.token_budget
        out["max_epochs"] = budget.max_epochs
        if budget.tokens is not None:
            out["domains"] = budget.plan(opts.overall(phases[0].weights))
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


def parse_json(text: str) -> list[tuple[int, dict[str, float]]]:
    data = json.loads(text)
    if "schedule" in data:
        return [(int(p["start_step"]), {d: float(w) for d, w in p["weights"].items()}) for p in data["schedule"]]
    return [(0, {d: float(w) for d, w in data["weights"].items()})]


# -- Levanter: LmDataConfig, alias LMMixtureDatasetConfig (marin-levanter, src/levanter/data/text/datasets.py) --
def levanter_step(step: int, batch: int, total: int) -> int:
    """The nearest step at which a Levanter stage may start: MixtureDataset asserts that each later
    stage starts on a block boundary (step * batch % mixture_block_size == 0)."""
    every = LEVANTER_BLOCK // math.gcd(batch, LEVANTER_BLOCK)
    below = step // every * every
    options = [s for s in (below, below + every) if every <= s < total]
    if not options:
        raise RegmixError(f"export levanter: no stage boundary between step 0 and {total}: at {batch} sequences "
                          f"per step a stage must start on a multiple of {every} steps")
    return min(options, key=lambda s: (abs(s - step), s))


def render_levanter(phases: list[Phase], paths: dict[str, str], mix: Mixture, opts: ExportOptions) -> str:
    # components: dict[str, DatasetComponent(source=UrlDatasetSourceConfig(train_urls, validation_urls))];
    # train_weights: a dict, or a list of (step, {name: weight}) whose keys must be component names; steps are
    # training steps (rescaled by the batch schedule), the first 0, the rest increasing and on mixture blocks.
    # (stanford-crfm/levanter before the move to marin-levanter named the mapping `configs`, without `source:`.)
    used = [d for d in phases[0].weights if any(p.weights.get(d, 0) > 0 for p in phases)]
    components = {d: {"source": {"train_urls": [paths[d]]}} for d in used}
    if len(phases) == 1:
        weights = nonzero(phases[0].weights)
    else:
        batch = opts.global_batch_size or LEVANTER_BATCH
        weights = [[0, {d: phases[0].weights.get(d, 0.0) for d in used}]]
        for p in phases[1:]:
            step = levanter_step(p.start_step, batch, opts.schedule.total_steps)
            if step != p.start_step:
                warnings.warn(f"export levanter: late phase starts at step {step}, not {p.start_step}: Levanter's "
                              f"mixture blocks of {LEVANTER_BLOCK} sequences at {batch} sequences per step")
            weights.append([step, {d: p.weights.get(d, 0.0) for d in used}])
    data = {"components": components, "train_weights": weights, "mixture_block_size": LEVANTER_BLOCK}
    note = "" if len(phases) == 1 or opts.global_batch_size else f"\nstage steps assume trainer.train_batch_size {LEVANTER_BATCH}"
    return dump_yaml({"data": data}, "Levanter TrainLmConfig.data: LmDataConfig (marin-levanter 0.2; older "
                                     "stanford-crfm/levanter: `configs:` without `source:`)" + note,
                     flow_leaves=True)


def parse_levanter(text: str) -> list[tuple[int, dict[str, float]]]:
    weights = yaml.safe_load(text)["data"]["train_weights"]
    if isinstance(weights, dict):
        return [(0, {d: float(w) for d, w in weights.items()})]
    return [(int(step), {d: float(w) for d, w in stage.items()}) for step, stage in weights]


# -- nanotron: Config.data_stages: [DatasetStageArgs] (src/nanotron/config/config.py) -------------------------
def render_nanotron(phases: list[Phase], paths: dict[str, str], mix: Mixture, opts: ExportOptions) -> str:
    # DatasetStageArgs(name, start_training_step, data: DataArgs(dataset, seed, num_loading_workers)); steps are
    # 1-based, one stage must start at 1, names and steps unique. NanosetDatasetsArgs(dataset_folder: list,
    # dataset_weights: list) samples folders by weight; the {name: fraction} form of PretrainDatasetsArgs takes
    # the first fraction of each dataset's rows instead, which is not a mixture weight.
    stages = []
    for p in phases:
        kept = nonzero(p.weights)
        stages.append({
            "name": p.name or "stable",
            "start_training_step": p.start_step + 1,
            "data": {
                "dataset": {"dataset_folder": [paths[d] for d in kept], "dataset_weights": list(kept.values())},
                "seed": opts.seed,
                "num_loading_workers": 1,
            },
        })
    return dump_yaml({"data_stages": stages}, "nanotron Config.data_stages with Nanoset folders (nanotron >= 0.5, "
                                              "huggingface/nanotron src/nanotron/config/config.py)")


def parse_nanotron(text: str) -> list[tuple[int, dict[str, float]]]:
    out = []
    for stage in yaml.safe_load(text)["data_stages"]:
        ds = stage["data"]["dataset"]
        out.append((int(stage["start_training_step"]) - 1, dict(zip(ds["dataset_folder"], map(float, ds["dataset_weights"])))))
    return out
