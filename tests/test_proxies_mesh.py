"""Sharding over 4 forced host devices gives the results of one device: the proxy axis, and with
fewer proxies than devices, each proxy's batch too."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, numpy as np, sys
    assert len(jax.devices()) == 4, jax.devices()
    from proxies.config import TrainConfig
    from proxies.mesh import proxy_mesh
    from proxies.train import train_mixtures
    from regmix.corpus.store import write_store
    rng = np.random.default_rng(0)
    arrays = {d: (rng.integers(0, 20 + 30 * i, 3000), rng.integers(0, 20 + 30 * i, 300)) for i, d in enumerate("abc")}
    store = write_store(sys.argv[1], arrays, vocab_size=257, eod_id=256)
    train = TrainConfig(steps=8, batch=4, seq_len=32, warmup_steps=2, eval_windows=4, eval_batch=4)
    w = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.1, 0.8, 0.1]])
    four = train_mixtures(store, list("abc"), w, model="tiny", train=train, mesh=proxy_mesh())
    one = train_mixtures(store, list("abc"), w, model="tiny", train=train, mesh=proxy_mesh(jax.devices()[:1]))
    np.testing.assert_allclose(four.val_loss_MxE, one.val_loss_MxE, rtol=1e-5)
    # fewer proxies than devices: the default mesh splits each proxy's batch over the spare devices
    assert dict(proxy_mesh(n_proxies=1, batch=4).shape) == {"proxies": 1, "batch": 4}
    assert dict(proxy_mesh(n_proxies=2, batch=4).shape) == {"proxies": 2, "batch": 2}
    assert dict(proxy_mesh(n_proxies=1, batch=3).shape) == {"proxies": 4, "batch": 1}
    for rows in ([2], [0, 4]):
        split = train_mixtures(store, list("abc"), w[rows], model="tiny", train=train, proxy_ids=np.array(rows))
        np.testing.assert_allclose(split.val_loss_MxE, one.val_loss_MxE[rows], rtol=1e-5)
    print("OK", four.val_loss_MxE.shape, len(jax.devices()))
""")


def test_four_host_devices_equal_one(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "store")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK (5, 3) 4" in proc.stdout
