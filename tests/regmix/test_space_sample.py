import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from regmix.errors import RegmixError
from regmix.sample import METHODS, SamplerConfig, sample_mixtures
from regmix.space import MixtureSpace, load_space


def _space(k, seed, bounded, capped):
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.ones(k))
    lower = upper = None
    if bounded:
        lower = np.where(rng.random(k) < 0.3, 0.02, 0.0)
        upper = np.where(rng.random(k) < 0.3, 0.5, 1.0)
    kw = {}
    if capped:
        kw = dict(max_epochs=2.0, token_budget=1e6, tokens=prior * 1e6 * rng.uniform(0.5, 4, k))
    try:
        return MixtureSpace.from_prior([f"d{i}" for i in range(k)], prior, lower, upper, **kw)
    except RegmixError:
        return None


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(2, 12),
    seed=st.integers(0, 10_000),
    method=st.sampled_from(METHODS),
    bounded=st.booleans(),
    capped=st.booleans(),
)
@example(k=6, seed=48, method="sobol", bounded=False, capped=True)  # sobol rows 9e-8 over a cap, kept at tol 1e-6
def test_samples_are_feasible(k, seed, method, bounded, capped):
    space = _space(k, seed, bounded, capped)
    if space is None:  # random bounds left no feasible mixture: covered by its own test
        return
    try:
        w = sample_mixtures(space, 200, np.random.default_rng(seed), method)
    except RegmixError as err:  # acceptance too low for very tight random caps is reported, not hidden
        assert "feasible mixtures" in str(err)
        return
    assert w.shape == (200, k)
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(w >= space.lower_K - 1e-9)
    assert np.all(w <= space.effective_upper_K + 1e-9)


def test_regmix_sampler_rounds_dedupes_and_is_reproducible():
    space = MixtureSpace.from_prior(list("abcdef"), [0.4, 0.3, 0.1, 0.1, 0.05, 0.05])
    a = sample_mixtures(space, 2000, np.random.default_rng(7))
    b = sample_mixtures(space, 2000, np.random.default_rng(7))
    c = sample_mixtures(space, 2000, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.allclose(a * 1000, np.rint(a * 1000))  # on the 0.001 grid
    assert len(np.unique(np.rint(a * 1000), axis=0)) == len(a)
    assert ((a > 0) & (a < 1e-3)).sum() == 0  # sparsity floor
    assert (a == 0).any()  # RegMix draws are sparse


def test_temperature_flattens_prior():
    space = MixtureSpace.from_prior(["big", "small"], [0.9, 0.1])
    hot = sample_mixtures(space, 500, np.random.default_rng(0), config=SamplerConfig(temperature=0.3))
    cold = sample_mixtures(space, 500, np.random.default_rng(0), config=SamplerConfig(temperature=1.0))
    with pytest.raises(RegmixError, match="only 1,001 distinct feasible mixtures"):  # a 2-domain 0.001 grid has 1001 points, said before any draw
        sample_mixtures(space, 2000, np.random.default_rng(0))
    assert hot[:, 1].mean() > cold[:, 1].mean() + 0.05


def test_project_lands_in_bounds_and_caps():
    space = MixtureSpace.from_prior(list("abc"), [1, 1, 1], lower=[0.1, 0, 0], upper=[1, 0.3, 1],
                                    max_epochs=1.0, token_budget=100.0, tokens=[100, 100, 40])
    w = space.project(np.array([0.0, 0.9, 0.1]))
    assert space.feasible_N(w[None])[0]
    assert w[1] <= 0.3 + 1e-12 and w[2] <= 0.4 + 1e-12 and w[0] >= 0.1 - 1e-12


def test_infeasible_bounds_are_reported(tmp_path):
    with pytest.raises(RegmixError, match="lower bounds sum to"):
        MixtureSpace.from_prior(list("ab"), [1, 1], lower=[0.6, 0.6])
    with pytest.raises(RegmixError, match="no feasible mixture"):
        MixtureSpace.from_prior(list("ab"), [1, 1], upper=[0.3, 0.3])
    f = tmp_path / "space.yaml"
    f.write_text("bounds: {a: [0, 0.2], b: [0, 0.2]}\n")
    with pytest.raises(RegmixError, match=r"space.yaml: upper bounds sum to 0.4"):
        load_space(f, ["a", "b"])
    f.write_text("bounds: {zz: [0, 0.2]}\n")
    with pytest.raises(RegmixError, match="bounds.zz: unknown domain"):
        load_space(f, ["a", "b"])
    f.write_text("bound: {a: [0, 0.2]}\n")
    with pytest.raises(RegmixError, match="unknown key 'bound'"):
        load_space(f, ["a", "b"])


def test_space_file_caps(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("max_epochs: 2\ntoken_budget: 1000\ntokens: {a: 100, b: 5000}\n")
    space = load_space(f, ["a", "b"])
    assert np.allclose(space.effective_upper_K, [0.2, 1.0])


def test_a_grid_with_fewer_mixtures_than_asked_for_is_used_whole_with_a_warning():
    """optimize takes what exists (10 min then an error before, for 3 domains and 1M candidates)."""
    space = MixtureSpace.from_prior(["a", "b"], [0.6, 0.4])  # 1,001 points on the 1e-3 grid
    with pytest.warns(UserWarning, match=r"only 1,00\d distinct feasible mixtures exist on the 0.001 grid"):
        w = sample_mixtures(space, 50_000, np.random.default_rng(0), "regmix", allow_fewer=True)
    assert 990 <= len(w) <= 1001 and len(np.unique(w, axis=0)) == len(w)


def test_a_partial_prior_leaves_the_rest_in_the_runs_proportions(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("prior: {a: 0.5}\n")
    space = load_space(path, ["a", "b", "c"], np.array([0.2, 0.6, 0.2]))
    assert np.allclose(space.prior_K / space.prior_K.sum(), [0.5, 0.375, 0.125])
    path.write_text("prior: {a: 1.0}\n")
    with pytest.raises(RegmixError, match="leaving nothing for the 2 unlisted domain"):
        load_space(path, ["a", "b", "c"], np.array([0.2, 0.6, 0.2]))
