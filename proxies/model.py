"""The proxy language model: a small decoder-only transformer in flax nnx.

RMSNorm, SwiGLU, rotary embeddings, no biases, untied output head (RegMix's 1M proxy is the `1m`
preset of proxies.config). Training code works on the pure `nnx.State` of the parameters, so many
proxies stack on a leading axis: `params_M = jax.vmap(init_params(cfg, vocab))(keys_M)`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from proxies import cpu_kernels
from proxies.config import ModelConfig
from proxies.kernels import attention, linear, row_max, swiglu


class Linear(nnx.Module):
    def __init__(self, d_in: int, d_out: int, std: float, rngs: nnx.Rngs):
        self.kernel = nnx.Param(std * jax.random.normal(rngs.params(), (d_in, d_out), jnp.float32))

    def __call__(self, x):
        return linear(x, self.kernel[...])


class RMSNorm(nnx.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        self.scale = nnx.Param(jnp.ones((d,), jnp.float32))
        self.eps = eps

    def __call__(self, x, kernel: bool = False):
        if kernel:  # the compiled CPU kernel: one pass forward and backward
            return cpu_kernels.rms_norm(x, self.scale[...], self.eps)
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps) * self.scale[...]


def rope_tables(t: int, head_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin of shape (T, head_dim / 2) for rotary embeddings.

    Computed on the host, so they enter the compiled step as constants: computed in the graph, XLA
    fuses sin and cos into every elementwise pass that uses them and re-evaluates them per element
    (on CPU that made the rotary passes cost about 6% of a 1m training step)."""
    inv = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    ang = np.arange(t, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def apply_rope(x_BxTxHxD, cos, sin):
    """Rotate pairs (i, i + D/2) by position; cos, sin: (T, D/2)."""
    cos, sin = cos[:, None, :], sin[:, None, :]
    x1, x2 = jnp.split(x_BxTxHxD, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, std = cfg.d_model, cfg.init_std
        out_std = std / (2 * cfg.n_layers) ** 0.5
        self.cfg = cfg
        self.attn_norm = RMSNorm(d)
        self.wqkv = Linear(d, 3 * d, std, rngs)
        self.wo = Linear(d, d, out_std, rngs)
        self.mlp_norm = RMSNorm(d)
        self.w_gate_up = Linear(d, 2 * cfg.d_ff, std, rngs)
        self.w_down = Linear(cfg.d_ff, d, out_std, rngs)

    def __call__(self, x_BxTxD, cos, sin):
        cfg = self.cfg
        b, t, d = x_BxTxD.shape
        h, hd = cfg.n_heads, cfg.head_dim
        kernel = cfg.cpu_kernel
        qkv = self.wqkv(self.attn_norm(x_BxTxD, kernel)).reshape(b, t, 3, h, hd)
        if kernel and cpu_kernels.supports(hd):  # rotary embedding inside, layouts as they are
            o = cpu_kernels.attention(qkv, cos, sin).reshape(b, t, d)
        else:
            q, k = apply_rope(qkv[:, :, 0], cos, sin), apply_rope(qkv[:, :, 1], cos, sin)
            q = jnp.transpose(q, (0, 2, 1, 3))  # (B, H, T, hd)
            kT = jnp.transpose(k, (0, 2, 3, 1))  # (B, H, hd, T)
            vT = jnp.transpose(qkv[:, :, 2], (0, 2, 3, 1))
            o = attention(q, kT, vT, cfg.attn_blocks, cfg.attn_chunk)
            o = jnp.transpose(o, (0, 2, 1, 3)).reshape(b, t, d)
        x_BxTxD = x_BxTxD + self.wo(o)
        y = self.mlp_norm(x_BxTxD, kernel)
        return x_BxTxD + self.w_down(swiglu(y, self.w_gate_up.kernel[...], kernel))


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Param(cfg.init_std * jax.random.normal(rngs.params(), (vocab_size, cfg.d_model)))
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.final_norm = RMSNorm(cfg.d_model)
        self.head = Linear(cfg.d_model, vocab_size, cfg.init_std, rngs)

    def __call__(self, tokens_BxT: jax.Array) -> jax.Array:
        """Logits (B, T, V) of the next token at every position."""
        t = tokens_BxT.shape[-1]
        cos, sin = rope_tables(t, self.cfg.head_dim, self.cfg.rope_base)
        # "clip": token ids come from the store, below vocab_size; the default mode's out-of-range
        # checks and NaN fill cost a full pass over the embedded batch.
        x = jnp.take(self.embed[...], tokens_BxT, axis=0, mode="clip")
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.final_norm(x, self.cfg.cpu_kernel))


@functools.lru_cache(maxsize=None)
def graphdef(cfg: ModelConfig, vocab_size: int) -> nnx.GraphDef:
    """The static structure of the model (no arrays are allocated)."""
    return nnx.split(nnx.eval_shape(lambda: Transformer(cfg, vocab_size, nnx.Rngs(0))))[0]


def init_params(cfg: ModelConfig, vocab_size: int):
    """`init(key) -> params`: pure, so `jax.vmap(init)(keys_M)` stacks M proxies."""

    def init(key: jax.Array) -> nnx.State:
        return nnx.split(Transformer(cfg, vocab_size, nnx.Rngs(params=key)))[1]

    return init


def logits(cfg: ModelConfig, vocab_size: int, params, tokens_BxT):
    return nnx.merge(graphdef(cfg, vocab_size), params)(tokens_BxT)


def nats_BxT(cfg: ModelConfig, vocab_size: int, params, windows_BxT1):
    """Next-token negative log-likelihood (nats) at every position of windows of T+1 tokens."""
    inputs, targets = windows_BxT1[:, :-1], windows_BxT1[:, 1:]
    out = logits(cfg, vocab_size, params, inputs).astype(jnp.float32)
    m = jax.lax.stop_gradient(row_max(out))  # log-sum-exp, shifted by the (constant) row maximum
    lse = m[..., 0] + jnp.log(jnp.sum(jnp.exp(out - m), axis=-1))
    return lse - jnp.take_along_axis(out, targets[..., None], axis=-1)[..., 0]


def loss(cfg: ModelConfig, vocab_size: int, params, windows_BxT1):
    """Mean next-token loss (nats per token) of one proxy on one batch."""
    return jnp.mean(nats_BxT(cfg, vocab_size, params, windows_BxT1))


def count_params(cfg: ModelConfig, vocab_size: int) -> dict[str, int]:
    """Total parameters and those used in matrix products (output head in, embedding lookup out)."""
    d = cfg.d_model
    per_layer_matmul = 3 * d * d + d * d + 2 * d * cfg.d_ff + cfg.d_ff * d
    matmul = cfg.n_layers * per_layer_matmul + d * vocab_size
    total = matmul + vocab_size * d + cfg.n_layers * 2 * d + d
    return {"total": total, "matmul": matmul}


def flops_per_token(cfg: ModelConfig, vocab_size: int, seq_len: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters + 12 x layers x seq_len x d_model."""
    return 6.0 * count_params(cfg, vocab_size)["matmul"] + 12.0 * cfg.n_layers * seq_len * cfg.d_model
