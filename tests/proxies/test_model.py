"""The proxy model: causal, custom VJPs equal autodiff, parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from proxies import model as modellib
from proxies.config import PRESETS, ModelConfig, preset
from proxies.kernels import attention, blocked_attention, causal_attention, linear, row_max, swiglu
from regmix.errors import RegmixError

CFG = PRESETS["tiny"]
V = 61


@pytest.fixture(scope="module")
def params():
    return jax.jit(modellib.init_params(CFG, V))(jax.random.key(0))


def test_model_is_causal(params):
    toks = jax.random.randint(jax.random.key(1), (2, 24), 0, V)
    changed = toks.at[:, 15:].set((toks[:, 15:] + 7) % V)
    f = jax.jit(lambda p, t: modellib.logits(CFG, V, p, t))
    a, b = f(params, toks), f(params, changed)
    np.testing.assert_allclose(a[:, :15], b[:, :15], atol=1e-6)
    assert float(jnp.max(jnp.abs(a[:, 15:] - b[:, 15:]))) > 1e-3


def reference_loss(params, windows_BxT1):
    """The model's loss written out in plain JAX (autodiff throughout): masked softmax attention,
    SwiGLU, RMSNorm, log-softmax; no custom VJP, blocks or chunks."""
    model = nnx.merge(modellib.graphdef(CFG, V), params)
    inputs, targets = windows_BxT1[:, :-1], windows_BxT1[:, 1:]
    b, t = inputs.shape
    h, hd = CFG.n_heads, CFG.head_dim
    cos, sin = modellib.rope_tables(t, hd, CFG.rope_base)
    norm = lambda x, layer: x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + layer.eps) * layer.scale[...]
    x = model.embed[...][inputs]
    for blk in model.blocks:
        qkv = (norm(x, blk.attn_norm) @ blk.wqkv.kernel[...]).reshape(b, t, 3, h, hd)
        q, k = modellib.apply_rope(qkv[:, :, 0], cos, sin), modellib.apply_rope(qkv[:, :, 1], cos, sin)
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(hd)
        s = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s, -jnp.inf)
        o = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, axis=-1), qkv[:, :, 2]).reshape(b, t, -1)
        x = x + o @ blk.wo.kernel[...]
        gate, up = jnp.split(norm(x, blk.mlp_norm) @ blk.w_gate_up.kernel[...], 2, axis=-1)
        x = x + (jax.nn.silu(gate) * up) @ blk.w_down.kernel[...]
    logp = jax.nn.log_softmax(norm(x, model.final_norm) @ model.head.kernel[...], axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], axis=-1))


def test_custom_vjps_match_autodiff_of_a_reference(params):
    toks = jax.random.randint(jax.random.key(2), (3, 17), 0, V)
    l1, g1 = jax.jit(jax.value_and_grad(lambda p: modellib.loss(CFG, V, p, toks)))(params)
    l2, g2 = jax.jit(jax.value_and_grad(lambda p: reference_loss(p, toks)))(params)
    assert abs(float(l1) - float(l2)) < 1e-6
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("blocks", [1, 4])
def test_blocked_attention_gradients(blocks):
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 2, 13, 8)) for i in range(3))
    k, v = jnp.swapaxes(k, -1, -2), jnp.swapaxes(v, -1, -2)
    f = lambda att: lambda q, k, v: jnp.sum(jnp.sin(att(q, k, v, blocks)))
    vg = lambda att: jax.jit(jax.value_and_grad(f(att), (0, 1, 2)))(q, k, v)
    (y1, g1), (y2, g2) = vg(blocked_attention), vg(causal_attention)
    np.testing.assert_allclose(y1, y2, rtol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 3, 4, 100])
def test_attention_in_pieces_equals_whole(chunk):
    q, k, v = (jax.random.normal(jax.random.key(i), (3, 2, 4, 13, 8)) for i in range(3))
    k, v = jnp.swapaxes(k, -1, -2), jnp.swapaxes(v, -1, -2)
    f = lambda c: lambda q, k, v: jnp.sum(jnp.sin(attention(q, k, v, 4, c)))
    vg = lambda c: jax.jit(jax.vmap(jax.value_and_grad(f(c), (0, 1, 2))))(q, k, v)
    (y1, g1), (y2, g2) = vg(chunk), vg(0)
    np.testing.assert_allclose(y1, y2, rtol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("d_in,d_out", [(6, 7), (32, 16), (16, 17)])  # dW as x^T g and as (g^T x)^T
def test_linear_vjp_under_vmap(d_in, d_out):
    x = jax.random.normal(jax.random.key(0), (3, 4, 5, d_in))
    w = jax.random.normal(jax.random.key(1), (3, d_in, d_out))
    f = lambda x, w: jnp.sum(jnp.tanh(linear(x, w)))
    g = lambda x, w: jnp.sum(jnp.tanh(x @ w))
    grads = lambda h: jax.jit(jax.vmap(jax.grad(h, (0, 1))))(x, w)
    for a, b in zip(grads(f), grads(g)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_swiglu_vjp_under_vmap():
    x = jax.random.normal(jax.random.key(0), (3, 4, 5, 6)) * 2
    w = jax.random.normal(jax.random.key(1), (3, 6, 2 * 7))

    def ref(x, w):
        gate, up = jnp.split(x @ w, 2, axis=-1)
        return jax.nn.silu(gate) * up

    f = lambda act: lambda x, w: jnp.sum(jnp.tanh(act(x, w)))
    vg = lambda act: jax.jit(jax.vmap(jax.value_and_grad(f(act), (0, 1))))(x, w)
    (y1, g1), (y2, g2) = vg(swiglu), vg(ref)
    np.testing.assert_allclose(y1, y2, rtol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("width", [1, 31, 32, 64, 95, 257])
def test_row_max_equals_max(width):
    x = jax.random.normal(jax.random.key(width), (3, 5, width)) * 50
    x = x.at[0, 0, -1].set(jnp.inf).at[1, 1, 0].set(-jnp.inf).at[2, 2, width // 2].set(jnp.nan)
    np.testing.assert_array_equal(row_max(x), jnp.max(x, axis=-1, keepdims=True))


def test_loss_matches_optax(params):
    import optax

    wins = jax.random.randint(jax.random.key(3), (2, 17), 0, V)
    nats = modellib.nats_BxT(CFG, V, params, wins)
    ref = optax.softmax_cross_entropy_with_integer_labels(modellib.logits(CFG, V, params, wins[:, :-1]), wins[:, 1:])
    np.testing.assert_allclose(nats, ref, rtol=1e-6, atol=1e-6)
    g = jax.jit(jax.grad(lambda p: modellib.loss(CFG, V, p, wins)))(params)
    g_ref = jax.jit(jax.grad(lambda p: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        modellib.logits(CFG, V, p, wins[:, :-1]), wins[:, 1:]))))(params)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_param_count_and_flops(params):
    assert sum(x.size for x in jax.tree.leaves(params)) == modellib.count_params(CFG, V)["total"]
    one_m = modellib.count_params(preset("1m"), 257)
    assert one_m["matmul"] - 256 * 257 == 2 * (4 * 256 * 256 + 3 * 256 * 512)  # RegMix 1M: 1.3M non-embedding
    assert modellib.flops_per_token(preset("1m"), 257, 256) == 6 * one_m["matmul"] + 12 * 2 * 256 * 256


def test_bad_presets():
    with pytest.raises(RegmixError, match="unknown model preset"):
        preset("nope")
    with pytest.raises(ValueError):
        ModelConfig(d_model=30, n_heads=4)
