"""Load regmix's exports with the trainers' own libraries; run inside the consumers' venv, not regmix's.

`python consumer_checks.py MANIFEST.json` reads the manifest written by scripts/check_exports.py
(format -> exported files, the weights they should carry, sizes) and prints one JSON line per check:
{"format", "consumer", "ok", "error", "shares": [[expected, measured], ...], "detail"}. Each check builds
the consumer's config objects from the files unchanged and, where the library can do it on tiny local
data, draws a sample through the consumer's own mixing code to measure the shares.
"""

from __future__ import annotations

import asyncio
import importlib.metadata as md
import json
import os
import sys
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import yaml


def version(*dists: str) -> str:
    for dist in dists:
        try:
            return f"{dist} {md.version(dist)}"
        except md.PackageNotFoundError:
            continue
    return f"{dists[0]} (version unknown)"


def shares(counts: Counter, weights: dict[str, float]) -> list[list]:
    total = sum(counts.values())
    return [[d, w, counts.get(d, 0) / total] for d, w in weights.items()]


def check_hf(job):
    from datasets import Dataset, interleave_datasets

    spec = json.loads(Path(job["files"][0]).read_text(encoding="utf-8"))
    data = [Dataset.from_dict({"domain": [d] * 20000}) for d in spec["domains"]]
    ds = interleave_datasets(data, probabilities=spec["probabilities"], seed=spec["seed"],
                             stopping_strategy=spec["stopping_strategy"])
    counts = Counter(ds[:10000]["domain"])
    it = interleave_datasets([d.to_iterable_dataset() for d in data], probabilities=spec["probabilities"],
                             seed=spec["seed"], stopping_strategy=spec["stopping_strategy"])
    n = sum(1 for _ in it)
    return version("datasets"), shares(counts, job["weights"]), f"map-style and iterable; iterable stopped after {n} rows"


def check_megatron(job):
    from megatron.core.datasets.blended_megatron_dataset_config import BlendedMegatronDatasetConfig
    from megatron.core.datasets.utils import get_blend_from_list

    # megatron/training/utils get_blend_and_blend_per_split: --data-args-path is read as f.read().split()
    blend = get_blend_from_list(Path(job["files"][0]).read_text().split())
    paths, weights = blend
    cfg = BlendedMegatronDatasetConfig(random_seed=1234, sequence_length=job["sequence_length"], blend=blend,
                                       split="1,0,0")
    total = sum(weights)
    by_path = dict(zip(paths, weights))
    measured = [[d, w, by_path.get(job["paths"][d], 0.0) / total] for d, w in job["weights"].items()]
    return version("megatron-core"), measured, f"get_blend_from_list + BlendedMegatronDatasetConfig (split {cfg.split})"


def check_mosaic(job):
    from streaming import MDSWriter, Stream, StreamingDataset

    streams = yaml.safe_load(Path(job["files"][0]).read_text(encoding="utf-8"))["train_loader"]["dataset"]["streams"]
    for name, spec in streams.items():  # tiny MDS shards where the export points
        if not (Path(spec["local"]) / "index.json").exists():
            with MDSWriter(out=spec["local"], columns={"domain": "str"}) as w:
                for _ in range(400):
                    w.write({"domain": name})
    ds = StreamingDataset(streams=[Stream(**spec) for spec in streams.values()], batch_size=1, shuffle=True,
                          shuffle_seed=0, epoch_size=4000)
    counts = Counter(sample["domain"] for sample in ds)
    return version("mosaicml-streaming"), shares(counts, job["weights"]), "Stream(**entry) x StreamingDataset, 4000 samples"


def check_olmo(job):
    from olmo_core.data.source_mixture import SourceMixtureDatasetConfig

    data = yaml.safe_load(Path(job["files"][0]).read_text(encoding="utf-8"))["source_mixture_config"]
    cfg = SourceMixtureDatasetConfig.from_dict(data)
    for src in cfg.source_list.sources:  # raw uint32 token files where the globs point
        folder = Path(src.paths[0]).parent
        folder.mkdir(parents=True, exist_ok=True)
        np.memmap(folder / "part-0.npy", dtype=np.uint32, mode="w+", shape=(job["available"][src.source_name],))[:] = 1
    built = cfg.build(npdtype=np.uint32, sequence_length=job["sequence_length"])
    counts = Counter({s.name: sum(p.tokens for p in s.path_tokens) for s in built.sources})
    return version("ai2-olmo-core"), shares(counts, job["weights"]), f"from_dict + build(): {sum(counts.values())} tokens"


def check_levanter(job):
    import draccus
    from levanter.data import ListAsyncDataset
    from levanter.data.mixture import MixtureDataset, rescale_mixture_schedule_for_batch_schedule
    from levanter.data.text import LMMixtureDatasetConfig
    from levanter.schedule import BatchSchedule

    data = yaml.safe_load(Path(job["files"][0]).read_text(encoding="utf-8"))["data"]
    cfg = draccus.decode(LMMixtureDatasetConfig, {**data, "tokenizer": "passthrough", "vocab_size": 256})
    stages = cfg.train_weights if isinstance(cfg.train_weights, list) else [(0, cfg.train_weights)]
    batch = job["global_batch_size"]
    sched = rescale_mixture_schedule_for_batch_schedule(list(stages), BatchSchedule(batch))
    sets = {d: ListAsyncDataset([d] * 100_000) for d in cfg.components}
    mix = MixtureDataset(sets, sched, block_size=cfg.mixture_block_size, key=0)
    start = sched[job["stage"]][0]
    drawn = asyncio.run(mix.get_batch(list(range(start, start + 4 * cfg.mixture_block_size))))
    detail = f"draccus.decode + MixtureDataset, stage {job['stage']} from step {stages[job['stage']][0]}"
    return version("marin-levanter", "levanter"), shares(Counter(drawn), job["weights"]), detail


def check_nanotron(job):
    from dataclasses import make_dataclass

    from nanotron.config import DatasetStageArgs, get_config_from_dict

    Stages = make_dataclass("Stages", [("data_stages", list[DatasetStageArgs])])  # the data_stages part of Config
    cfg = get_config_from_dict(yaml.safe_load(Path(job["files"][0]).read_text(encoding="utf-8")), config_class=Stages)
    stage = sorted(cfg.data_stages, key=lambda s: s.start_training_step)[job["stage"]]
    ds = stage.data.dataset
    by_folder = dict(zip(ds.dataset_folder, ds.dataset_weights))
    measured = [[d, w, by_folder.get(job["paths"][d], 0.0)] for d, w in job["weights"].items()]
    return version("nanotron"), measured, f"get_config_from_dict(DatasetStageArgs), stage '{stage.name}' at {stage.start_training_step}"


def check_olmix(job):
    from olmix.aliases import MixEntry, flatten_mix
    from pydantic import TypeAdapter

    # LaunchConfig's before-validator flattens the mix, then pydantic validates dict[str, MixEntry]
    mix = yaml.safe_load(Path(job["files"][0]).read_text(encoding="utf-8"))["mix"]
    entries = TypeAdapter(dict[str, MixEntry]).validate_python(flatten_mix(mix))
    measured = [[d, w, entries[d].weight if d in entries else 0.0] for d, w in job["weights"].items()]
    return version("olmix"), measured, "flatten_mix + dict[str, MixEntry] as LaunchConfig validates mix"


CHECKS = {"hf": check_hf, "megatron": check_megatron, "mosaic": check_mosaic, "olmo": check_olmo,
          "levanter": check_levanter, "nanotron": check_nanotron, "olmix": check_olmix}


def main(manifest: str) -> int:
    jobs = json.loads(Path(manifest).read_text())
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    for job in jobs:
        row = {"format": job["format"], "label": job["label"]}
        try:
            consumer, measured, detail = CHECKS[job["format"]](job)
            row.update(ok=True, consumer=consumer, shares=measured, detail=detail)
        except ImportError as err:
            row.update(ok=None, error=f"not installable here: {err}")
        except BaseException as err:  # the consumer refused the file: report it, go on with the next
            row.update(ok=False, error=f"{type(err).__name__}: {err}".splitlines()[0][:300],
                       trace=traceback.format_exc()[-1500:])
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
