"""Small synthetic sweeps for tests: a known loss surface over mixtures."""

import numpy as np
import pandas as pd


def surface(w):
    """A smooth loss on the simplex: exp-of-linear plus a curved term, as proxy losses look."""
    t = np.linspace(-1.5, 1.5, w.shape[1])
    return 3.0 + np.exp(w @ t) + 0.5 * np.sqrt(w[:, 0] * w[:, 1])


def synthetic_sweep(tmp_path, n=96, k=5, seed=0, id_name="run", prefix="train_", noise=0.01):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k) * 0.7, n)
    t = np.linspace(-2.0, 1.0, k)
    loss = 3.0 + np.exp(w @ t) + rng.normal(0, noise, n)
    ids = [f"r{i:03d}" for i in range(n)]
    domains = [f"{prefix}d{j}" for j in range(k)]
    mix = pd.DataFrame(w, columns=domains)
    mix.insert(0, id_name, ids)
    met = pd.DataFrame({id_name: ids, "metric/target_val_loss": loss, "metric/other_val_loss": loss * 0.5 + 1})
    mix_path, met_path = tmp_path / "mixtures.csv", tmp_path / "metrics.csv"
    mix.to_csv(mix_path, index=False)
    met.to_csv(met_path, index=False)
    return mix_path, met_path, w, loss
