"""Faults: damaged checkpoints are discarded and retrained, a full disk is one line that keeps what finished,
what a killed run leaves behind is cleaned on the next run, and two prepares on one folder are refused."""

import errno
import json
import os
import shutil
import warnings

import numpy as np
import pytest
import yaml

import proxies.jobs
import regmix.corpus.prepare
from proxies import checkpoint
from proxies.config import TrainConfig
from proxies.train import train_mixtures
from regmix.cli import main
from regmix.corpus.store import write_store
from regmix.files import locked
from toy_stores import periodic_arrays

DOMAINS = ["a", "b", "c"]
TRAIN = TrainConfig(steps=12, batch=4, seq_len=32, lr=3e-3, warmup_steps=2, block_steps=4,
                    eval_every=6, eval_windows=4, eval_batch=4, checkpoint_every=4)
W = np.array([[0.6, 0.4, 0.0], [0.0, 0.2, 0.8]])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    arrays = periodic_arrays({d: (p, 4000, 400) for d, p in zip(DOMAINS, (3, 50, 100))})
    return write_store(tmp_path_factory.mktemp("store"), arrays, vocab_size=257, eod_id=256)


@pytest.fixture(scope="module")
def uninterrupted(store):
    return train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN)


def _state(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(2, 64, 64)).astype(np.float32), "b": np.arange(6, dtype=np.int32)}


def _flip_bytes(folder, n=64):
    """Flip n bytes in the middle of the largest file of a checkpoint (its array data)."""
    big = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(big.read_bytes())
    mid = len(data) // 2
    for i in range(mid, min(mid + n, len(data))):
        data[i] ^= 0xFF
    big.write_bytes(bytes(data))


def _record_file(folder, step):
    return folder / str(step) / "record" / "metadata"


def _edit_record(folder, step, edit):
    path = _record_file(folder, step)
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _set_step(value):
    def edit(rec):
        rec["step"] = value
        return rec
    return edit


def _drop_checksum(rec):
    rec.pop(checkpoint.CHECKSUM)
    return rec


TAMPER = [
    ("flipped-bytes", lambda d: _flip_bytes(d), "discarded"),
    ("record-step-400", lambda d: _edit_record(d, 8, _set_step(400)), "checksum"),
    ("record-not-json", lambda d: _record_file(d, 8).write_bytes(b"\x00{not json"), "cannot be read"),
    ("record-a-list", lambda d: _record_file(d, 8).write_text("[1, 2]"), "discarded"),
    ("no-checksum", lambda d: _edit_record(d, 8, _drop_checksum), "no checksum"),
    ("leaves-truncated", lambda d: [p.write_bytes(p.read_bytes()[:10]) for p in (d / "8" / "state").rglob("*")
                                    if p.is_file() and p.stat().st_size > 1000], "discarded"),
]


@pytest.mark.parametrize("name,tamper,fragment", TAMPER, ids=[t[0] for t in TAMPER])
def test_a_damaged_checkpoint_is_discarded_with_a_warning(tmp_path, name, tamper, fragment):
    checkpoint.save(tmp_path, 8, _state(), {"step": 8, "curve": [[1.5, None]]})
    tamper(tmp_path)
    with pytest.warns(UserWarning, match=fragment):
        assert checkpoint.restore(tmp_path, _state(1)) is None
    assert not tmp_path.exists()  # discarded: the next run starts clean instead of failing the same way


def test_a_checkpoint_beyond_the_configured_steps_is_discarded(tmp_path):
    checkpoint.save(tmp_path, 400, _state(), {"step": 400})
    with pytest.warns(UserWarning, match="beyond the run's 120 steps"):
        assert checkpoint.restore(tmp_path, _state(1), max_step=120) is None
    checkpoint.save(tmp_path, 100, _state(), {"step": 100})
    step, state, rec = checkpoint.restore(tmp_path, _state(1), max_step=120)  # a sound one is kept
    assert (step, rec) == (100, {"step": 100})
    np.testing.assert_array_equal(state["w"], _state()["w"])


def test_a_step_folder_renamed_is_discarded(tmp_path):
    checkpoint.save(tmp_path, 8, _state(), {"step": 8})
    os.rename(tmp_path / "8", tmp_path / "80")
    with pytest.warns(UserWarning, match="naming step 8"):
        assert checkpoint.restore(tmp_path, _state(1)) is None


class _Stop(Exception):
    pass


def _stop_at_9(step, tokens):
    if step == 9:
        raise _Stop


@pytest.mark.parametrize("damage", ["flipped-bytes", "record-step-400"])
def test_flipped_checkpoint_bytes_retrain_to_the_uninterrupted_result(store, uninterrupted, tmp_path, damage):
    with pytest.raises(_Stop):
        train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN, checkpoint_dir=tmp_path, on_step=_stop_at_9)
    assert sorted(os.listdir(tmp_path)) == ["8"]
    if damage == "flipped-bytes":
        _flip_bytes(tmp_path)
    else:
        _edit_record(tmp_path, 8, _set_step(400))
    with pytest.warns(UserWarning, match="discarded, training starts again"):
        again = train_mixtures(store, DOMAINS, W, model="tiny", train=TRAIN, checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(again.curve_loss_SxMxE, uninterrupted.curve_loss_SxMxE)
    np.testing.assert_array_equal(again.val_loss_MxE, uninterrupted.val_loss_MxE)
    assert again.steps_M.tolist() == [TRAIN.steps] * len(W)


# ---- sweeps: a full disk, leftovers of a killed run ----

@pytest.fixture
def sweep_config(store, tmp_path):
    train = {"steps": 8, "batch": 4, "seq_len": 32, "lr": 0.003, "warmup_steps": 2, "block_steps": 4,
             "eval_every": 0, "eval_windows": 4, "eval_batch": 4, "checkpoint_every": 4}
    config = {"store": str(store.path), "n_proxies": 2, "model": "tiny", "sampler": "uniform", "train": train,
              "run": {"workers": 1, "group_size": 1}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _one_line(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l.startswith("regmix: error:")]
    assert len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_disk_full_during_a_sweep_is_one_line_and_keeps_finished_groups(sweep_config, tmp_path, capsys,
                                                                        monkeypatch):
    out = tmp_path / "out"
    real = proxies.jobs.atomic_write_json

    def second_result_fails(path, data, indent=1):
        if path.name == "result.json" and "g0001" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, indent)

    monkeypatch.setattr(proxies.jobs, "atomic_write_json", second_result_fails)
    argv = ["sweep", "--config", str(sweep_config), "--out", str(out), "--quiet"]
    code = main(argv)
    _one_line(code, capsys.readouterr().err, "disk full", "kept", "run the same command again")
    first = out / "groups" / "g0000" / "result.json"
    kept = first.read_bytes()
    assert "p0000" in (out / "metrics.csv").read_text()  # the finished group's row was written
    assert not (out / "groups" / "g0001" / "result.json").exists()

    # what a run killed mid-write leaves: temp files, and a checkpoint next to a finished result
    (out / ".metrics.csv.k3j2.tmp").write_text("half")
    (out / "groups" / "g0000" / ".progress.json.x9.tmp").write_text("half")
    shutil.copytree(out / "groups" / "g0001" / "ckpt", out / "groups" / "g0000" / "ckpt")
    monkeypatch.setattr(proxies.jobs, "atomic_write_json", real)
    assert main(argv) == 0
    assert first.read_bytes() == kept  # finished work is not redone
    assert (out / "groups" / "g0001" / "result.json").is_file()
    left = [p.name for p in out.rglob("*.tmp")]
    assert left == [] and not (out / "groups" / "g0000" / "ckpt").exists()
    assert (out / "metrics.csv").read_text().count("\np000") == 2


# ---- prepare: the lock, a full disk ----

@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    for d, word in (("web", "alpha"), ("code", "beta"), ("books", "gamma")):
        (root / d).mkdir(parents=True)
        (root / d / "a.txt").write_text(f"{word} text " * 200)
    return root


def test_a_second_prepare_on_one_folder_is_refused(corpus, tmp_path, capsys):
    out = tmp_path / "store"
    with locked(out, "prepare"):  # another prepare holds the folder
        code = main(["prepare", "--corpus", str(corpus), "--out", str(out), "--seq-len", "16", "--no-progress"])
        _one_line(code, capsys.readouterr().err, str(out), "another prepare is running")
    assert not (out / "meta.json").exists()
    assert main(["prepare", "--corpus", str(corpus), "--out", str(out), "--seq-len", "16", "--no-progress"]) == 0


def test_disk_full_during_prepare_is_one_line_and_keeps_finished_domains(corpus, tmp_path, capsys, monkeypatch):
    out = tmp_path / "store"
    real = regmix.corpus.prepare.atomic_write_text

    def web_fails(path, text):
        if path.parent.name == "web" and path.name == "info.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(regmix.corpus.prepare, "atomic_write_text", web_fails)
    argv = ["prepare", "--corpus", str(corpus), "--out", str(out), "--seq-len", "16", "--no-progress"]
    _one_line(main(argv), capsys.readouterr().err, "disk full", str(out))
    assert (out / "books" / "info.json").is_file() and (out / "code" / "info.json").is_file()
    assert not (out / "meta.json").exists()
    (out / "web" / "train.bin.tmp").write_bytes(b"\0" * 10)  # a kill mid-domain leaves this
    (out / ".meta.json.a1.tmp").write_text("half")
    monkeypatch.setattr(regmix.corpus.prepare, "atomic_write_text", real)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "books: unchanged, reused" in err and "code: unchanged, reused" in err and "web: unchanged" not in err
    assert not list(out.rglob("*.tmp"))
