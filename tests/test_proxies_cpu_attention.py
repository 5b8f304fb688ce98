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


def reference(q, k, v):
    """XLA's causal attention on [B, T, H, D] arrays."""
    o = causal_attention(jnp.transpose(q, (0, 2, 1, 3)), jnp.transpose(k, (0, 2, 3, 1)),
                         jnp.transpose(v, (0, 2, 3, 1)), 1)
    return jnp.transpose(o, (0, 2, 1, 3))


@needs_kernel
@pytest.mark.parametrize("shape", [(2, 3, 37, 2, 16), (1, 2, 64, 4, 32), (2, 1, 24, 2, 64), (1, 2, 9, 1, 128),
                                   (1, 1, 1, 1, 16)])
def test_values_and_gradients_equal_xla(shape):
    """Vmapped over a leading proxy axis; T need not be a multiple of the kernel's tiles."""
    q, k, v, g = (jax.random.normal(jax.random.key(i), shape) * 2 for i in range(4))

    def outputs(fn):
        run = lambda q, k, v, g: (fn(q, k, v),) + jax.vjp(fn, q, k, v)[1](g)
        return jax.jit(jax.vmap(run))(q, k, v, g)

    for a, b in zip(outputs(cpu_attention.attention), outputs(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)


@needs_kernel
def test_causal_and_deterministic():
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 40, 2, 16)) for i in range(3))
    f = jax.jit(cpu_attention.attention)
    changed = [x.at[:, 25:].add(1.0) for x in (q, k, v)]
    a, b = f(q, k, v), f(*changed)
    np.testing.assert_array_equal(a[:, :25], b[:, :25])  # no position sees a later one
    assert float(jnp.max(jnp.abs(a[:, 25:] - b[:, 25:]))) > 1e-3
    np.testing.assert_array_equal(f(q, k, v), a)


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
