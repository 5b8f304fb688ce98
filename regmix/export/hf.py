"""Load an `hf` export into `datasets.interleave_datasets`.

Without regmix, the file is two lines away from a dataset::

    spec = json.load(open("mixture.hf.json"))
    ds = interleave_datasets([load_dataset(p, split="train", streaming=True) for p in spec["datasets"]],
                             probabilities=spec["probabilities"], seed=spec["seed"],
                             stopping_strategy=spec["stopping_strategy"])
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from regmix.errors import RegmixError


def interleave(spec: str | Path | Mapping, datasets: Mapping, **overrides):
    """`datasets.interleave_datasets` over `datasets` ({domain: Dataset or IterableDataset}) as `spec` says."""
    try:
        from datasets import interleave_datasets  # optional: regmix itself never needs `datasets`
    except ImportError:
        raise RegmixError("regmix.export.hf.interleave needs the `datasets` package (pip install datasets)") from None
    where = "hf spec"
    if not isinstance(spec, Mapping):
        where = str(spec)
        spec = json.loads(Path(spec).read_text(encoding="utf-8"))
    missing = [d for d in spec["domains"] if d not in datasets]
    if missing:
        raise RegmixError(f"{where}: no dataset given for domain '{missing[0]}' (given: {', '.join(map(str, datasets))})")
    kwargs = {"probabilities": spec["probabilities"], "seed": spec["seed"], "stopping_strategy": spec["stopping_strategy"]}
    kwargs.update(overrides)
    return interleave_datasets([datasets[d] for d in spec["domains"]], **kwargs)
