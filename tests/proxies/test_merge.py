"""Merged models: exact one-hot merges, identical branches, batches = one at a time, bad weights,
branches from the seed through the job runner, and `regmix merge` tables that `regmix fit` reads."""

import json

import jax
import numpy as np
import pandas as pd
import pytest
import yaml

from proxies import model as modellib
from proxies.config import TrainConfig, preset
from proxies.batches import check_mixtures
from proxies.merge import (ablation_mixtures, ablation_table, favoured_domains, merge_params, merged_losses,
                           upsampled)
from regmix.cli import main
from regmix.corpus.store import TokenStore, write_store
from regmix.errors import RegmixError
from toy_stores import periodic_arrays

TRAIN = {"steps": 12, "batch": 4, "seq_len": 32, "lr": 0.003, "warmup_steps": 3, "block_steps": 4,
         "eval_windows": 4, "eval_batch": 4, "checkpoint_every": 0}
DOMAINS = ["web", "code", "books"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    arrays = periodic_arrays({d: (p, 4000, 400) for d, p in [("web", 3), ("code", 50), ("books", 100), ("held", 7)]})
    write_store(root / "store", arrays, vocab_size=257, eod_id=256)
    return root


@pytest.fixture(scope="module")
def merged_run(store):
    """One `regmix merge` run (seed 12 steps, branches 4) shared by every test: its branches are the
    stacked models the merge tests take apart, so all of them reuse its compiled shapes."""
    config = {"store": str(store / "store"), "model": "tiny", "sampler": "uniform", "train_domains": DOMAINS,
              "train": TRAIN, "merge": {"seed_steps": 12, "branch_steps": 4, "n_candidates": 12, "chunk": 8}}
    (store / "merge.yaml").write_text(yaml.safe_dump(config))
    out = store / "out"
    assert main(["merge", "--config", str(store / "merge.yaml"), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def branches(merged_run):
    """The run's three branches (trained on different domains: different weights), stacked."""
    from proxies import branches as br

    record = json.loads((merged_run / "merge.json").read_text())
    stacked = br.load_params(merged_run, record, 1)
    assert all(not np.array_equal(np.asarray(x[0]), np.asarray(x[1])) for x in jax.tree.leaves(stacked)[:1])
    return stacked


def leaves(params, i=None):
    return [np.asarray(x if i is None else x[i]) for x in jax.tree.leaves(params)]


def test_one_hot_merge_is_the_branch_exactly(branches):
    merged = merge_params(branches, np.eye(3))
    for k in range(3):
        for a, b in zip(leaves(merged, k), leaves(branches, k)):
            np.testing.assert_array_equal(a, b)


def test_identical_branches_merge_to_the_branch(branches):
    same = jax.tree.map(lambda x: np.repeat(np.asarray(x[:1]), 3, axis=0), branches)
    merged = merge_params(same, np.array([[0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]]))
    for n in range(2):
        for a, b in zip(leaves(merged, n), leaves(branches, 0)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # and a real mixture of different branches is their weighted average
    mixed = merge_params(branches, np.array([[0.2, 0.3, 0.5]]))
    for a, *bs in zip(leaves(mixed, 0), *(leaves(branches, k) for k in range(3))):
        np.testing.assert_allclose(a, 0.2 * bs[0] + 0.3 * bs[1] + 0.5 * bs[2], rtol=1e-5, atol=1e-7)


def test_batch_equals_one_at_a_time(store, branches):
    s = TokenStore.open(store / "store")
    train = TrainConfig(**TRAIN)
    w = np.random.default_rng(1).dirichlet(np.ones(3), size=10)
    kw = dict(store=s, eval_domains=["web", "held"], model="tiny", train=train)
    loss, bpb = merged_losses(branches, w, chunk=8, **kw)  # two chunks, the last one padded
    assert loss.shape == (10, 2) and np.isfinite(loss).all()
    assert np.ptp(loss[:, 0]) > 0  # different mixtures, different losses
    one, one_bpb = merged_losses(branches, w, chunk=1, **kw)  # every mixture scored alone
    np.testing.assert_allclose(loss, one, rtol=1e-5)
    np.testing.assert_allclose(bpb, one_bpb, rtol=1e-5)
    single, _ = merged_losses(branches, w[3:4], **kw)
    np.testing.assert_allclose(loss[3], single[0], rtol=1e-5)


@pytest.mark.parametrize("w", [[[0.5, 0.6, -0.1]], [[0.5, 0.2, 0.2]], [[np.nan, 0.5, 0.5]], [[0.5, 0.5]]])
def test_weights_off_the_simplex_are_refused(branches, w):
    with pytest.raises(RegmixError, match="merge mixture"):
        merge_params(branches, np.array(w))


def test_merge_writes_tables_fit_reads(store, merged_run):
    out = merged_run
    mixtures, metrics = pd.read_csv(out / "mixtures.csv"), pd.read_csv(out / "metrics.csv")
    assert list(mixtures.columns) == ["run"] + DOMAINS and len(mixtures) == 12
    domains = DOMAINS + ["held"]
    assert list(metrics.columns) == ["run"] + [f"{d}_{m}" for d in domains for m in ("val_loss", "bpb")] + [
        "mean_val_loss", "mean_bpb"]
    assert metrics.iloc[:, 1:].notna().all().all()
    assert (pd.read_csv(out / "status.csv")["source"] == "merged").all()
    assert json.loads((out / "merge.json").read_text())["rows"] == "merged"
    assert main(["fit", "--mixtures", str(out / "mixtures.csv"), "--metrics", str(out / "metrics.csv"),
                 "--target", "held_val_loss", "--model", "linear", "--folds", "3", "--out", str(store / "fit"),
                 "--no-progress"]) == 0
    assert (store / "fit" / "model.json").exists()


def test_branches_start_from_the_seed_and_one_hot_matches_the_branch(store, merged_run):
    from proxies import branches as br

    out = merged_run
    record = json.loads((out / "merge.json").read_text())
    result = br.branch_results(out)
    assert result["runs"] == DOMAINS and result["steps"] == [4, 4, 4]
    seed = json.loads(br.job_result(out, 0).read_text())
    # a branch trained on its domain alone is better there than the seed it started from
    for k, d in enumerate(DOMAINS):
        assert result["val_loss"][k][k] < seed["val_loss"][0][k]
    # the one-hot merged row scores as the branch did at the end of its training
    (store / "onehot.csv").write_text("run,web,code,books\na,0,1,0\n")
    assert main(["merge", "--config", str(store / "merge.yaml"), "--out", str(out),
                 "--mixtures", str(store / "onehot.csv")]) == 0  # resumes: nothing retrained
    metrics = pd.read_csv(out / "metrics.csv")
    np.testing.assert_allclose(metrics.loc[0, "code_val_loss"], result["val_loss"][1][1], rtol=1e-5)
    assert json.loads(br.job_result(out, 1).read_text()) == result


def test_mixtures_with_an_unknown_domain_are_refused(store, merged_run, capsys):
    (store / "bad.csv").write_text("run,web,nope\na,0.5,0.5\n")
    assert main(["merge", "--config", str(store / "merge.yaml"), "--out", str(merged_run),
                 "--mixtures", str(store / "bad.csv")]) == 2
    assert "nope" in capsys.readouterr().err


def test_ablation_mixtures_remove_and_double_each_domain():
    names, w = ablation_mixtures(np.array([0.5, 0.3, 0.2, 0.0]), ["a", "b", "c", "d"])
    assert names == ["base", "-a", "2x a", "-b", "2x b", "-c", "2x c"]  # d has no weight: nothing to ablate
    check_mixtures(w, ["a", "b", "c", "d"])  # every row on the simplex
    np.testing.assert_allclose(w[1], [0, 0.6, 0.4, 0])  # a removed, the rest renormalized
    np.testing.assert_allclose(w[2], [1.0, 0, 0, 0])  # a at 1/2 doubled: all of the mass
    np.testing.assert_allclose(w[4], [0.5 * 0.4 / 0.7, 0.6, 0.2 * 0.4 / 0.7, 0])  # b doubled, others scaled
    assert ablation_mixtures(np.array([1.0, 0.0]), ["a", "b"])[0] == ["base"]  # the only domain stays
    with pytest.raises(RegmixError, match="ablation mixture"):
        ablation_mixtures(np.array([0.5, 0.6]), ["a", "b"])


def test_ablation_table_picks_the_domains_whose_doubling_helps():
    names = ["base", "-a", "2x a", "-b", "2x b", "-c", "2x c"]
    table = ablation_table(names, np.array([3.0, 3.2, 2.9, 2.95, 3.1, 3.05, 2.8]), ["a", "b", "c"])
    assert [r["domain"] for r in table] == ["a", "b", "c"]
    np.testing.assert_allclose([r["removed"] for r in table], [0.2, -0.05, 0.05])
    np.testing.assert_allclose([r["doubled"] for r in table], [-0.1, 0.1, -0.2])
    assert favoured_domains(table) == ["c", "a"] and favoured_domains(table, 1) == ["c"]
    assert favoured_domains([dict(r, doubled=abs(r["doubled"])) for r in table]) == []  # nothing helps
    late = upsampled(np.array([0.6, 0.3, 0.1]), ["a", "b", "c"], ["c"])
    np.testing.assert_allclose(late, [0.6 * 0.8 / 0.9, 0.3 * 0.8 / 0.9, 0.2])
    np.testing.assert_allclose(upsampled(np.array([0.6, 0.4]), ["a", "b"], ["a", "b"]), [0.6, 0.4])


def test_damaged_seed_params_train_the_seed_again(merged_run, tmp_path):
    import shutil

    from proxies import branches as br
    from proxies.branches import MergeConfig
    from regmix.config import from_dict

    out = tmp_path / "copy"
    shutil.copytree(merged_run, out)
    record = json.loads((out / "merge.json").read_text())
    seed = json.loads(br.job_result(out, 0).read_text())
    biggest = max((p for p in br.params_dir(out, 0).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = bytes(16)  # damaged: fails to read or fails its checksum
    biggest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="discarded"):
        br.train_branches(from_dict(MergeConfig, record["config"]), out)
    assert json.loads(br.job_result(out, 0).read_text())["val_loss"] == seed["val_loss"]  # trained again, the same
    br.load_params(out, record, 0)  # and its params are there again
