"""Linear, SwiGLU and causal attention with hand-written VJPs, laid out for XLA:CPU.

Why: autodiff of `x @ w` makes XLA:CPU compute dW through a transposed copy of x and its slowest dot
form; here dW is one dot_general contracting the token axis, with x or the output gradient as
the left operand, whichever gives the faster product for the kernel's shape. Attention
works in (batch, heads, time, head_dim) layout over `n_blocks` causal query blocks: block i only
multiplies against keys up to its own end, which skips ~(1 - (n+1)/2n) of the masked work, and the
saved probabilities are the same fraction smaller. SwiGLU differentiates its gate and up halves
separately instead of concatenating their gradients. All are exact (same maths as autodiff).
Row maxima (softmax, log-sum-exp) are taken by `row_max`, which XLA:CPU vectorises. `attention`
runs either kernel over a few (sequence, head) pairs at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from proxies import cpu_kernels


@jax.custom_vjp
def linear(x_NxI: jax.Array, w_IxO: jax.Array) -> jax.Array:
    """x @ w over the last axis of x (any leading axes)."""
    return lax.dot_general(x_NxI, w_IxO, (((x_NxI.ndim - 1,), (0,)), ((), ())))


def _linear_fwd(x, w):
    return linear(x, w), (x, w)


def _linear_bwd(res, g):
    x, w = res
    dx = lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())))
    x2 = x.reshape(-1, x.shape[-1])
    g2 = g.reshape(-1, g.shape[-1])
    if _dw_transposed(*w.shape):
        # dW^T = g^T x, then a (cheap, weight-sized) transpose; the barrier stops XLA folding the
        # transpose back into the product.
        dw = jnp.transpose(lax.optimization_barrier(lax.dot_general(g2, x2, (((0,), (0,)), ((), ())))))
    else:
        dw = lax.dot_general(x2, g2, (((0,), (0,)), ((), ())))  # x left, tokens contracted
    return dx, dw.astype(w.dtype)


def _dw_transposed(d_in: int, d_out: int) -> bool:
    """Whether dW of a (d_in, d_out) kernel is faster as (g^T x)^T: on XLA:CPU the product runs
    fastest when its output's minor axis is the longer one and a multiple of 16 (measured on the
    1m proxy: w_down's (512, 256) dW ran at 73 GFLOP/s as x^T g and 99 as g^T x; the head's
    (256, 257) at 81 and 94)."""
    return (d_in % 16 == 0, d_in) > (d_out % 16 == 0, d_out)


linear.defvjp(_linear_fwd, _linear_bwd)


def swiglu(x_NxI: jax.Array, w_Ix2F: jax.Array, cpu_kernel: bool = False) -> jax.Array:
    """silu(x @ w_gate) * (x @ w_up), with w = [w_gate | w_up] on the last axis. `cpu_kernel`: the
    elementwise part by the compiled kernel (proxies.cpu_kernels), one pass each way; its gradient
    d[gate | up] comes as one array, so dx and dW are one product each."""
    if cpu_kernel:
        return cpu_kernels.swiglu_gates(linear(x_NxI, w_Ix2F))
    return _swiglu(x_NxI, w_Ix2F)


@jax.custom_vjp
def _swiglu(x_NxI: jax.Array, w_Ix2F: jax.Array) -> jax.Array:
    return _swiglu_fwd(x_NxI, w_Ix2F)[0]


def _swiglu_fwd(x, w):
    h = linear(x, w)
    gate, up = jnp.split(h, 2, axis=-1)
    return jax.nn.silu(gate) * up, (x, w, h)


def _swiglu_bwd(res, da):
    # The gate and up halves are differentiated separately: one product each for dx (summed) and
    # for dW, instead of concatenating their gradients into a (tokens, 2F) array first (a full
    # copy that XLA:CPU does at a few GB/s).
    x, w, h = res
    gate, up = jnp.split(h, 2, axis=-1)
    sig = jax.nn.sigmoid(gate)
    d_up = da * gate * sig
    d_gate = da * up * sig * (1 + gate * (1 - sig))
    w_gate, w_up = jnp.split(w, 2, axis=-1)
    dx_g, dw_g = _linear_bwd((x, w_gate), d_gate)
    dx_u, dw_u = _linear_bwd((x, w_up), d_up)
    return dx_g + dx_u, jnp.concatenate([dw_g, dw_u], axis=-1)


_swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


def row_max(x: jax.Array, chunk: int = 32) -> jax.Array:
    """max over the last axis (kept): elementwise maxima of `chunk`-wide slices, then one short
    reduction. Same values as `jnp.max`; XLA:CPU reduces a long minor axis with max about 6x slower
    (its max-reduction is not vectorised; elementwise maxima are)."""
    n = x.shape[-1]
    k = n // chunk
    if k < 2:
        return jnp.max(x, axis=-1, keepdims=True)
    m = x[..., :chunk]
    for j in range(1, k):
        m = jnp.maximum(m, x[..., j * chunk:(j + 1) * chunk])
    m = jnp.max(m, axis=-1, keepdims=True)
    if n % chunk:
        m = jnp.maximum(m, jnp.max(x[..., k * chunk:], axis=-1, keepdims=True))
    return m


def softmax(s: jax.Array) -> jax.Array:
    """Softmax over the last axis (no autodiff rule needed: the attention VJP is written out)."""
    e = jnp.exp(s - row_max(s))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def _bounds(t: int, n_blocks: int) -> list[tuple[int, int]]:
    n = max(1, min(n_blocks, t))
    edges = [round(i * t / n) for i in range(n + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _block_mask(a: int, b: int) -> jax.Array:
    q = jnp.arange(a, b)[:, None]
    k = jnp.arange(b)[None, :]
    return k <= q


def causal_attention(q, kT, vT, n_blocks: int = 4):
    """Causal softmax attention by autodiff (the reference).

    q: (B, H, T, D); kT, vT: keys and values transposed, (B, H, D, T) -> (B, H, T, D).
    """
    return _attention(q, kT, vT, n_blocks)[0]


def _attention(q, kT, vT, n_blocks):
    t, d = q.shape[-2], q.shape[-1]
    scale = 1.0 / jnp.sqrt(jnp.asarray(d, q.dtype))
    outs, probs = [], []
    for a, b in _bounds(t, n_blocks):
        s = jnp.einsum("bhqd,bhdk->bhqk", q[..., a:b, :] * scale, kT[..., :b])
        s = jnp.where(_block_mask(a, b), s, -jnp.inf)
        p = softmax(s)
        outs.append(jnp.einsum("bhqk,bhdk->bhqd", p, vT[..., :b]))
        probs.append(p)
    return jnp.concatenate(outs, axis=-2), probs


def _attention_fwd(q, kT, vT, n_blocks):
    o, probs = _attention(q, kT, vT, n_blocks)
    return o, (q, kT, vT, o, probs)


def _attention_bwd(n_blocks, res, do):
    # Keys and values come transposed so that every product below is one of XLA:CPU's fast dot
    # forms: none contracts the query axis of a left operand that is not laid out for it.
    q, kT, vT, o, probs = res
    t, d = q.shape[-2], q.shape[-1]
    scale = 1.0 / jnp.sqrt(jnp.asarray(d, q.dtype))
    dq_parts = []
    dkT = jnp.zeros_like(kT)
    dvT = jnp.zeros_like(vT)
    for (a, b), p in zip(_bounds(t, n_blocks), probs):
        do_i = do[..., a:b, :]
        dvT = dvT.at[..., :b].add(jnp.einsum("bhqd,bhqk->bhdk", do_i, p))
        dp = jnp.einsum("bhqd,bhdk->bhqk", do_i, vT[..., :b])
        delta = jnp.sum(do_i * o[..., a:b, :], axis=-1, keepdims=True)
        ds = p * (dp - delta) * scale
        dq_parts.append(jnp.einsum("bhqk,bhdk->bhqd", ds, kT[..., :b]))
        dkT = dkT.at[..., :b].add(jnp.einsum("bhqd,bhqk->bhdk", q[..., a:b, :], ds))
    return jnp.concatenate(dq_parts, axis=-2), dkT, dvT


_attention_vjp = jax.custom_vjp(lambda q, kT, vT, n_blocks: _attention(q, kT, vT, n_blocks)[0],
                                nondiff_argnums=(3,))
_attention_vjp.defvjp(_attention_fwd, _attention_bwd)


def blocked_attention(q, kT, vT, n_blocks: int = 4):
    """Causal attention with the blocked custom VJP; q (B, H, T, D), kT and vT (B, H, D, T)."""
    return _attention_vjp(q, kT, vT, n_blocks)


def attention(q, kT, vT, n_blocks: int = 4, chunk: int = 0):
    """Causal attention (the blocked kernel above) over q (B, H, T, D), kT and vT (B, H, D, T),
    `chunk` (sequence, head) pairs at a time (0: all at once). Same values as all at once; in
    pieces, each one's scores and probabilities stay in cache between the passes over them (on CPU
    about 4% of a 1m training step)."""
    b, h, t, d = q.shape
    n = b * h
    c = max((k for k in range(1, min(chunk, n) + 1) if n % k == 0), default=n)  # n for chunk <= 0
    if c >= n:
        return blocked_attention(q, kT, vT, n_blocks)
    pieces = lambda x: x.reshape(n // c, c, 1, *x.shape[2:])  # each piece: (c, 1, ...)
    o = lax.map(lambda qkv: blocked_attention(*qkv, n_blocks), (pieces(q), pieces(kT), pieces(vT)))
    return o.reshape(b, h, t, d)
