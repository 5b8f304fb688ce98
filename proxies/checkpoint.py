"""Orbax checkpoints of a stacked training state plus a small JSON record (step, flags, curves).

The state is saved as its flat list of leaves, so any pytree (nnx.State, optax states) round-trips
against the abstract state of a fresh init. Saves are synchronous and orbax finalizes each one by
an atomic rename, so a process killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


def _manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False, create=True,
                                           cleanup_tmp_directories=True)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save(directory: Path, step: int, state, record: dict) -> None:
    """Save `state` (any pytree of arrays) and a JSON-ready `record` as checkpoint `step`."""
    leaves = {f"{i:05d}": x for i, x in enumerate(jax.tree.leaves(state))}
    with _manager(directory) as mgr:
        mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(leaves),
                                               record=ocp.args.JsonSave(record)), force=True)
        mgr.wait_until_finished()


def latest_step(directory: Path) -> int | None:
    if not Path(directory).is_dir():
        return None
    with _manager(directory) as mgr:
        return mgr.latest_step()


def restore(directory: Path, abstract_state) -> tuple[int, object, dict] | None:
    """(step, state, record) of the latest checkpoint, shaped and sharded like `abstract_state`."""
    step = latest_step(directory)
    if step is None:
        return None
    leaves, treedef = jax.tree.flatten(abstract_state)
    target = {f"{i:05d}": x for i, x in enumerate(leaves)}
    with _manager(directory) as mgr:
        out = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                        record=ocp.args.JsonRestore()))
    restored = [out["state"][f"{i:05d}"] for i in range(len(leaves))]
    return step, jax.tree.unflatten(treedef, restored), dict(out["record"])
