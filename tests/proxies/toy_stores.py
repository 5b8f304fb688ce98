"""Token arrays of the small synthetic stores the proxy tests train on (one definition, so tests agree on them)."""

import numpy as np


def periodic_arrays(spec: dict[str, tuple[int, int, int]], seed: int = 0) -> dict:
    """{domain: (period, n_train, n_valid)} -> {domain: (train, valid)}: bytes that jump by `period` at random,
    so domains differ in a way a tiny model learns within a few steps."""
    rng = np.random.default_rng(seed)

    def dom(p, n):
        return (rng.integers(0, 2, n) * p + rng.integers(0, 10, n)) % 256

    return {d: (dom(p, n_train), dom(p, n_valid)) for d, (p, n_train, n_valid) in spec.items()}


def banded_arrays(domains, n_train: int, n_valid: int, seed: int = 0) -> dict:
    """Each domain's tokens lie in its own id range (domain i: 10i .. 10i+9), so a window tells which
    domain it came from."""
    rng = np.random.default_rng(seed)
    return {d: (rng.integers(10 * i, 10 * i + 10, n_train), rng.integers(10 * i, 10 * i + 10, n_valid))
            for i, d in enumerate(domains)}
