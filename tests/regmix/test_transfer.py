import json

import numpy as np
import pandas as pd
import pytest

from regmix.cli import main

K = 4


def sweep(folder, w, loss, ids=None):
    folder.mkdir(parents=True)
    ids = ids if ids is not None else [f"p{i:03d}" for i in range(len(w))]
    mix = pd.DataFrame(w, columns=[f"d{j}" for j in range(K)])
    mix.insert(0, "run", ids)
    mix.to_csv(folder / "mixtures.csv", index=False)
    pd.DataFrame({"run": ids, "target_val_loss": loss}).to_csv(folder / "metrics.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def weights():
    return np.random.default_rng(0).dirichlet(np.ones(K), 40)


def run(capsys, *args):
    code = main(["transfer", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_ranking_that_holds_and_one_that_does_not(tmp_path, weights, capsys):
    t = np.array([-2.0, -0.5, 0.5, 1.5])
    small = 3 + np.exp(weights @ t)
    sweep(tmp_path / "a", weights, small)
    sweep(tmp_path / "b", weights, 2.5 + 0.8 * np.exp(weights @ t))  # larger proxies: lower, same order
    sweep(tmp_path / "c", weights, 3 + np.exp(weights @ -t))  # larger proxies that prefer the opposite
    code, out, err = run(capsys, "--small", tmp_path / "a", "--large", tmp_path / "b", "--target", "target",
                         "--model", "linear", "--out", tmp_path / "ab")
    assert code == 0, err
    ab = json.loads((tmp_path / "ab" / "transfer.json").read_text())["targets"][0]
    assert ab["true_vs_true"]["spearman"] == pytest.approx(1.0) and ab["model_vs_large"]["spearman"] > 0.9
    assert ab["holds"] and ab["top_k_overlap"] == 5 and "ranking holds" in out
    assert (tmp_path / "ab" / "transfer.png").read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run(capsys, "--small", tmp_path / "a", "--large", tmp_path / "c", "--target", "target",
                       "--model", "linear", "--out", tmp_path / "ac")
    ac = json.loads((tmp_path / "ac" / "transfer.json").read_text())["targets"][0]
    assert ac["true_vs_true"]["spearman"] < -0.9 and not ac["holds"] and ac["regret_on_large"] > 0
    assert "does not hold" in out


def test_sweeps_that_share_ids_but_not_mixtures_or_too_few_ids_are_refused(tmp_path, weights, capsys):
    loss = weights[:, 0]
    sweep(tmp_path / "a", weights, loss)
    sweep(tmp_path / "b", weights[::-1], loss)  # same ids, other mixtures
    sweep(tmp_path / "c", weights[:5], loss[:5], ids=[f"q{i}" for i in range(5)])
    code, _, err = run(capsys, "--small", tmp_path / "a", "--large", tmp_path / "b", "--target", "target",
                       "--out", tmp_path / "o")
    assert code == 2 and "has other weights" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "--small", tmp_path / "a", "--large", tmp_path / "c", "--target", "target",
                       "--out", tmp_path / "o")
    assert code == 2 and "share 0 mixture id(s)" in err
    code, _, err = run(capsys, "--small", tmp_path / "a", "--large", tmp_path / "nowhere", "--target", "target",
                       "--out", tmp_path / "o")
    assert code == 2 and "not a sweep folder" in err
