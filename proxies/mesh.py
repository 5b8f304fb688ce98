"""The device mesh of the proxy axis: more devices train more proxies at once.

Every stacked array (parameters, optimizer state, batches) is split along its leading proxy axis
with `NamedSharding(mesh, P("proxies"))`; the jitted step then runs on all devices with no
communication, since proxies are independent. Multi-host: call `jax.distributed.initialize()` on
every host before `train_mixtures`; `jax.devices()` then lists all hosts' devices, the default
mesh spans them, every host builds the same global batch (a pure function of the seed and the
step) and `jax.device_put` keeps each host's shards; per-proxy losses come back to every host
through `to_host`. On CPUs prefer giving each host its own groups of a sweep (`python -m
proxies.workers`), which needs no collective setup.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "proxies"


def proxy_mesh(devices=None) -> Mesh:
    """1-D mesh named "proxies" over `devices` (default: all of them)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def proxy_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (proxy) axis split over the mesh, everything else replicated."""
    return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def to_host(x: jax.Array) -> np.ndarray:
    """A (possibly multi-host) array as numpy on this host."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def padded_size(m: int, mesh: Mesh) -> int:
    """Smallest multiple of the mesh size that holds m proxies."""
    n = mesh.devices.size
    return -(-m // n) * n
