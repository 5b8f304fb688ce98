"""Compiled CPU kernels (proxies/csrc), called through XLA's FFI: causal attention, SwiGLU, RMSNorm.

Why: on CPUs, XLA:CPU ran the 1m proxy's attention (head size 32, 256 positions) at about 22
GFLOP/s, a third of a training step for a tenth of its FLOPs: the (sequence, head) products are
small, and around them sit transposes into and out of a head-major layout, the softmax passes, and
the probabilities saved for the backward pass. The attention kernel reads the qkv projection as it
is (applying the rotary embedding itself), keeps each (sequence, head) pair in cache, and
recomputes the probabilities in the backward pass from the saved row log-sum-exp (flash
attention), so nothing of size T x T is stored. SwiGLU and RMSNorm take XLA:CPU several passes over
memory each; their kernels take one, a row at a time.

The library is compiled on first use with the system C++ compiler (-O3 -march=native) into the
cache folder (REGMIX_CACHE), keyed by its sources, the flags, jaxlib's version and this CPU's
features. Without a compiler, or with REGMIX_NO_COMPILE set, `available()` is False and the model
keeps its XLA code (proxies.model, proxies.kernels); the two agree to float rounding
(tests/proxies/test_cpu_kernels.py). `train.for_mesh` switches the kernels on for CPU meshes.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from regmix import cbuild

SOURCES = sorted((Path(__file__).with_name("csrc")).glob("*.cc"))
HEADERS = sorted((Path(__file__).with_name("csrc")).glob("*.h"))
FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC"]
HEAD_SIZES = (16, 32, 64, 128)
TARGETS = {  # FFI target name: symbol in the library
    "regmix_attention_forward": "RegmixAttentionForward", "regmix_attention_backward": "RegmixAttentionBackward",
    "regmix_swiglu_forward": "RegmixSwigluForward", "regmix_swiglu_backward": "RegmixSwigluBackward",
    "regmix_rms_norm_forward": "RegmixRmsNormForward", "regmix_rms_norm_backward": "RegmixRmsNormBackward",
}


def _cpu_features() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def build() -> Path | None:
    """The compiled kernel library (built once into the cache, regmix.cbuild), or None where it
    cannot be built (no compiler, REGMIX_NO_COMPILE set, or the build failed: XLA's code then runs)."""
    sources = {f.name: f.read_text() for f in SOURCES + HEADERS}  # attention.cc includes "simd.h" from beside it
    return cbuild.build(name="kernels", language="c++", sources=sources, flags=FLAGS + [f"-I{jax.ffi.include_dir()}"],
                        key=f"{jax.__version__}\n{_cpu_features()}", what="the CPU kernels")


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Whether the kernels are built and registered with XLA in this process."""
    try:
        path = build()
        if path is None:
            return False
        lib = ctypes.CDLL(str(path))
        for name, symbol in TARGETS.items():
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    except (OSError, AttributeError) as err:
        warnings.warn(f"the CPU kernels are unavailable ({err}); using XLA's code")
        return False
    return True


def supports(head_dim: int) -> bool:
    return head_dim in HEAD_SIZES


def _forward(qkv, cos, sin):
    *lead, t, _, h, d = qkv.shape
    out = (jax.ShapeDtypeStruct((*lead, t, h, d), jnp.float32), jax.ShapeDtypeStruct((*lead, h, t), jnp.float32))
    # expand_dims: the rotary tables stay one [T, D/2] table under vmap
    return jax.ffi.ffi_call("regmix_attention_forward", out, vmap_method="expand_dims")(qkv, cos, sin)


@jax.custom_vjp
def attention(qkv_NxTx3xHxD: jax.Array, cos_TxD2: jax.Array, sin_TxD2: jax.Array) -> jax.Array:
    """Causal softmax attention of the rotary-embedded q and k (rotated as proxies.model.apply_rope
    does, by the tables of proxies.model.rope_tables) and v, taken from the fused projection's
    output [..., T, 3, H, D]; scores scaled by 1/sqrt(D); returns [..., T, H, D] (float32).
    Requires `available()` and a head size in HEAD_SIZES."""
    return _forward(qkv_NxTx3xHxD, cos_TxD2, sin_TxD2)[0]


def _attention_fwd(qkv, cos, sin):
    o, lse = _forward(qkv, cos, sin)
    return o, (qkv, cos, sin, o, lse)


def _attention_bwd(res, do):
    qkv, cos, sin = res[:3]
    dqkv = jax.ffi.ffi_call("regmix_attention_backward", jax.ShapeDtypeStruct(qkv.shape, jnp.float32),
                            vmap_method="expand_dims")(*res, do)
    return dqkv, jnp.zeros_like(cos), jnp.zeros_like(sin)  # the tables are constants


attention.defvjp(_attention_fwd, _attention_bwd)


def _shaped(x) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape, jnp.float32)


@jax.custom_vjp
def swiglu_gates(h_NxF2: jax.Array) -> jax.Array:
    """silu(gate) * up of h = [gate | up] on the last axis (float32)."""
    *lead, f2 = h_NxF2.shape
    out = jax.ShapeDtypeStruct((*lead, f2 // 2), jnp.float32)
    return jax.ffi.ffi_call("regmix_swiglu_forward", out, vmap_method="broadcast_all")(h_NxF2)


def _swiglu_fwd(h):
    return swiglu_gates(h), h


def _swiglu_bwd(h, da):
    return (jax.ffi.ffi_call("regmix_swiglu_backward", _shaped(h), vmap_method="broadcast_all")(h, da),)


swiglu_gates.defvjp(_swiglu_fwd, _swiglu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def rms_norm(x_NxD: jax.Array, scale_D: jax.Array, eps: float) -> jax.Array:
    """x / sqrt(mean(x^2, last axis) + eps) * scale, as proxies.model.RMSNorm computes it."""
    return _rms_fwd(x_NxD, scale_D, eps)[0]


def _rms_fwd(x, scale, eps):
    out = (_shaped(x), jax.ShapeDtypeStruct(x.shape[:-1], jnp.float32))
    # broadcast_all: under vmap, scale [G, d] with the rows of x in G equal groups
    y, r = jax.ffi.ffi_call("regmix_rms_norm_forward", out, vmap_method="broadcast_all")(x, scale, eps=np.float32(eps))
    return y, (x, scale, r)


def _rms_bwd(eps, res, dy):
    x, scale, r = res
    out = (_shaped(x), _shaped(scale))
    return tuple(jax.ffi.ffi_call("regmix_rms_norm_backward", out, vmap_method="broadcast_all")(x, scale, r, dy))


rms_norm.defvjp(_rms_fwd, _rms_bwd)
