"""Where each stage's files live under the output folder, and which stages are done with this config."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from regmix.config import to_dict
from regmix.corpus.prepare import corpus_digest
from regmix.files import atomic_write_json
from regmix.pipeline.config import PipelineConfig

STAGES = ("prepare", "sample", "sweep", "fit", "optimize", "export", "final", "report")
# config sections each stage reads (a stage's key also covers every earlier stage's sections)
SECTIONS = {"prepare": ("corpus", "seq_len", "prepare"), "sample": ("train_domains", "target", "sample"),
            "sweep": ("sweep",), "fit": ("fit",), "optimize": ("optimize", "caps"), "export": (),
            "final": ("final",), "report": ()}


def store_dir(out: Path) -> Path:
    return out / "prepare" / "store"


def sweep_dir(out: Path) -> Path:
    return out / "sweep"


def merging_dir(out: Path) -> Path:
    return out / "merging"


def done_path(out: Path, stage: str) -> Path:
    return out / stage / "done.json"


def stage_key(cfg: PipelineConfig, stage: str) -> str:
    """The hash of the config sections `stage` and every earlier stage read, and of the corpus's content
    (so a corpus rebuilt in place re-runs everything; an edited section re-runs its stage and the later ones)."""
    data = to_dict(cfg)
    parts = {"corpus_content": corpus_digest(cfg.corpus)}
    for s in STAGES[: STAGES.index(stage) + 1]:
        for section in SECTIONS[s]:
            parts[section] = data[section]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_done(out: Path, cfg: PipelineConfig, stage: str) -> dict | None:
    """The stage's done record if it finished with the current config (and so did every earlier one)."""
    for s in STAGES[: STAGES.index(stage) + 1]:
        try:
            rec = json.loads(done_path(out, s).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("key") != stage_key(cfg, s):
            return None
        if s == stage:
            return rec
    return None


def mark_done(out: Path, cfg: PipelineConfig, stage: str, seconds: float, **extra) -> None:
    atomic_write_json(done_path(out, stage), {"stage": stage, "key": stage_key(cfg, stage),
                                              "seconds": round(seconds, 3), **extra})


def stage_seconds(out: Path) -> dict[str, float]:
    secs = {}
    for s in STAGES:
        try:
            secs[s] = float(json.loads(done_path(out, s).read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return secs
