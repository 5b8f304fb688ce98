"""The consumers' own config schemas and load-time rules, for offline checks of the exports.

Field names and rules are copied from the consumers' sources (cited per class); `from_dict`
(strict: unknown keys, missing required keys and wrong types are errors) stands in for their
loaders (OLMo-core's `Config.from_dict`, draccus, dacite with strict=True, pydantic).
scripts/check_exports.py runs the real libraries where they install without a GPU stack.
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regmix.config import from_dict


# ai2-olmo-core 3.0.0, olmo_core/data/source_mixture.py
@dataclass
class SourceMixtureConfig:
    source_name: str
    target_ratio: float
    paths: list[str]
    max_repetition_ratio: float = 1.0
    max_source_fraction: float = 1.0


@dataclass
class SourceMixtureList:
    sources: list[SourceMixtureConfig]


@dataclass
class SourceMixtureDatasetConfig:
    source_list: SourceMixtureList
    requested_tokens: int
    global_batch_size: int
    processes: int = 1
    seed: int = 42
    render_tables: bool = True
    quiet: bool = False


def olmo_build_checks(cfg: SourceMixtureDatasetConfig, sequence_length: int, available: dict[str, int]) -> None:
    """What SourceMixtureDatasetConfig.validate() and .build() assert before reading a token."""
    assert cfg.requested_tokens > 0
    assert cfg.source_list.sources, "sources must not be empty"
    assert np.allclose(sum(s.target_ratio for s in cfg.source_list.sources), 1.0), "target_ratios must sum to 1.0"
    assert cfg.global_batch_size % sequence_length == 0
    for s in cfg.source_list.sources:
        assert 0 < s.target_ratio <= 1 and s.max_repetition_ratio >= 1 and s.paths
        assert 0 < s.max_source_fraction <= 1
        have = int(available[s.source_name] * s.max_source_fraction * s.max_repetition_ratio)
        assert have >= int(cfg.requested_tokens * s.target_ratio), f"Insufficient tokens for source {s.source_name}"


# allenai/olmix olmix/aliases.py (pydantic; both fields required)
@dataclass
class MixEntry:
    weight: float
    repetition_factor: float


# Megatron-LM megatron/core/datasets/utils.py get_blend_from_list, read by megatron/training/utils
# get_blend_and_blend_per_split from --data-args-path as open(path).read().split()
def megatron_blend(text: str) -> tuple[list[str], list[float]]:
    parts = text.split()
    assert len(parts) % 2 == 0, "weights and prefixes come in pairs"
    weights = [float(w) for w in parts[::2]]  # ValueError: Megatron would read every item as a prefix
    prefixes = [p.strip() for p in parts[1::2]]
    assert all(w > 0 for w in weights), "BlendedDataset asserts every weight > 0"
    total = sum(weights)
    return prefixes, [w / total for w in weights]


# mosaicml-streaming 0.13.0 streaming/base/stream.py Stream(remote, local, split, proportion, repeat, choose, ...)
@dataclass
class Stream:
    local: str
    proportion: float | None = None
    remote: str | None = None
    repeat: float | None = None
    choose: int | None = None


# marin-levanter 0.2 src/levanter/data/text/datasets.py (draccus; LMMixtureDatasetConfig = LmDataConfig)
@dataclass
class UrlDatasetSourceConfig:
    train_urls: list[str] = field(default_factory=list)
    validation_urls: list[str] = field(default_factory=list)
    cache_dir: str | None = None
    tags: list[str] | None = None


@dataclass
class DatasetComponent:
    source: UrlDatasetSourceConfig | None = None
    cache_dir: str | None = None
    pack: Any = None
    tags: list[str] | None = None
    split: str = "validation"


@dataclass
class LmDataConfig:
    components: dict[str, DatasetComponent]
    train_weights: Any  # dict[str, float] | list[tuple[int, dict[str, float]]] | None
    cache_dir: str | None = "cache/"
    tokenizer: str = "gpt2"
    stop_strategy: str = "restart"
    mixture_block_size: int = 2048
    max_train_batches: dict[str, int] | None = None
    num_validation_sequences: dict[str, int] | None = None


def levanter_checks(cfg: LmDataConfig, batch_size: int) -> list[tuple[int, dict[str, float]]]:
    """LmDataConfig.__post_init__ and MixtureDataset.__init__ (data/mixture.py) rules."""
    assert cfg.components, "At least one dataset must be provided"
    stages = cfg.train_weights if isinstance(cfg.train_weights, list) else [[0, cfg.train_weights]]
    for step, weights in stages:
        assert set(weights) <= set(cfg.components), "Weight keys must be subset of component keys"
        assert all(w >= 0 for w in weights.values()) and sum(weights.values()) > 0
    starts = [step * batch_size for step, _ in stages]
    assert starts[0] == 0 and all(a < b for a, b in zip(starts, starts[1:]))
    assert all(s % cfg.mixture_block_size == 0 for s in starts), "stage starts on mixture blocks"
    return [(int(s), dict(w)) for s, w in stages]


# huggingface/nanotron src/nanotron/config/config.py (dacite, strict=True)
@dataclass
class NanosetDatasetsArgs:
    dataset_folder: list[str]
    dataset_weights: list[float] | None = None
    dataset_read_path: list[str] | None = None
    tokenizer_name: str | None = None
    vocab_size: int | None = None
    token_size_in_bytes: int | None = None
    return_positions: bool | None = True
    skip_in_stream: bool | None = False
    pad_samples_to_global_batch_size: bool | None = False
    dataset_max_tokens: list[int] | None = None
    shuffle_files: bool | None = False
    use_old_brrr_dataloader: bool | None = False


@dataclass
class DataArgs:
    dataset: NanosetDatasetsArgs | None
    seed: int | None
    num_loading_workers: int | None = 1


@dataclass
class DatasetStageArgs:
    name: str
    start_training_step: int
    data: DataArgs
    sequence_length: int | None = None


def nanotron_checks(stages: list[DatasetStageArgs]) -> None:
    """DatasetStageArgs.__post_init__, NanosetDatasetsArgs.__post_init__ and Config.__post_init__ rules."""
    for s in stages:
        assert s.start_training_step >= 0
        ds = s.data.dataset
        assert ds.dataset_weights is None or len(ds.dataset_weights) == len(ds.dataset_folder)
    stages = sorted(stages, key=lambda s: s.start_training_step)
    assert any(s.start_training_step == 1 for s in stages), "a stage must start at 1"
    assert len({s.name for s in stages}) == len(stages) and len({s.start_training_step for s in stages}) == len(stages)


# sail-sg/regmix model_training/pretrain/tinyllama.py: reads config["train"], config["valid"], then `del`s both;
# each key is a file prefix: sorted(glob.glob(str(data_dir / f"{prefix}-*")))
def regmix_trainer_files(config: dict, data_dir: Path) -> dict[str, list[str]]:
    train = [(k, float(v)) for k, v in config["train"].items()]
    valid = [[(k, float(v))] for k, v in config["valid"].items()]
    del config["train"]
    del config["valid"]
    found = {k: sorted(glob.glob(str(data_dir / f"{k}-*"))) for k, _ in train}
    assert math.isclose(sum(w for _, w in train), 1.0, rel_tol=1e-6) and valid
    return found


def strict(cls, data, where="export"):
    return from_dict(cls, data, where=where)
