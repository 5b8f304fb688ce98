"""The compiled CPU attention kernel equals XLA's attention: values and gradients, under vmap and jit."""

import dataclasses
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxies import cpu_attention
from proxies import model as modellib
from proxies.config import PRESETS
from proxies.kernels import causal_attention
from proxies.mesh import proxy_mesh
from proxies.train import for_mesh

needs_kernel = pytest.mark.skipif(not cpu_attention.available(), reason="no C++ compiler for the CPU kernel")


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

    for a, b in zip(outputs(cpu_attention.attention), outputs(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)


@needs_kernel
def test_causal_and_deterministic():
    qkv = jax.random.normal(jax.random.key(0), (2, 40, 3, 2, 16))
    cos, sin = modellib.rope_tables(40, 16, 10000.0)
    f = jax.jit(lambda x: cpu_attention.attention(x, cos, sin))
    a, b = f(qkv), f(qkv.at[:, 25:].add(1.0))
    np.testing.assert_array_equal(a[:, :25], b[:, :25])  # no position sees a later one
    assert float(jnp.max(jnp.abs(a[:, 25:] - b[:, 25:]))) > 1e-3
    np.testing.assert_array_equal(f(qkv), a)


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


def test_for_mesh_picks_the_kernel_only_where_it_runs():
    mesh = proxy_mesh(jax.devices()[:1])
    assert for_mesh(PRESETS["1m"], mesh).cpu_kernel == cpu_attention.available()
    odd = dataclasses.replace(PRESETS["1m"], d_model=48, n_heads=2)  # head size 24: no kernel
    assert not for_mesh(odd, mesh).cpu_kernel


def test_without_compiler_falls_back():
    env = dict(os.environ, REGMIX_NO_COMPILE="1", JAX_PLATFORMS="cpu")
    code = ("from proxies import cpu_attention; from proxies.train import for_mesh; from proxies.mesh import proxy_mesh;"
            "from proxies.config import PRESETS; assert not cpu_attention.available();"
            "assert not for_mesh(PRESETS['1m'], proxy_mesh()).cpu_kernel; print('OK')")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-2000:]
