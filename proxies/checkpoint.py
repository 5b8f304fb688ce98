"""Orbax checkpoints of a stacked training state plus a small JSON record (step, flags, curves).

The state is saved as its flat list of leaves, so any pytree (nnx.State, optax states) round-trips
against the abstract state of a fresh init. Saves are synchronous and orbax finalizes each one by
an atomic rename, so a process killed at any moment leaves the previous checkpoint intact.

A checkpoint is not trusted on restore: the record carries a sha256 over the leaves and the rest of
the record, and the step it names must be the checkpoint's own (and within `max_step`). One that
cannot be read, fails its checksum or is inconsistent is discarded with a warning, and the caller
trains from the start again (the same result as an uninterrupted run: training is deterministic).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from regmix.files import is_disk_full

CHECKSUM = "checksum"  # the record's key holding the digest (not part of the record callers see)


def _manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False, create=True,
                                           cleanup_tmp_directories=True)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def _host(x) -> np.ndarray:
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(jax.device_get(x))


def digest(leaves, record: dict) -> str:
    """sha256 over the leaves (dtype, shape, bytes) and the record as JSON (without its checksum)."""
    h = hashlib.sha256()
    for x in leaves:
        a = np.ascontiguousarray(_host(x))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    plain = {k: v for k, v in record.items() if k != CHECKSUM}
    h.update(json.dumps(plain, sort_keys=True, allow_nan=True).encode())
    return h.hexdigest()


def save(directory: Path, step: int, state, record: dict) -> None:
    """Save `state` (any pytree of arrays) and a JSON-ready `record` as checkpoint `step`."""
    leaves = jax.tree.leaves(state)
    record = json.loads(json.dumps(record))  # as it reads back: tuples become lists
    record[CHECKSUM] = digest(leaves, record)
    named = {f"{i:05d}": x for i, x in enumerate(leaves)}
    with _manager(directory) as mgr:
        mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(named),
                                               record=ocp.args.JsonSave(record)), force=True)
        mgr.wait_until_finished()


_unraisablehook = sys.unraisablehook


def _quiet_closed_loop(unraisable) -> None:
    """When a save fails (a full disk), tensorstore's other pending writes finish in their own threads and call
    `loop.call_soon_threadsafe` on orbax's event loop, closed by then; each call's error is reported as
    unraisable, a traceback of those two asyncio frames alone that says nothing the one-line error does not."""
    tb = unraisable.exc_traceback
    if unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed" \
            and tb is not None and tb.tb_frame.f_code.co_name == "call_soon_threadsafe":
        return
    _unraisablehook(unraisable)


sys.unraisablehook = _quiet_closed_loop


class _DiskFullReports(logging.Filter):
    """Drops the log records of a save that fails on a full disk: orbax logs the error (traceback and all)
    before raising it, and asyncio each abandoned write when it is collected, even after the command has
    printed its one-line error. The raised error is the one report."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not ((exc is not None and is_disk_full(exc)) or is_disk_full(Exception(record.getMessage())))


for _name in ("absl", "asyncio"):
    logging.getLogger(_name).addFilter(_DiskFullReports())


def latest_step(directory: Path) -> int | None:
    if not Path(directory).is_dir():
        return None
    with _manager(directory) as mgr:
        return mgr.latest_step()


def discard(directory: Path, why: str) -> None:
    """Remove a checkpoint folder that cannot be trusted, saying so in one line."""
    warnings.warn(f"{directory}: checkpoint {why}; discarded, training starts again from step 0", stacklevel=3)
    shutil.rmtree(directory, ignore_errors=True)


def restore(directory: Path, abstract_state, max_step: int | None = None) -> tuple[int, object, dict] | None:
    """(step, state, record) of the latest checkpoint, shaped and sharded like `abstract_state`; None when
    there is none, or when it is corrupt or inconsistent (then it is discarded with a warning)."""
    try:
        step = latest_step(directory)
    except Exception as err:  # a mangled folder name or metadata: orbax's own errors vary by version
        discard(Path(directory), f"folder cannot be read ({type(err).__name__})")
        return None
    if step is None:
        return None
    leaves, treedef = jax.tree.flatten(abstract_state)
    target = {f"{i:05d}": x for i, x in enumerate(leaves)}
    try:
        with _manager(directory) as mgr:
            out = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                            record=ocp.args.JsonRestore()))
        restored = [out["state"][f"{i:05d}"] for i in range(len(leaves))]
        record = out["record"]
    except Exception as err:  # flipped bytes, a truncated file, a record that is not JSON ...
        discard(Path(directory), f"step {step} cannot be read ({type(err).__name__})")
        return None
    why = _inconsistent(step, restored, record, max_step)
    if why:
        discard(Path(directory), f"step {step} {why}")
        return None
    return step, jax.tree.unflatten(treedef, restored), {k: v for k, v in record.items() if k != CHECKSUM}


def _inconsistent(step: int, leaves, record, max_step: int | None) -> str:
    """Why a restored checkpoint cannot be used ('' when it can)."""
    if not isinstance(record, dict):
        return "has a record that is not a JSON object"
    if CHECKSUM not in record:
        return "has no checksum"
    if record[CHECKSUM] != digest(leaves, record):
        return "fails its checksum (its files were changed or damaged)"
    named = record.get("step", step)
    if isinstance(named, bool) or not isinstance(named, int) or named != step:
        return f"has a record naming step {named!r}"
    if step < 0 or (max_step is not None and step > max_step):
        return f"is beyond the run's {max_step} steps"
    return ""
