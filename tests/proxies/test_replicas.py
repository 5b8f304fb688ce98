"""Replicas (proxies.replicas): processes that split a group's batches train as one process does."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from proxies.replicas import Launch, replica_count


def start(script: str, world: int, *args, env_extra=None) -> list[subprocess.Popen]:
    """`world` Python processes running `script` as replicas of one set."""
    launch = Launch(world)
    try:
        return [subprocess.Popen([sys.executable, "-c", script, *map(str, args)], pass_fds=launch.fds[r],
                                 env=dict(os.environ, JAX_PLATFORMS="cpu", **launch.env[r], **(env_extra or {})),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for r in range(world)]
    finally:
        launch.close()


def finish(procs, timeout=120):
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


MEAN = textwrap.dedent("""
    import json, sys, numpy as np
    from proxies.replicas import from_env
    rep = from_env()
    out = []
    for call in range(3):  # more calls than the two alternating slot sets
        x = np.arange(5, dtype=np.float32) * (rep.rank + 1) + call
        out.append(rep.mean(x.reshape(1, 5), tag=7).tolist())
    big = rep.mean(np.full(100_000, rep.rank, np.float32))  # the shared memory grows
    print(json.dumps({"rank": rep.rank, "out": out, "big": float(big.mean())}))
""")


def test_mean_over_three_processes():
    results = finish(start(MEAN, 3))
    for code, out, err in results:
        assert code == 0, err[-2000:]
    got = [json.loads(out) for _, out, _ in results]
    assert [g["rank"] for g in got] == [0, 1, 2]
    want = [((np.arange(5) * (1 + 2 + 3) + 3 * c) / 3).reshape(1, 5).tolist() for c in range(3)]
    for g in got:
        np.testing.assert_allclose(g["out"], want, rtol=1e-6)
        assert g["out"] == got[0]["out"]  # the same bits on every replica
        assert g["big"] == pytest.approx(1.0)


OUT_OF_STEP = textwrap.dedent("""
    import sys, numpy as np
    from proxies.replicas import from_env
    from regmix.errors import RegmixError
    rep = from_env()
    try:
        rep.mean(np.zeros(3, np.float32), tag=rep.rank)  # replicas that train different things
    except RegmixError as e:
        print("ERROR", e)
        sys.exit(3)
""")

DIES = textwrap.dedent("""
    import os, sys, numpy as np
    from proxies.replicas import from_env
    from regmix.errors import RegmixError
    rep = from_env()
    if rep.rank == 1:
        os._exit(1)  # a replica dies before the exchange
    try:
        rep.mean(np.zeros(3, np.float32))
    except RegmixError as e:
        print("ERROR", e)
        sys.exit(3)
""")


def test_out_of_step_and_dead_replicas_are_errors_not_hangs():
    (code0, out0, _), _ = finish(start(OUT_OF_STEP, 2), timeout=60)
    assert code0 == 3 and "replica 1 is out of step" in out0
    (code0, out0, _), (code1, _, _) = finish(start(DIES, 2), timeout=60)
    assert code1 == 1 and code0 == 3 and "replica 1 stopped" in out0


def test_replica_count():
    assert replica_count(2, 16) == 2 and replica_count(4, 6) == 3 and replica_count(3, 7) == 1
    assert replica_count(8, None) == 1 and replica_count(1, 16) == 1


TRAIN = textwrap.dedent("""
    import json, sys, numpy as np
    from proxies.config import TrainConfig
    from proxies.replicas import from_env
    from proxies.train import train_mixtures
    from regmix.corpus.store import write_store

    rep = from_env()
    folder = sys.argv[1]
    rank = -1 if rep is None else rep.rank
    rng = np.random.default_rng(0)
    arrays = {d: (rng.integers(0, 20 + 30 * i, 3000), rng.integers(0, 20 + 30 * i, 300)) for i, d in enumerate("abc")}
    store = write_store(f"{folder}/store{rank}", arrays, vocab_size=257, eod_id=256)
    train = TrainConfig(steps=8, batch=4, seq_len=32, warmup_steps=2, eval_every=4, eval_windows=4, eval_batch=4,
                        checkpoint_every=3)
    w = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    r = train_mixtures(store, list("abc"), w, model="tiny", train=train, replicas=rep,
                       checkpoint_dir=f"{folder}/ckpt{rank}")
    np.save(f"{folder}/curve{rank}.npy", r.curve_loss_SxMxE)
    print("steps", r.steps_M.tolist())
""")


def test_two_replicas_train_as_one_process(tmp_path):
    """Each replica takes half of every batch; together they give the one-process result, and every
    replica holds the same numbers. Only rank 0 saves checkpoints."""
    one = subprocess.run([sys.executable, "-c", TRAIN, str(tmp_path)], env=dict(os.environ, JAX_PLATFORMS="cpu"),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    for code, out, err in finish(start(TRAIN, 2, tmp_path), timeout=300):
        assert code == 0, err[-3000:]
    ref, r0, r1 = (np.load(tmp_path / f"curve{r}.npy") for r in (-1, 0, 1))
    np.testing.assert_array_equal(r0, r1)
    np.testing.assert_allclose(r0, ref, rtol=1e-5)
    assert np.isfinite(ref).all() and ref.shape == (3, 2, 3)
    assert sorted(os.listdir(tmp_path / "ckpt0")) == ["6"] and not (tmp_path / "ckpt1").exists()
