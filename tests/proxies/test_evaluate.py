"""Evaluator: per-domain loss and bits per byte equal a direct forward of each proxy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxies import model as modellib
from proxies.batches import eval_windows
from proxies.config import PRESETS, TrainConfig
from proxies.evaluate import Evaluator
from regmix.corpus.store import write_store

CFG = PRESETS["tiny"]
V = 257


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    arrays = {d: (rng.integers(0, 256, 500), rng.integers(0, 256, n)) for d, n in (("a", 200), ("b", 130))}
    arrays["b"][1][::7] = 256  # eod tokens: b's bytes per token below one
    return write_store(tmp_path_factory.mktemp("store"), arrays, vocab_size=V, eod_id=256)


@jax.jit
def direct_loss(params, windows_NxT1):
    """Mean next-token NLL of one proxy by log-softmax of its logits, all windows at once."""
    logp = jax.nn.log_softmax(modellib.logits(CFG, V, params, windows_NxT1[:, :-1]), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, windows_NxT1[:, 1:, None], axis=-1))


@pytest.mark.parametrize("eval_batch", [2, 8])  # 2: the last chunk of 5 windows is padded
def test_evaluator_equals_direct_forward(store, eval_batch):
    train = TrainConfig(seq_len=16, eval_windows=5, eval_batch=eval_batch)
    params_M = jax.vmap(modellib.init_params(CFG, V))(jax.random.split(jax.random.key(0), 3))
    loss_MxE, bpb_MxE = Evaluator(store, ["a", "b"], CFG, train)(params_M)
    assert loss_MxE.shape == bpb_MxE.shape == (3, 2) and loss_MxE.dtype == np.float64
    for e, d in enumerate(["a", "b"]):
        windows = eval_windows(store, d, 16, 5)
        info = store.meta["domains"][d]
        per_token = info["valid_bytes"] / info["valid_tokens"]
        for m in range(3):
            want = float(direct_loss(jax.tree.map(lambda x: x[m], params_M), windows))
            np.testing.assert_allclose(loss_MxE[m, e], want, rtol=1e-5)
            np.testing.assert_allclose(bpb_MxE[m, e], want / math.log(2) / per_token, rtol=1e-5)
    assert not np.allclose(loss_MxE[0], loss_MxE[1])  # the proxies differ



def test_zero_windows_scores_every_whole_window_of_the_split(store):
    from proxies.batches import eval_tokens

    for d, n_valid in (("a", 200), ("b", 130)):
        whole = eval_windows(store, d, 16, 0)
        assert whole.shape == ((n_valid - 1) // 16, 17)  # all but a tail shorter than one window
        np.testing.assert_array_equal(whole[:, :-1].ravel(), np.asarray(store.tokens(d, "valid"))[:whole.shape[0] * 16])
        np.testing.assert_array_equal(eval_windows(store, d, 16, 3), whole[:3])
        assert eval_tokens(store, d, 16, 0) == whole.shape[0] * 16 and eval_tokens(store, d, 16, 3) == 48
        assert eval_tokens(store, d, 16, 10_000) == whole.shape[0] * 16
    train = TrainConfig(seq_len=16, eval_windows=5, eval_batch=4)
    params_M = jax.vmap(modellib.init_params(CFG, V))(jax.random.split(jax.random.key(1), 2))
    ev = Evaluator(store, ["a", "b"], CFG, train, n_windows=0)
    assert ev.tokens == {"a": 12 * 16, "b": 8 * 16}
    loss_MxE, _ = ev(params_M)
    for e, d in enumerate(["a", "b"]):
        want = float(direct_loss(jax.tree.map(lambda x: x[0], params_M), eval_windows(store, d, 16, 0)))
        np.testing.assert_allclose(loss_MxE[0, e], want, rtol=1e-5)
    assert not np.allclose(loss_MxE, Evaluator(store, ["a", "b"], CFG, train)(params_M)[0])  # 5 windows differ


@pytest.mark.parametrize("kw, message", [({"eval_windows": -1}, "eval_windows must be >= 0"),
                                         ({"curve_windows": -1}, "curve_windows must be >= 0")])
def test_negative_window_counts_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kw)
