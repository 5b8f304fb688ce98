"""Causal attention on CPUs by a compiled kernel (proxies/csrc/attention.cc), called through XLA's FFI.

Why: XLA:CPU ran the 1m proxy's attention (head size 32, 256 positions) at about 22 GFLOP/s, a
third of a training step for a tenth of its FLOPs: the (sequence, head) products are small, and
around them sit transposes into and out of a head-major layout, the softmax passes, and the
probabilities saved for the backward pass. The kernel reads q, k and v in the [..., T, H, D]
layout of the qkv projection (no transposes), keeps each (sequence, head) pair in cache, and
recomputes the probabilities in the backward pass from the saved row log-sum-exp (flash
attention), so nothing of size T x T is stored.

It is compiled on first use with the system C++ compiler (-O3 -march=native) into the cache folder
(REGMIX_CACHE), keyed by its source, the flags, jaxlib's version and this CPU's features. Without
a compiler, or with REGMIX_NO_COMPILE set, `available()` is False and the model keeps the XLA
kernels of proxies.kernels; the two agree to float rounding (tests/test_proxies_cpu_attention.py).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp

SOURCE = Path(__file__).with_name("csrc") / "attention.cc"
FLAGS = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC"]
HEAD_SIZES = (16, 32, 64, 128)
_FORWARD, _BACKWARD = "regmix_attention_forward", "regmix_attention_backward"


def _cpu_features() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def build() -> Path | None:
    """The compiled kernel library (built once into the cache), or None where it cannot be built."""
    from regmix.regress.compiled import cache_dir

    cxx = _compiler()
    if cxx is None or os.environ.get("REGMIX_NO_COMPILE"):
        return None
    include = jax.ffi.include_dir()
    key = "\n".join([SOURCE.read_text(), " ".join(FLAGS), cxx, jax.__version__, _cpu_features()])
    target = cache_dir() / f"attention-{hashlib.sha256(key.encode()).hexdigest()[:24]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "attention.so"
        proc = subprocess.run([cxx, *FLAGS, f"-I{include}", "-o", str(out), str(SOURCE)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["no message"])[0]
            warnings.warn(f"compiling the CPU attention kernel failed ({first}); using XLA's attention")
            return None
        os.replace(out, target)  # atomic: workers may build at the same time
    return target


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Whether the kernel is built and registered with XLA in this process."""
    try:
        path = build()
        if path is None:
            return False
        lib = ctypes.CDLL(str(path))
        jax.ffi.register_ffi_target(_FORWARD, jax.ffi.pycapsule(lib.RegmixAttentionForward), platform="cpu")
        jax.ffi.register_ffi_target(_BACKWARD, jax.ffi.pycapsule(lib.RegmixAttentionBackward), platform="cpu")
    except (OSError, AttributeError) as err:
        warnings.warn(f"the CPU attention kernel is unavailable ({err}); using XLA's attention")
        return False
    return True


def supports(head_dim: int) -> bool:
    return head_dim in HEAD_SIZES


def _forward(qkv, cos, sin):
    *lead, t, _, h, d = qkv.shape
    out = (jax.ShapeDtypeStruct((*lead, t, h, d), jnp.float32), jax.ShapeDtypeStruct((*lead, h, t), jnp.float32))
    return jax.ffi.ffi_call(_FORWARD, out, vmap_method="expand_dims")(qkv, cos, sin)


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
    dqkv = jax.ffi.ffi_call(_BACKWARD, jax.ShapeDtypeStruct(qkv.shape, jnp.float32),
                            vmap_method="expand_dims")(*res, do)
    return dqkv, jnp.zeros_like(cos), jnp.zeros_like(sin)  # the tables are constants


attention.defvjp(_attention_fwd, _attention_bwd)
