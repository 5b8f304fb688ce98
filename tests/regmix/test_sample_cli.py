import numpy as np
import pytest

from regmix.cli import main
from regmix.errors import RegmixError
from regmix.sample import diagnose, grid_count
from regmix.weights import tidy_weights
from regmix.space import MixtureSpace
from regmix.tables import load_mixtures


def test_sample_writes_a_mixtures_table_reproducibly(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    assert main(["sample", "--domains", "web,code,books", "--n", "50", "--seed", "3", "--out", str(a), "--no-progress"]) == 0
    main(["sample", "--domains", "web,code,books", "--n", "50", "--seed", "3", "--out", str(b), "--no-progress"])
    main(["sample", "--domains", "web,code,books", "--n", "50", "--seed", "4", "--out", str(c), "--no-progress"])
    assert a.read_bytes() == b.read_bytes() and a.read_bytes() != c.read_bytes()
    table = load_mixtures(a)
    assert table.domains == ("web", "code", "books") and len(table.ids) == 50
    assert np.allclose(table.w_NxK.sum(axis=1), 1.0)


def test_zero_prior_domains_that_leave_no_mixture_are_named(tmp_path):
    space = MixtureSpace.from_prior(list("abc"), [0.5, 0.5, 0.0], upper=[0.3, 0.3, 1.0])
    with pytest.raises(RegmixError, match="zero prior for c"):
        diagnose(space, 10, "regmix")
    assert diagnose(space, 10, "uniform") is None


def test_grid_count_and_a_too_coarse_grid():
    assert grid_count(np.zeros(3, int), np.full(3, 1000), 1000) == 1002 * 1001 / 2
    space = MixtureSpace.from_prior(list("ab"), [1, 1])
    with pytest.raises(RegmixError, match="only 1,001 distinct feasible mixtures"):
        diagnose(space, 5000, "regmix")
    with pytest.warns(UserWarning, match="using all of them"):
        assert len(diagnose(space, 5000, "regmix", allow_fewer=True)) == 1001


def test_caps_under_one_say_so():
    with pytest.raises(RegmixError, match=r"repetition caps .* sum to 0.6"):
        MixtureSpace.from_prior(list("abc"), [1, 1, 1], max_epochs=2, token_budget=1e9, tokens=[1e8, 1e8, 1e8])


def test_tidy_weights_round_and_sum_to_one():
    w = tidy_weights(np.array([[0.17941999999999989, 0.3, 0.52058000000000011], [1 / 3, 1 / 3, 1 / 3]]))
    assert w[0].tolist() == [0.17942, 0.3, 0.52058]
    assert np.rint(w * 1e6).sum(axis=1).tolist() == [1e6, 1e6]


def test_sample_takes_its_domains_from_a_token_counts_file(tmp_path):
    counts = tmp_path / "tokens.yaml"
    counts.write_text("web: 5.0e9\ncode: 1e9\nbooks: 2e9\n")
    out = tmp_path / "c.csv"
    assert main(["sample", "--tokens", str(counts), "--n", "20", "--out", str(out), "--no-progress"]) == 0
    assert load_mixtures(out).domains == ("web", "code", "books")
    capped = tmp_path / "capped.csv"  # the same file also gives the caps' counts
    assert main(["sample", "--tokens", str(counts), "--token-budget", "4e9", "--max-epochs", "1", "--n", "20",
                 "--out", str(capped), "--no-progress"]) == 0
    w = load_mixtures(capped).w_NxK
    assert np.all(w[:, 1] <= 0.25 + 1e-9)  # code: 1 epoch of 1e9 tokens in a 4e9 budget
