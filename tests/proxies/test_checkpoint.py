"""Orbax checkpoints: a stacked state and its record round-trip; a missing checkpoint is None."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from proxies import checkpoint


class State(NamedTuple):  # shaped like train.TrainState: nested containers, a leading proxy axis
    params: dict
    opt: tuple
    lr_scale: jax.Array


def make_state(seed: int) -> State:
    k = jax.random.split(jax.random.key(seed), 3)
    return State({"w": jax.random.normal(k[0], (2, 3, 4)), "b": jax.random.normal(k[1], (2, 4))},
                 (jnp.arange(2, dtype=jnp.int32) + seed, jax.random.uniform(k[2], (2,))), jnp.ones(2) * seed)


def test_save_restore_round_trip(tmp_path):
    state = make_state(1)
    record = {"signature": "abc", "step": 8, "diverged": [False, True], "curve_loss": [[1.5, None]]}
    checkpoint.save(tmp_path, 8, state, record)
    abstract = jax.tree.map(jnp.zeros_like, state)
    step, restored, rec = checkpoint.restore(tmp_path, abstract)
    assert step == 8 and rec == record
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_a_later_save_replaces_the_earlier_one(tmp_path):
    checkpoint.save(tmp_path, 4, make_state(1), {"step": 4})
    checkpoint.save(tmp_path, 12, make_state(2), {"step": 12})
    assert checkpoint.latest_step(tmp_path) == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["12"]  # one kept: the latest
    step, restored, rec = checkpoint.restore(tmp_path, make_state(0))
    assert (step, rec) == (12, {"step": 12})
    np.testing.assert_array_equal(restored.lr_scale, make_state(2).lr_scale)


def test_missing_checkpoint_is_none_and_creates_nothing(tmp_path):
    missing = tmp_path / "none"
    assert checkpoint.latest_step(missing) is None
    assert checkpoint.restore(missing, make_state(0)) is None
    assert not missing.exists()
    (tmp_path / "empty").mkdir()  # a folder with no checkpoint in it yet
    assert checkpoint.restore(tmp_path / "empty", make_state(0)) is None
