"""Merged models (Na et al. 2024): the w-weighted average of branch parameters, scored per domain.

    loss_NxE, bpb_NxE = merged_losses(branch_params, w_NxK, store=..., eval_domains=[...],
                                      model="1m", train=TrainConfig(...))

`branch_params` holds K branches stacked on a leading axis (proxies.branches trains them); row n
of `w_NxK` gives the merged model sum_k w[n, k] * branch_k. The merge is a vmap over mixtures of
that weighted sum, jitted once per chunk size; each chunk of mixtures is then scored by the same
evaluator as trained proxies (proxies.evaluate), so a mixture costs one evaluation, never a training.
Rows off the simplex are refused.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from proxies.batches import check_mixtures
from proxies.config import TrainConfig, preset
from proxies.evaluate import Evaluator
from proxies.mesh import proxy_mesh
from proxies.train import for_mesh
from regmix.corpus.store import TokenStore
from regmix.errors import RegmixError


def n_branches(branch_params) -> int:
    return int(jax.tree.leaves(branch_params)[0].shape[0])


@functools.lru_cache(maxsize=4)
def _merge_fn():
    def merge(stacked, w_NxK):
        return jax.vmap(lambda w: jax.tree.map(lambda x: jnp.tensordot(w.astype(x.dtype), x, axes=1), stacked))(w_NxK)

    return jax.jit(merge)


def merge_params(branch_params, w_NxK: np.ndarray, names: list[str] | None = None):
    """Stacked merged params (leading axis N) for the rows of `w_NxK` (validated on the simplex)."""
    k = n_branches(branch_params)
    names = names or [f"branch {i}" for i in range(k)]
    if len(names) != k:
        raise RegmixError(f"merge: {len(names)} branch names for {k} branches")
    w = check_mixtures(w_NxK, names, "merge mixture")
    return _merge_fn()(branch_params, jnp.asarray(w, jnp.float32))


def merged_losses(branch_params, w_NxK: np.ndarray, *, store: TokenStore, eval_domains: list[str],
                  model="1m", train: TrainConfig = TrainConfig(), names: list[str] | None = None,
                  chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(loss_NxE, bpb_NxE): per-domain validation loss and bits per byte of each merged model.

    Mixtures are merged and scored `chunk` at a time (the last chunk padded: one compiled shape)."""
    w = check_mixtures(w_NxK, names or [f"branch {i}" for i in range(n_branches(branch_params))],
                       "merge mixture")
    if chunk < 1:
        raise RegmixError(f"merge: chunk must be >= 1, got {chunk}")
    cfg = for_mesh(preset(model), proxy_mesh(n_proxies=1))
    evaluator = Evaluator(store, eval_domains, cfg, train)
    n = len(w)
    size = min(chunk, n)
    loss = np.zeros((n, len(eval_domains)))
    bpb = np.zeros((n, len(eval_domains)))
    for lo in range(0, n, size):
        rows = w[lo:lo + size]
        got = len(rows)
        if got < size:
            rows = np.concatenate([rows, np.repeat(rows[-1:], size - got, 0)])
        l, b = evaluator(merge_params(branch_params, rows, names))
        loss[lo:lo + got], bpb[lo:lo + got] = l[:got], b[:got]
    return loss, bpb
