"""Typed configs of the proxies package: model presets, training, sweeps.

Defaults live here and nowhere else. YAML files are read with `regmix.config.load_config`, which
names the field of an unknown key or a wrong type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from regmix.errors import RegmixError
from regmix.sample import Method


@dataclass(frozen=True)
class ModelConfig:
    """Decoder-only transformer: RMSNorm, SwiGLU, rotary embeddings, no biases, untied head."""

    n_layers: int = 2
    d_model: int = 256
    n_heads: int = 8
    d_ff: int = 512
    rope_base: float = 10000.0
    init_std: float = 0.02
    attn_blocks: int = 4  # causal query blocks of the attention kernel (1 = plain masked attention)
    attn_chunk: int = 2  # (sequence, head) pairs per proxy that attention takes at a time (0: all)
    cpu_kernel: bool = False  # attention, SwiGLU, RMSNorm by compiled CPU kernels (proxies.cpu_kernels); train.for_mesh

    def __post_init__(self):
        for name in ("n_layers", "d_model", "n_heads", "d_ff", "attn_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.attn_chunk < 0:
            raise ValueError(f"attn_chunk must be >= 0, got {self.attn_chunk}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model {self.d_model} must split into {self.n_heads} heads of even size")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(n_layers=1, d_model=32, n_heads=2, d_ff=64, attn_blocks=2),  # tests
    "small": ModelConfig(n_layers=2, d_model=128, n_heads=4, d_ff=256),
    "1m": ModelConfig(n_layers=2, d_model=256, n_heads=8, d_ff=512),  # RegMix 1M proxy
    "60m": ModelConfig(n_layers=10, d_model=768, n_heads=12, d_ff=1536),  # RegMix 60M (sans embeddings)
}


def preset(name: str | ModelConfig) -> ModelConfig:
    """Model preset by name (a ModelConfig passes through)."""
    if isinstance(name, ModelConfig):
        return name
    if name not in PRESETS:
        raise RegmixError(f"unknown model preset '{name}' (known: {', '.join(PRESETS)})")
    return PRESETS[name]


@dataclass(frozen=True)
class TrainConfig:
    """One proxy's training run (every proxy of a call shares it; only the data differ)."""

    steps: int = 1000
    batch: int = 16
    seq_len: int = 256
    lr: float = 1e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    grad_clip: float = 1.0
    block_steps: int = 16  # data blocks: exact domain counts over block_steps * batch windows
    eval_every: int = 0  # 0: evaluate at the end only
    eval_windows: int = 32  # validation windows per domain the run is scored on (the first ones; 0: all of the split)
    curve_windows: int | None = None  # windows per domain of the loss curves (eval_every; None: eval_windows, 0: all)
    eval_batch: int = 32
    checkpoint_every: int = 200  # steps between orbax checkpoints (0: never)
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch", "seq_len", "block_steps", "eval_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.curve_windows is not None and self.curve_windows < 0:
            raise ValueError(f"curve_windows must be >= 0 (0: all; null: eval_windows), got {self.curve_windows}")
        for name in ("warmup_steps", "eval_every", "eval_windows", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def curve_windows_used(self) -> int:
        """The windows the loss curves read: curve_windows, or eval_windows where it is None."""
        return self.eval_windows if self.curve_windows is None else self.curve_windows


@dataclass(frozen=True)
class RunConfig:
    """How a sweep is spread over the machine (never changes the results)."""

    workers: int = 0  # worker processes, one pinned core each; 0: one per core; 1: in this process
    memory_budget_gb: float = 8.0  # peak RSS summed over workers; sizes the groups
    group_size: int = 0  # proxies trained together in one vmapped state; 0: from the budget


@dataclass(frozen=True)
class SweepConfig:
    """`regmix sweep`: sample mixtures over train_domains, train proxies, evaluate eval_domains."""

    store: Path
    n_proxies: int = 64
    model: str = "1m"
    sampler: Method = "regmix"
    train_domains: list[str] | None = None  # default: every store domain
    eval_domains: list[str] | None = None  # default: every store domain (held-out ones included)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    temperature: float = 0.5  # RegMix prior tempering
    seed: int = 0  # mixture sampling seed (training seed: train.seed)
    lr_scale: dict[str, float] = field(default_factory=dict)  # per-run lr multipliers (stability probes)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        if self.n_proxies < 1:
            raise ValueError(f"n_proxies must be >= 1, got {self.n_proxies}")
        if self.model not in PRESETS:
            raise ValueError(f"model: unknown preset '{self.model}' (known: {', '.join(PRESETS)})")
