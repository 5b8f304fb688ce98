"""The compiled CPU kernels equal the XLA code they replace: values and gradients, under vmap and jit."""

import dataclasses
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxies import cpu_kernels
from proxies import model as modellib
from proxies.config import PRESETS
from proxies.kernels import causal_attention
from proxies.mesh import proxy_mesh
from proxies.train import for_mesh

needs_kernel = pytest.mark.skipif(not cpu_kernels.available(), reason="no C++ compiler for the CPU kernels")


def reference(qkv, cos, sin):
    """XLA's causal attention of rotary-embedded q, k and v, from a [B, T, 3, H, D] projection."""
    q, k = modellib.apply_rope(qkv[:, :, 0], cos, sin), modellib.apply_rope(qkv[:, :, 1], cos, sin)
    o = causal_attention(jnp.transpose(q, (0, 2, 1, 3)), jnp.transpose(k, (0, 2, 3, 1)),
                         jnp.transpose(qkv[:, :, 2], (0, 2, 3, 1)), 1)
    return jnp.transpose(o, (0, 2, 1, 3))


@needs_kernel
@pytest.mark.parametrize("shape", [(2, 3, 37, 2, 16), (1, 2, 64, 4, 32), (2, 1, 24, 2, 64), (1, 2, 9, 1, 128),
                                   (1, 1, 1, 1, 16)])
def test_values_and_gradients_equal_xla(shape):
    """Vmapped over a leading proxy axis; T need not be a multiple of the kernel's tiles."""
    m, b, t, h, d = shape
    qkv = jax.random.normal(jax.random.key(0), (m, b, t, 3, h, d)) * 2
    g = jax.random.normal(jax.random.key(1), (m, b, t, h, d))
    cos, sin = modellib.rope_tables(t, d, 10000.0)

    def outputs(fn):
        run = lambda x, g: (fn(x, cos, sin),) + jax.vjp(lambda x: fn(x, cos, sin), x)[1](g)
        return jax.jit(jax.vmap(run))(qkv, g)

    for a, b in zip(outputs(cpu_kernels.attention), outputs(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)


@needs_kernel
def test_causal_and_deterministic():
    qkv = jax.random.normal(jax.random.key(0), (2, 40, 3, 2, 16))
    cos, sin = modellib.rope_tables(40, 16, 10000.0)
    f = jax.jit(lambda x: cpu_kernels.attention(x, cos, sin))
    a, b = f(qkv), f(qkv.at[:, 25:].add(1.0))
    np.testing.assert_array_equal(a[:, :25], b[:, :25])  # no position sees a later one
    assert float(jnp.max(jnp.abs(a[:, 25:] - b[:, 25:]))) > 1e-3
    np.testing.assert_array_equal(f(qkv), a)


def _vjp_outputs(fn, args, g):
    """fn(*args) and its gradients for cotangent g, jitted and vmapped over the leading axis."""
    run = lambda args, g: (fn(*args),) + jax.vjp(fn, *args)[1](g)
    return jax.jit(jax.vmap(run))(args, g)


@needs_kernel
@pytest.mark.parametrize("f", [1, 7, 16, 40])
def test_swiglu_gates_equal_xla(f):
    h = jax.random.normal(jax.random.key(0), (3, 5, 2 * f)) * 3
    g = jax.random.normal(jax.random.key(1), (3, 5, f))
    ref = lambda h: jax.nn.silu(h[..., :f]) * h[..., f:]
    for a, b in zip(_vjp_outputs(cpu_kernels.swiglu_gates, (h,), g), _vjp_outputs(ref, (h,), g)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_kernel
@pytest.mark.parametrize("d", [5, 16, 37])
def test_rms_norm_equals_xla(d):
    """Per-proxy scales under vmap (each proxy's rows are one group of the kernel)."""
    x = jax.random.normal(jax.random.key(0), (3, 4, 6, d)) * 2
    scale = 1 + jax.random.normal(jax.random.key(1), (3, d)) * 0.3
    g = jax.random.normal(jax.random.key(2), (3, 4, 6, d))
    ref = lambda x, s: x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6) * s
    fast = lambda x, s: cpu_kernels.rms_norm(x, s, 1e-6)
    for a, b in zip(_vjp_outputs(fast, (x, scale), g), _vjp_outputs(ref, (x, scale), g)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    shared = jax.jit(jax.vmap(fast, in_axes=(0, None)))(x, scale[0])  # one scale for every proxy
    np.testing.assert_allclose(shared, jax.vmap(ref, in_axes=(0, None))(x, scale[0]), rtol=1e-5, atol=1e-6)


@needs_kernel
def test_model_with_kernel_equals_model_without():
    cfg = dataclasses.replace(PRESETS["tiny"], d_model=64, n_heads=4)  # head size 16
    fast = dataclasses.replace(cfg, cpu_kernel=True)
    params = jax.jit(modellib.init_params(cfg, 61))(jax.random.key(0))
    toks = jax.random.randint(jax.random.key(1), (3, 21), 0, 61)
    vg = lambda c: jax.jit(jax.value_and_grad(lambda p: modellib.loss(c, 61, p, toks)))(params)
    (l1, g1), (l2, g2) = vg(fast), vg(cfg)
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@needs_kernel
def test_head_size_without_attention_kernel_keeps_xla_attention():
    cfg = dataclasses.replace(PRESETS["tiny"], d_model=48, n_heads=2)  # head size 24: no attention kernel
    assert not cpu_kernels.supports(cfg.head_dim)
    params = jax.jit(modellib.init_params(cfg, 61))(jax.random.key(0))
    toks = jax.random.randint(jax.random.key(1), (2, 19), 0, 61)
    loss = lambda c: jax.jit(lambda p: modellib.loss(c, 61, p, toks))(params)
    np.testing.assert_allclose(loss(dataclasses.replace(cfg, cpu_kernel=True)), loss(cfg), rtol=1e-6)


def test_for_mesh_picks_the_kernels_only_where_they_run():
    assert for_mesh(PRESETS["1m"], proxy_mesh(jax.devices()[:1])).cpu_kernel == cpu_kernels.available()


def test_without_compiler_falls_back():
    env = dict(os.environ, REGMIX_NO_COMPILE="1", JAX_PLATFORMS="cpu")
    code = ("from proxies import cpu_kernels; from proxies.train import for_mesh; from proxies.mesh import proxy_mesh;"
            "from proxies.config import PRESETS; assert not cpu_kernels.available();"
            "assert not for_mesh(PRESETS['1m'], proxy_mesh()).cpu_kernel; print('OK')")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-2000:]
