"""The device mesh: more devices train more proxies at once.

The mesh has two axes, ("proxies", "batch"). Every stacked array (parameters, optimizer state) is
split along its leading proxy axis with `NamedSharding(mesh, P("proxies"))` and the batches with
`P("proxies", "batch")`. Proxies are independent, so the proxy axis needs no communication. The
batch axis has size 1 unless there are fewer proxies than devices: then the spare devices split each
proxy's batch (data parallel: the training step becomes a `shard_map` whose gradients are summed in
one all-reduce, proxies.train), so one proxy on two cores uses both. Its results then agree with a
one-device run to float rounding, not bit for bit.

Multi-host: call `jax.distributed.initialize()` on every host before `train_mixtures`;
`jax.devices()` then lists all hosts' devices, the default mesh spans them, every host builds the
same global batch (a pure function of the seed and the step) and `jax.device_put` keeps each host's
shards; per-proxy losses come back to every host through `to_host`. Between CPU hosts the
collectives go over gloo (TCP). tests/proxies/test_mesh.py runs this path with two processes on one
machine and gets the results of one process. On CPUs prefer giving each host its own groups of a
sweep (pool workers, see proxies.sweep), which needs no collective setup; within one machine a
group with several cores runs as replica processes (proxies.replicas), which split its batches
faster than the host devices of one process do.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "proxies"
BATCH_AXIS = "batch"


def proxy_mesh(devices=None, n_proxies: int | None = None, batch: int | None = None) -> Mesh:
    """("proxies", "batch") mesh over `devices` (default: all of them).

    The batch axis takes the devices that `n_proxies` proxies leave idle: its size is the smallest
    divisor of the device count that gives every proxy a device and divides `batch`."""
    devices = jax.devices() if devices is None else list(devices)
    d = len(devices)
    split = 1
    if n_proxies is not None and n_proxies < d:
        for k in range(1, d + 1):
            if d % k == 0 and d // k <= n_proxies and (batch is None or batch % k == 0):
                split = k
                break
    return Mesh(np.asarray(devices).reshape(d // split, split), (AXIS, BATCH_AXIS))


def proxy_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (proxy) axis split over the mesh's proxy axis, everything else replicated."""
    return NamedSharding(mesh, P(AXIS))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches (proxies, batch, tokens): proxies over the proxy axis, windows over the batch axis."""
    return NamedSharding(mesh, P(AXIS, BATCH_AXIS))


def to_host(x: jax.Array) -> np.ndarray:
    """A (possibly multi-host) array as numpy on this host."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def padded_size(m: int, mesh: Mesh) -> int:
    """Smallest multiple of the mesh size that holds m proxies."""
    n = mesh.shape[AXIS]
    return -(-m // n) * n
