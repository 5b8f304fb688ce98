"""The pipeline config (presets in regmix/configs): validated; the library configs are composed, not copied."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from proxies.config import ModelConfig, RunConfig, SweepConfig, TrainConfig  # plain dataclasses: no JAX import
from regmix.config import load_config
from regmix.optimize import OptimizeConfig
from regmix.regress.fit import FitConfig
from regmix.sample import Method


def _default(cls, name: str):
    """A field's default, so a section that re-exposes a library knob cannot drift from it."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


@dataclass(frozen=True)
class PrepareSection:
    """How the corpus becomes a token store (the options of `regmix prepare`)."""

    tokenizer: str = "byte"  # byte | bpe:VOCAB (trained on the corpus; slower proxies) | file:tokenizer.json
    valid_fraction: float = 0.05  # share of each domain's documents held out, by a hash of their bytes
    text_field: str = "text"  # the field of .jsonl / .parquet records that holds the text
    # {domain: at most this many training tokens}: whole documents in file order (the validation split stays
    # whole), to give the natural mixture the skew real corpora have; prepare refuses a domain the corpus lacks
    token_limits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        for name, n in self.token_limits.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"token_limits.{name}: expected a positive number of tokens, got {n!r}")


@dataclass(frozen=True)
class CapsSection:
    """Repetition caps for optimize (and the export's epoch plan): weight * token_budget <= max_epochs * tokens.

    token_budget 0: no caps. The token counts are the prepared store's."""

    token_budget: float = 0.0  # tokens of the large run the mixture is for
    max_epochs: float = 4.0


@dataclass(frozen=True)
class SampleSection:
    n_proxies: int = _default(SweepConfig, "n_proxies")
    sampler: Method = _default(SweepConfig, "sampler")
    temperature: float = _default(SweepConfig, "temperature")
    seed: int = _default(SweepConfig, "seed")


@dataclass(frozen=True)
class SweepSection:
    model: str = _default(SweepConfig, "model")
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass(frozen=True)
class MergingSection:
    """Merged-model ablations (Na et al. 2024) in the final stage: a seed proxy and one branch per training
    domain at the sweep's settings. Merged models score the first `n_compare` sweep mixtures (against models
    trained from the seed on them, and against the sweep's proxies), ablate each domain around the optimized
    mixture, and the domains whose doubling helps most are upsampled at the end of extra final runs. Re-ranking
    (regmix.pipeline.reranking): the regressor's `rerank_top` best candidates are scored by merging and the mean
    of the `rerank_k` best of them trains as the final run `reranked`, paired with `optimized`."""

    enabled: bool = False
    seed_steps: int = 0  # 0: the sweep's steps
    branch_steps: int = 0  # 0: a quarter of the seed's
    branch_lr_factor: float = 0.1  # branch lr = the sweep's peak lr x this, constant
    n_compare: int = 16  # sweep mixtures also trained from the seed (merged-vs-trained correlation)
    upsample_fractions: list[float] = field(default_factory=lambda: [0.1, 0.2])  # last fraction of the steps
    upsample_factor: float = 2.0  # the favoured domains' weights x this in the late phase
    max_upsampled: int = 2  # at most this many favoured domains
    rerank_top: int = 1000  # regressor's best candidates re-scored by merging (0: no re-ranking, no run)
    rerank_k: int = 0  # the merging-informed mixture averages this many of them (0: optimize.top_k)

    def __post_init__(self):
        if self.seed_steps < 0 or self.branch_steps < 0:
            raise ValueError("final.merging: seed_steps and branch_steps must be >= 0")
        if not self.branch_lr_factor > 0 or not self.upsample_factor > 1:
            raise ValueError("final.merging: branch_lr_factor must be > 0 and upsample_factor > 1")
        if self.rerank_top < 0 or self.rerank_k < 0 or (self.rerank_top and self.rerank_k > self.rerank_top):
            raise ValueError("final.merging: rerank_top and rerank_k must be >= 0, rerank_k at most rerank_top")
        if self.n_compare < 3 or self.max_upsampled < 1:
            raise ValueError("final.merging: n_compare must be >= 3 and max_upsampled >= 1")
        if any(not 0 < f < 1 for f in self.upsample_fractions) or len(set(self.upsample_fractions)) != len(
                self.upsample_fractions):
            raise ValueError("final.merging: upsample_fractions must be distinct and in (0, 1)")


@dataclass(frozen=True)
class FinalSection:
    model: ModelConfig = field(default_factory=lambda: ModelConfig(n_layers=2, d_model=64, n_heads=4, d_ff=128,
                                                                   attn_blocks=2))
    train: TrainConfig = field(default_factory=TrainConfig)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    mean_target_run: bool = True  # also train the mixture optimized for the mean training loss
    late_fraction: float = 0.0  # > 0: the optimized run trains on late_mixture for the last fraction of steps
    late_mixture: dict[str, float] = field(default_factory=dict)  # default: the optimized one
    merging: MergingSection = field(default_factory=MergingSection)  # ablations and upsampled runs
    workers: int = 0  # 0: one per core


@dataclass(frozen=True)
class PipelineConfig:
    """Every knob of the pipeline (`regmix demo` runs it on the preset demo.yaml), validated."""

    corpus: str = "demo"
    seq_len: int = 128  # prepare's check: every domain holds one training window
    prepare: PrepareSection = field(default_factory=PrepareSection)
    target: str = "pydocs"  # domain whose validation loss is minimized: held out, or one of train_domains
    train_domains: list[str] = field(default_factory=lambda: ["books", "code", "kerneldocs", "legal", "math",
                                                              "manpages"])
    sample: SampleSection = field(default_factory=SampleSection)
    sweep: SweepSection = field(default_factory=SweepSection)
    fit: FitConfig = field(default_factory=FitConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    caps: CapsSection = field(default_factory=CapsSection)
    final: FinalSection = field(default_factory=FinalSection)

    def __post_init__(self):
        if not self.target or self.target == "train_mean":
            raise ValueError("target: name a domain (the mean training loss is always optimized too, "
                             "as the 'optimized_mean' final run)")
        if len(self.train_domains) < 2 or len(set(self.train_domains)) != len(self.train_domains):
            raise ValueError("train_domains: need at least 2 distinct domains")
        if not self.final.seeds:
            raise ValueError("final.seeds: need at least one seed")
        late = self.final.late_mixture
        if late:
            unknown = [d for d in late if d not in self.train_domains]
            if unknown:
                raise ValueError(f"final.late_mixture: '{unknown[0]}' is not a training domain")
            if min(late.values()) < 0 or abs(sum(late.values()) - 1) > 1e-6:
                raise ValueError("final.late_mixture: weights must be >= 0 and sum to 1")
        if not 0 <= self.prepare.valid_fraction < 1:
            raise ValueError(f"prepare.valid_fraction must be in [0, 1), got {self.prepare.valid_fraction}")
        if not (self.caps.token_budget >= 0 and self.caps.max_epochs > 0):
            raise ValueError("caps: token_budget must be >= 0 and max_epochs > 0")
        if not 0 <= self.final.late_fraction < 1:
            raise ValueError(f"final.late_fraction must be in [0, 1), got {self.final.late_fraction}")


    @property
    def held_out(self) -> bool:
        return self.target not in self.train_domains

    @property
    def eval_domains(self) -> list[str]:
        """The domains every proxy and final run is scored on: the training ones and the target."""
        return list(self.train_domains) + ([self.target] if self.held_out else [])


def load_pipeline_config(path: str | Path, seeds: list[int] | None = None) -> PipelineConfig:
    overrides = {"final.seeds": list(seeds)} if seeds else None
    return load_config(PipelineConfig, path, overrides)
