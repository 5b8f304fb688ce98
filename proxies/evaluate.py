"""Per-domain validation loss of many proxies at once: nats per token and bits per byte.

Every proxy is scored on the same windows: the first `train.eval_windows` windows of each
domain's validation split (0: every whole window of the split; the loss curves may use fewer,
`train.curve_windows`). Bits per byte = total nats / ln 2 / bytes covered, with bytes covered =
tokens scored x the domain's valid_bytes / valid_tokens.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from proxies import model as modellib
from proxies.batches import bytes_per_token, eval_windows
from proxies.config import ModelConfig, TrainConfig
from proxies.mesh import to_host
from regmix.corpus.store import TokenStore


@functools.lru_cache(maxsize=16)
def jitted_eval_step(cfg: ModelConfig, vocab_size: int):
    return jax.jit(make_eval_step(cfg, vocab_size))


def make_eval_step(cfg: ModelConfig, vocab_size: int):
    """`nats_sum_M(params_M, windows_NxT1, mask_N)`: summed nats of each proxy over the windows."""

    def one(params, windows_NxT1, mask_N):
        nats = modellib.nats_BxT(cfg, vocab_size, params, windows_NxT1)
        return jnp.sum(jnp.sum(nats, axis=-1) * mask_N)

    return jax.vmap(one, in_axes=(0, None, None))


class Evaluator:
    """`evaluator(params_M) -> (loss_MxE, bpb_MxE)` over `domains` (numpy, float64), on `n_windows` windows
    per domain (default: `train.eval_windows`; 0: the whole split)."""

    def __init__(self, store: TokenStore, domains: list[str], cfg: ModelConfig, train: TrainConfig,
                 n_windows: int | None = None):
        self.domains = list(domains)
        self.seq_len = train.seq_len
        self.batch = train.eval_batch
        n = train.eval_windows if n_windows is None else n_windows
        self.windows = {d: eval_windows(store, d, train.seq_len, n) for d in domains}
        self.tokens = {d: len(w) * train.seq_len for d, w in self.windows.items()}  # tokens scored per domain
        self.bytes_per_token = {d: bytes_per_token(store, d) for d in domains}
        self.step = jitted_eval_step(cfg, store.vocab_size)

    def __call__(self, params_M) -> tuple[np.ndarray, np.ndarray]:
        m = jax.tree.leaves(params_M)[0].shape[0]
        loss = np.zeros((m, len(self.domains)))
        bpb = np.zeros((m, len(self.domains)))
        for e, d in enumerate(self.domains):
            win = self.windows[d]
            n = len(win)
            size = min(self.batch, n)
            total = np.zeros(m)
            for lo in range(0, n, size):
                chunk = win[lo:lo + size]
                mask = np.ones(size, np.float32)
                if len(chunk) < size:  # pad the last chunk: one compiled shape per evaluator
                    mask[len(chunk):] = 0
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), 0)])
                total += to_host(self.step(params_M, chunk, mask)).astype(np.float64)
            scored = n * self.seq_len
            loss[:, e] = total / scored
            bpb[:, e] = total / math.log(2) / (scored * self.bytes_per_token[d])
        return loss, bpb
