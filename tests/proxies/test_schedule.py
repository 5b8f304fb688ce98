"""Mixture schedules ([(start, weights), ...]): phases resolved to steps, the switch at the right step,
the windows before it those of the unscheduled run, and a scheduled run resumed across the switch
equal to the uninterrupted one."""

import os

import numpy as np
import pytest

from proxies.batches import MixtureBatches, resolve_schedule
from proxies.config import TrainConfig
from proxies.train import train_mixtures
from regmix.corpus.store import write_store
from regmix.errors import RegmixError
from toy_stores import banded_arrays

DOMAINS = ["a", "b", "c"]
TRAIN = TrainConfig(steps=12, batch=4, seq_len=16, lr=3e-3, warmup_steps=2, block_steps=3, eval_every=3,
                    eval_windows=2, eval_batch=2, checkpoint_every=4)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # Each domain's tokens lie in its own id range, so a window tells which domain it came from.
    arrays = banded_arrays(DOMAINS, 3000, 200)
    return write_store(tmp_path_factory.mktemp("store"), arrays, vocab_size=64, eod_id=63)


def test_phases_resolve_to_steps():
    got = resolve_schedule([(0, {"a": 1.0}), (0.5, [0, 1, 0]), (9, {"b": 0.5, "c": 0.5})], 12, DOMAINS)
    assert [s for s, _ in got] == [0, 6, 9]
    np.testing.assert_array_equal(got[2][1], [0, 0.5, 0.5])
    assert [s for s, _ in resolve_schedule([(0.0, [1, 0, 0]), (0.9, [0, 0, 1])], 100, DOMAINS)] == [0, 90]


@pytest.mark.parametrize("phases, match", [
    ([], "no phases"),
    ([(1, [1, 0, 0])], "must start at 0"),
    ([(0, [1, 0, 0]), (6, [0, 1, 0]), (6, [0, 0, 1])], "increasing steps"),
    ([(0, [1, 0, 0]), (12, [0, 1, 0])], "below 12"),
    ([(0, [1, 0, 0]), (1.5, [0, 1, 0])], r"in \[0, 1\)"),
    ([(0, [1, 0, 0]), ("6", [0, 1, 0])], "step or a fraction"),
    ([(0, [0.5, 0.2, 0])], "sum to 1"),
    ([(0, {"a": 0.5, "zz": 0.5})], "unknown domain 'zz'"),
    ([(0, [1, 0, 0], 3)], r"\(start, weights\)"),
])
def test_bad_schedules_are_refused(phases, match):
    with pytest.raises(RegmixError, match=match):
        resolve_schedule(phases, 12, DOMAINS)


def test_schedule_switches_at_the_right_steps(store):
    kw = dict(batch=4, seq_len=8, steps=20, seed=3, proxy_ids=[0, 1], block_steps=4)
    w = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    sched = [[(0, [1, 0, 0]), (7, [0, 1, 0]), (0.75, [0, 0, 1])], None]  # proxy 1: no schedule
    b = MixtureBatches(store, DOMAINS, w, schedule_M=sched, **kw)
    domain = lambda step, m: set((b.get(step)[m] // 10).ravel().tolist())
    assert [domain(s, 0) for s in range(20)] == [{0}] * 7 + [{1}] * 8 + [{2}] * 5
    assert all(domain(s, 1) == {1} for s in range(20))
    np.testing.assert_array_equal(b.mixture(0, 14), [0, 1, 0])
    plain = MixtureBatches(store, DOMAINS, w, **kw)
    for s in range(4):  # the blocks that end before the switch: exactly the unscheduled run's windows
        np.testing.assert_array_equal(b.get(s), plain.get(s))
    for s in range(4, 7):  # the block cut short by the switch keeps exact counts over its 3 steps: other draws
        assert not np.array_equal(b.get(s)[0], plain.get(s)[0])
    for s in (19, 3, 15, 7):  # any step in any order (a resumed run rebuilds any step)
        np.testing.assert_array_equal(b.get(s), MixtureBatches(store, DOMAINS, w, schedule_M=sched, **kw).get(s))
    # the two-phase schedule is the late mixture of the last fraction, window for window
    late = MixtureBatches(store, DOMAINS, w, late_w_MxK=np.array([[0, 0, 1.0], [0, 1.0, 0]]), late_fraction=0.25, **kw)
    two = MixtureBatches(store, DOMAINS, w, schedule_M=[[(0, w[0]), (15, [0, 0, 1])], [(0, w[1]), (0.75, w[1])]], **kw)
    for s in range(20):
        np.testing.assert_array_equal(late.get(s), two.get(s))
    with pytest.raises(RegmixError, match="not both"):
        MixtureBatches(store, DOMAINS, w, schedule_M=sched, late_w_MxK=w, late_fraction=0.5, **kw)


SCHEDULE = [[(0, [0.6, 0.4, 0.0]), (0.5, [0.0, 0.0, 1.0])], None]
W = np.array([[0.6, 0.4, 0.0], [0.2, 0.3, 0.5]])


@pytest.fixture(scope="module")
def scheduled(store):
    return train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN, schedule_M=SCHEDULE)


def test_scheduled_training_follows_the_schedule(store, scheduled):
    plain = train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN)
    assert scheduled.curve_steps_S.tolist() == [0, 3, 6, 9, 12]
    # the same curves up to the switch at step 6 (a block boundary), other ones after it for the scheduled proxy only
    np.testing.assert_array_equal(scheduled.curve_loss_SxMxE[:3], plain.curve_loss_SxMxE[:3])
    assert not np.array_equal(scheduled.curve_loss_SxMxE[3:, 0], plain.curve_loss_SxMxE[3:, 0])
    np.testing.assert_array_equal(scheduled.curve_loss_SxMxE[:, 1], plain.curve_loss_SxMxE[:, 1])
    # after the switch to domain c alone, proxy 0's loss on c falls faster than the unscheduled one's
    assert scheduled.val_loss_MxE[0, 2] < plain.val_loss_MxE[0, 2]


@pytest.mark.parametrize("stop", [5, 9])  # checkpoint at 4 (resumes across the switch) or at 8 (after it)
def test_resume_across_the_switch_equals_uninterrupted(store, scheduled, tmp_path, stop):
    class Stop(Exception):
        pass

    def stop_at(step, tokens):
        if step == stop:
            raise Stop

    with pytest.raises(Stop):
        train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN, schedule_M=SCHEDULE, checkpoint_dir=tmp_path,
                       on_step=stop_at)
    assert sorted(os.listdir(tmp_path)) == [str(stop // 4 * 4)]
    resumed = train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN, schedule_M=SCHEDULE,
                             checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(resumed.curve_loss_SxMxE, scheduled.curve_loss_SxMxE)
    np.testing.assert_array_equal(resumed.val_loss_MxE, scheduled.val_loss_MxE)
    other = [[(0, [0.6, 0.4, 0.0]), (0.75, [0.0, 0.0, 1.0])], None]  # another switch: not this checkpoint's run
    with pytest.raises(RegmixError, match="different run"):
        train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN, schedule_M=other, checkpoint_dir=tmp_path)
