"""Validate a LightGBM text model before LightGBM's parser or the compiled path sees it.

LightGBM trusts its text format: a truncated file, a tree cut short, a child index out of range or a
split on a feature the model does not have can crash the interpreter (SIGSEGV/SIGABRT) instead of
raising. A model folder is user input, so every tree file is checked here in pure Python first, and
handed to LightGBM without its `tree_sizes` byte offsets (LightGBM then parses tree by tree).
"""

from __future__ import annotations

import math
from pathlib import Path

from regmix.errors import RegmixError

_PER_SPLIT = ("split_feature", "threshold", "decision_type", "left_child", "right_child")


def _ints(path: Path, tree: int, key: str, text: str) -> list[int]:
    try:
        return [int(v) for v in text.split()]
    except ValueError:
        raise RegmixError(f"{path}: tree {tree}: {key} holds a value that is not an integer") from None


def _floats(path: Path, tree: int, key: str, text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise RegmixError(f"{path}: tree {tree}: {key} holds a value that is not a number") from None
    if key == "leaf_value" and not all(math.isfinite(v) for v in values):
        raise RegmixError(f"{path}: tree {tree}: leaf_value is not finite")
    return values


def checked_model_text(path: Path, n_features: int) -> str:
    """The model text of `path`, checked against `n_features` inputs, ready for lgb.Booster(model_str=...)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegmixError(f"{path}: file not found (named by the model folder's model.json)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RegmixError(f"{path}: cannot read: {err}") from None
    if not text.startswith("tree\n"):
        raise RegmixError(f"{path}: not a LightGBM text model (it must start with 'tree')")
    if "\nend of trees" not in text:
        raise RegmixError(f"{path}: truncated LightGBM model (no 'end of trees')")
    body = text[: text.index("\nend of trees")]
    header, *blocks = body.split("\nTree=")
    keys = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    try:
        max_feature = int(keys.get("max_feature_idx", ""))
    except ValueError:
        raise RegmixError(f"{path}: header: max_feature_idx missing or not an integer") from None
    if max_feature != n_features - 1:
        raise RegmixError(f"{path}: the trees read {max_feature + 1} features, the model has {n_features} domains")
    if not blocks:
        raise RegmixError(f"{path}: no trees")
    sizes = keys.get("tree_sizes", "").split()
    if sizes and len(sizes) != len(blocks):
        raise RegmixError(f"{path}: truncated LightGBM model: {len(blocks)} of its {len(sizes)} trees")
    for i, block in enumerate(blocks):
        lines = block.splitlines()
        if not lines or lines[0].strip() != str(i):
            raise RegmixError(f"{path}: tree {i}: missing or out of order")
        fields = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
        try:
            leaves = int(fields["num_leaves"])
        except (KeyError, ValueError):
            raise RegmixError(f"{path}: tree {i}: num_leaves missing or not an integer") from None
        if leaves < 1:
            raise RegmixError(f"{path}: tree {i}: num_leaves must be >= 1")
        if int(fields.get("num_cat", "0") or 0) != 0:
            raise RegmixError(f"{path}: tree {i}: categorical splits are not used by regmix models")
        if len(_floats(path, i, "leaf_value", fields.get("leaf_value", ""))) != leaves:
            raise RegmixError(f"{path}: tree {i}: leaf_value needs {leaves} values")
        if leaves == 1:
            continue
        for key in _PER_SPLIT:
            if key not in fields:
                raise RegmixError(f"{path}: tree {i}: {key} missing (tree cut short?)")
            values = (_floats if key == "threshold" else _ints)(path, i, key, fields[key])
            if len(values) != leaves - 1:
                raise RegmixError(f"{path}: tree {i}: {key} needs {leaves - 1} values, has {len(values)}")
            if key == "split_feature" and any(not 0 <= f < n_features for f in values):
                bad = next(f for f in values if not 0 <= f < n_features)
                raise RegmixError(f"{path}: tree {i}: a split reads feature {bad} of {n_features}")
            if key in ("left_child", "right_child"):
                for c in values:
                    if not (0 <= c < leaves - 1 or 0 <= ~c < leaves):
                        raise RegmixError(f"{path}: tree {i}: {key} {c} is outside the tree")
    return "\n".join(line for line in text.split("\n") if not line.startswith("tree_sizes="))


def inside(directory: Path, name: object) -> Path:
    """`directory / name` for a plain file name inside `directory` (no separators, no '..', no links out)."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise RegmixError(f"{directory / 'model.json'}: file name {str(name)[:80]!r} is not a plain name inside "
                          "the model folder")
    path = directory / name
    if path.is_symlink() or (path.exists() and path.resolve().parent != directory.resolve()):
        raise RegmixError(f"{directory / 'model.json'}: {name!r} leads outside the model folder")
    return path
