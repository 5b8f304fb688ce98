"""Sharding over 4 forced host devices gives the results of one device: the proxy axis, and with
fewer proxies than devices, each proxy's batch too."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

# Shared by the scripts below (each replaces its line "STORE"): three domains of different token ranges.
STORE = """
from proxies.config import TrainConfig
from proxies.train import train_mixtures
from regmix.corpus.store import write_store

def make_store(path):
    rng = np.random.default_rng(0)
    arrays = {d: (rng.integers(0, 20 + 30 * i, 3000), rng.integers(0, 20 + 30 * i, 300)) for i, d in enumerate("abc")}
    return write_store(path, arrays, vocab_size=257, eod_id=256)
"""

SCRIPT = textwrap.dedent("""
    import jax, numpy as np, sys
    assert len(jax.devices()) == 4, jax.devices()
    from proxies.mesh import proxy_mesh
    STORE
    store = make_store(sys.argv[1])
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
""").replace("STORE\n", STORE, 1)


def test_four_host_devices_equal_one(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "store")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK (5, 3) 4" in proc.stdout


MULTI = textwrap.dedent("""
    import sys, jax, numpy as np
    rank, port, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if rank >= 0:  # two processes of one device each, joined as the hosts of a cluster would be
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=rank)
    STORE
    store = make_store(f"{folder}/store{rank}")
    train = TrainConfig(steps=6, batch=4, seq_len=32, warmup_steps=2, eval_windows=4, eval_batch=4)
    w = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    both = train_mixtures(store, list("abc"), w, model="tiny", train=train).val_loss_MxE  # proxies split
    alone = train_mixtures(store, list("abc"), w[1:], model="tiny", train=train, proxy_ids=np.array([1]))
    np.save(f"{folder}/rank{rank}.npy", np.concatenate([both, alone.val_loss_MxE]))  # alone: batch split
    print("devices", jax.device_count())
""").replace("STORE\n", STORE, 1)


def test_two_processes_equal_one(tmp_path):
    """The multi-host path (jax.distributed over gloo): two one-device processes train as one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    run = lambda rank: subprocess.Popen([sys.executable, "-c", MULTI, str(rank), port, str(tmp_path)], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = [run(r) for r in (0, 1, -1)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert [o.split()[-1] for o, _ in outs] == ["2", "2", "1"]
    r0, r1, one = (np.load(tmp_path / f"rank{r}.npy") for r in (0, 1, -1))
    np.testing.assert_array_equal(r0, r1)
    np.testing.assert_allclose(r0, one, rtol=1e-5)
    assert np.isfinite(one).all() and one.shape == (3, 3)
