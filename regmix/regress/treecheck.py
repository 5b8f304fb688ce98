"""Validate a LightGBM model text file before LightGBM's parser or the compiled path sees it.

LightGBM's C++ parser trusts its input: a truncated file or a split on a feature the model does not
have crashes the interpreter. Every tree is checked here to be complete and in range."""
from __future__ import annotations

import math
from pathlib import Path

from regmix.errors import RegmixError

_ARRAYS = ("split_feature", "threshold", "left_child", "right_child")


def _ints(path, tree, key, text):
    try:
        return [int(v) for v in text.split()]
    except ValueError:
        raise RegmixError(f"{path}: tree {tree}: {key} is not a list of integers") from None


def validate_tree_file(path: Path, n_features: int | None) -> None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RegmixError(f"{path}: cannot read tree file ({type(err).__name__})") from None
    if not text.startswith("tree\n"):
        raise RegmixError(f"{path}: not a LightGBM tree file (no 'tree' header)")
    if "\nend of trees" not in text:
        raise RegmixError(f"{path}: truncated tree file (no 'end of trees')")
    body = text[: text.index("\nend of trees")]
    header, *blocks = body.split("\nTree=")
    head = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    try:
        max_idx = int(head["max_feature_idx"])
        n_sizes = len(head["tree_sizes"].split())
    except (KeyError, ValueError):
        raise RegmixError(f"{path}: tree file header lacks a valid max_feature_idx/tree_sizes") from None
    if n_features is not None and max_idx != n_features - 1:
        raise RegmixError(f"{path}: tree file has {max_idx + 1} features, the model has {n_features} domains")
    if not blocks:
        raise RegmixError(f"{path}: tree file holds no trees")
    if len(blocks) != n_sizes:
        raise RegmixError(f"{path}: tree file holds {len(blocks)} trees, its header says {n_sizes}")
    for block in blocks:
        lines = block.splitlines()
        tree = lines[0].strip()
        fields = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
        try:
            leaves = int(fields["num_leaves"])
        except (KeyError, ValueError):
            raise RegmixError(f"{path}: tree {tree}: missing or bad num_leaves") from None
        if leaves < 1 or "leaf_value" not in fields or "shrinkage" not in fields:
            raise RegmixError(f"{path}: tree {tree} is incomplete")
        try:
            values = [float(v) for v in fields["leaf_value"].split()]
        except ValueError:
            raise RegmixError(f"{path}: tree {tree}: leaf_value is not a list of numbers") from None
        if len(values) != leaves or not all(math.isfinite(v) for v in values):
            raise RegmixError(f"{path}: tree {tree}: leaf_value needs {leaves} finite numbers")
        if leaves == 1:
            continue
        if any(k not in fields for k in _ARRAYS):
            raise RegmixError(f"{path}: tree {tree} is incomplete (missing split arrays)")
        feats = _ints(path, tree, "split_feature", fields["split_feature"])
        left = _ints(path, tree, "left_child", fields["left_child"])
        right = _ints(path, tree, "right_child", fields["right_child"])
        n_thr = len(fields["threshold"].split())
        if not len(feats) == len(left) == len(right) == n_thr == leaves - 1:
            raise RegmixError(f"{path}: tree {tree}: split arrays need {leaves - 1} entries each")
        for f in feats:
            if not 0 <= f <= max_idx:
                raise RegmixError(f"{path}: tree {tree}: split reads feature {f} of {max_idx + 1}")
        for c in left + right:
            if not -leaves <= c < leaves - 1:
                raise RegmixError(f"{path}: tree {tree}: child index {c} out of range")
