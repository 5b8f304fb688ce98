"""Training many proxies at once: vmapped == alone, seeds, same_init, divergence, resume."""

import os

import numpy as np
import pytest

from proxies.config import TrainConfig
from proxies.train import train_mixtures
from regmix.corpus.store import write_store
from regmix.errors import RegmixError
from toy_stores import periodic_arrays

DOMAINS = ["a", "b", "c"]
TRAIN = TrainConfig(steps=12, batch=4, seq_len=32, lr=3e-3, warmup_steps=2, block_steps=4,
                    eval_every=6, eval_windows=4, eval_batch=4, checkpoint_every=4)
W = np.array([[0.6, 0.4, 0.0], [0.0, 0.0, 1.0], [0.2, 0.3, 0.5]])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    arrays = periodic_arrays({**{d: (p, 4000, 400) for d, p in zip(DOMAINS, (3, 50, 100))}, "held": (7, 400, 400)})
    return write_store(tmp_path_factory.mktemp("store"), arrays, vocab_size=257, eod_id=256)


@pytest.fixture(scope="module")
def together(store):
    return train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN)


def test_result_shapes_and_learning(together):
    r = together
    assert r.eval_domains == DOMAINS + ["held"]
    assert r.val_loss_MxE.shape == (3, 4) and r.curve_steps_S.tolist() == [0, 6, 12]
    assert np.all(r.curve_loss_SxMxE[-1] < r.curve_loss_SxMxE[0])  # every proxy learned
    assert not r.diverged_M.any() and r.tokens_M.tolist() == [12 * 4 * 32] * 3
    # the specialist of domain c is best on c
    assert np.argmin(r.val_loss_MxE[:, 2]) == 1
    np.testing.assert_allclose(r.bpb_MxE, r.val_loss_MxE / np.log(2) / (400 / 400), rtol=1e-12)


def test_vmapped_equals_alone(store, together):
    for m in (1, 2):
        alone = train_mixtures(store, DOMAINS, W[m:m + 1], model="tiny", train=TRAIN, proxy_ids=[m])
        np.testing.assert_allclose(alone.curve_loss_SxMxE[:, 0], together.curve_loss_SxMxE[:, m], rtol=2e-4)


def test_same_seed_same_losses(store, together):
    again = train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN)
    np.testing.assert_array_equal(again.curve_loss_SxMxE, together.curve_loss_SxMxE)


def test_same_init_and_schedule(store):
    w = np.array([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    late = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 0, 1.0]])
    r = train_mixtures(store, DOMAINS, w, model="tiny", train=TRAIN, same_init=True,
                       late_w_MxK=late, late_fraction=0.5, proxy_ids=[0, 1, 2])
    np.testing.assert_array_equal(r.curve_loss_SxMxE[0, 0], r.curve_loss_SxMxE[0, 1])  # same init
    assert r.val_loss_MxE[1, 2] < r.val_loss_MxE[0, 2]  # upsampling c at the end helps on c


def test_divergence_is_recorded_and_others_go_on(store, together):
    r = train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN, lr_scale_M=[1.0, np.inf, 1.0])
    assert r.diverged_M.tolist() == [False, True, False]
    assert r.steps_M[1] < TRAIN.steps and np.isnan(r.val_loss_MxE[1]).all()
    np.testing.assert_array_equal(r.val_loss_MxE[[0, 2]], together.val_loss_MxE[[0, 2]])


def test_resume_after_interruption_equals_uninterrupted(store, together, tmp_path):
    class Stop(Exception):
        pass

    def stop_at_9(step, tokens):
        if step == 9:
            raise Stop

    with pytest.raises(Stop):
        train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN, checkpoint_dir=tmp_path, on_step=stop_at_9)
    assert sorted(os.listdir(tmp_path)) == ["8"]
    resumed = train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN, checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(resumed.curve_loss_SxMxE, together.curve_loss_SxMxE)
    with pytest.raises(RegmixError, match="different run"):
        train_mixtures(store, DOMAINS, W[::-1], model="tiny", train=TRAIN, checkpoint_dir=tmp_path)


def test_bad_inputs(store):
    with pytest.raises(RegmixError, match="unknown domain"):
        train_mixtures(store, ["a", "zzz"], np.array([[0.5, 0.5]]), model="tiny", train=TRAIN)
    with pytest.raises(RegmixError, match="sum to 1"):
        train_mixtures(store, DOMAINS, np.array([[0.5, 0.4, 0.0]]), model="tiny", train=TRAIN)
    with pytest.raises(RegmixError, match="validation split"):
        train_mixtures(store, DOMAINS, W, model="tiny", train=TrainConfig(seq_len=512, steps=2))
    with pytest.raises(RegmixError, match="unknown model preset"):
        train_mixtures(store, DOMAINS, W, model="huge", train=TRAIN)


def test_curves_on_fewer_windows_and_the_score_on_the_whole_split(store, together):
    """curve_windows: the curves on the first windows; the result scored on eval_windows (0: every window)."""
    import dataclasses

    from proxies.config import preset
    from proxies.evaluate import Evaluator

    split = dataclasses.replace(TRAIN, eval_windows=0, curve_windows=TRAIN.eval_windows, checkpoint_every=0)
    r = train_mixtures(store, DOMAINS, W, model="tiny", train=split)
    np.testing.assert_allclose(r.curve_loss_SxMxE, together.curve_loss_SxMxE, rtol=1e-5)  # same run, same curves
    whole = Evaluator(store, r.eval_domains, preset("tiny"), split)(r.params)[0]
    assert Evaluator(store, ["a"], preset("tiny"), split).tokens == {"a": (400 - 1) // 32 * 32}
    np.testing.assert_allclose(r.val_loss_MxE, whole, rtol=1e-6)
    assert not np.allclose(r.val_loss_MxE, r.curve_loss_SxMxE[-1], rtol=1e-4)  # 12 windows, not the first 4
