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


def ablation_mixtures(w_K: np.ndarray, domains: list[str]) -> tuple[list[str], np.ndarray]:
    """Names and rows of the domain ablations around the mixture `w_K`: first `w_K` itself ("base"),
    then per domain d "-d" (d removed, the others renormalized) and "2x d" (d's weight doubled, the
    others scaled down to keep the sum). A domain at weight 0 has no "-d" row; one at >= 1/2 has its
    "2x" capped at 1 (the others go to 0); removing the only domain with weight is impossible."""
    w = check_mixtures(np.asarray(w_K, np.float64)[None], domains, "ablation mixture")[0]
    names, rows = ["base"], [w]
    for k, d in enumerate(domains):
        if 0 < w[k] < 1:
            rest = w.copy()
            rest[k] = 0.0
            names.append(f"-{d}")
            rows.append(rest / rest.sum())
        up = min(2 * w[k], 1.0)
        if w[k] > 0 and up > w[k]:
            more = w * ((1 - up) / (1 - w[k]))
            more[k] = up
            names.append(f"2x {d}")
            rows.append(more)
    return names, np.stack(rows)


def ablation_table(names: list[str], loss_N: np.ndarray, domains: list[str]) -> list[dict]:
    """Per domain: the merged target loss with it removed and doubled, minus the base mixture's
    (negative: better). `names`/`loss_N` as from `ablation_mixtures` and `merged_losses`."""
    at = dict(zip(names, np.asarray(loss_N, np.float64)))
    base = float(at["base"])
    rows = []
    for d in domains:
        removed, doubled = at.get(f"-{d}"), at.get(f"2x {d}")
        rows.append({"domain": d, "base": base,
                     "removed": None if removed is None else float(removed - base),
                     "doubled": None if doubled is None else float(doubled - base)})
    return rows


def favoured_domains(table: list[dict], max_domains: int = 2) -> list[str]:
    """The domains whose doubling lowers the merged loss most (at most `max_domains`; none if no
    doubling helps): the ones to upsample at the end of training."""
    helps = sorted((r["doubled"], r["domain"]) for r in table if r["doubled"] is not None and r["doubled"] < 0)
    return [d for _, d in helps[:max_domains]]


def upsampled(w_K: np.ndarray, domains: list[str], favoured: list[str], factor: float = 2.0) -> np.ndarray:
    """`w_K` with the `favoured` domains' weights multiplied by `factor` (at most all the mass), the
    others scaled down to keep the sum: the late mixture of end-of-training upsampling."""
    w = check_mixtures(np.asarray(w_K, np.float64)[None], domains, "upsampling mixture")[0]
    idx = [domains.index(d) for d in favoured]
    if not idx:
        return w
    up = w[idx] * factor
    if up.sum() >= 1:
        up = up / up.sum()
    out = w.copy()
    rest = 1 - w[idx].sum()
    out[:] = w * ((1 - up.sum()) / rest) if rest > 0 else 0.0
    out[idx] = up
    return out / out.sum()
