import numpy as np
import pytest

from regmix.optimize import OptimizeConfig, kl_N, optimize
from regmix.regress.fit import fit_sweep
from regmix.space import MixtureSpace
from regmix.tables import load_sweep

from helpers_tables import synthetic_sweep


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("opt")
    mix_path, met_path, *_ = synthetic_sweep(tmp, n=128, k=5, noise=0.0)
    mix, y, names = load_sweep(mix_path, met_path, ["target", "other"])
    fitted, _ = fit_sweep(mix, y, names, kind="mixing-law", folds=4, seed=0, progress=False)
    return fitted


def test_finds_the_known_optimum(model):
    # loss = 3 + exp(w . t) with t increasing: all weight on the first domain is best.
    result = optimize(model, config=OptimizeConfig(samples=20_000, top_k=20, seed=0), progress=False)
    assert result.weights_K[0] > 0.85
    assert result.fold_std_T.shape == (2,) and np.all(result.fold_std_T >= 0)
    refined = optimize(model, config=OptimizeConfig(samples=20_000, top_k=20, method="refine", seed=0), progress=False)
    assert refined.objective <= result.objective + 1e-12


def test_answer_respects_bounds_and_caps(model):
    domains = list(model.domains)
    space = MixtureSpace.from_prior(domains, model.prior_K, lower=[0, 0.1, 0, 0, 0], upper=[0.4, 1, 1, 1, 1],
                                    max_epochs=1.0, token_budget=1000.0, tokens=[350, 1000, 1000, 1000, 1000])
    result = optimize(model, space, OptimizeConfig(samples=20_000, top_k=50, seed=1), progress=False)
    w = result.weights_K
    assert space.feasible_N(w[None], tol=1e-9)[0]
    assert w[0] <= 0.35 + 1e-9 and w[1] >= 0.1 - 1e-9


def test_kl_penalty_pulls_towards_prior(model):
    free = optimize(model, config=OptimizeConfig(samples=20_000, seed=0), progress=False)
    tied = optimize(model, config=OptimizeConfig(samples=20_000, seed=0, kl_strength=5.0), progress=False)
    assert tied.kl_to_prior < free.kl_to_prior


def test_target_weights_choose_the_objective(model):
    a = optimize(model, config=OptimizeConfig(samples=5000, seed=0, target_weights=(1.0, 0.0)), progress=False)
    assert a.target_weights == [1.0, 0.0]
    assert a.objective == pytest.approx(a.predicted_T[0])


def test_same_seed_same_answer(model):
    a = optimize(model, config=OptimizeConfig(samples=5000, seed=4), progress=False)
    b = optimize(model, config=OptimizeConfig(samples=5000, seed=4), progress=False)
    assert np.array_equal(a.weights_K, b.weights_K)


def test_kl():
    p = np.array([0.5, 0.5])
    assert kl_N(np.array([[0.5, 0.5]]), p)[0] == pytest.approx(0.0)
    assert kl_N(np.array([[1.0, 0.0]]), p)[0] == pytest.approx(np.log(2))


def test_a_mixture_predicted_worse_than_a_measured_run_is_flagged(model):
    from regmix.optimize import warn_if_worse_than_runs

    result = optimize(model, config=OptimizeConfig(samples=5000, seed=0), progress=False)
    better = result.predicted_T[None, :] - 0.5
    with pytest.warns(UserWarning, match="worse than run r1 measured"):
        warn_if_worse_than_runs(result, ["r0", "r1"], np.vstack([better + 1.0, better]))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_worse_than_runs(result, ["r0"], result.predicted_T[None, :] + 1.0)



@pytest.fixture(scope="module")
def two_way():
    """Two targets that pull apart: `a` wants domain 0, `b` wants domain 4."""
    from regmix.tables import MixtureTable

    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(5), 160)
    t = np.linspace(-1.0, 1.0, 5)
    y = np.stack([3 + np.exp(w @ t), 3 + np.exp(-w @ t)], axis=1)
    names = tuple(f"d{j}" for j in range(5))
    table = MixtureTable("mem", "run", np.array([str(i) for i in range(len(w))]), names, names, w)
    fitted, _ = fit_sweep(table, y, ["loss_a", "loss_b"], kind="mixing-law", folds=3, seed=0, progress=False)
    return fitted


def test_a_binding_constraint_is_honoured(two_way):
    """Minimise loss_a while loss_b may not exceed a bound the free optimum breaks."""
    model = two_way
    cfg = dict(samples=20_000, top_k=20, seed=0, target_weights=(1.0, 0.0))
    free = optimize(model, config=OptimizeConfig(**cfg), progress=False)
    natural = model.predict(model.prior_K[None, :])[0]
    assert free.predicted_T[1] > natural[1] + 0.1  # the free optimum makes loss_b worse
    tied = optimize(model, config=OptimizeConfig(**cfg, constraints=("loss_b<=natural+0.05",)), progress=False)
    (report,) = tied.to_json()["constraints"]
    assert report["binds"] and report["bound"] == pytest.approx(natural[1] + 0.05)
    assert tied.predicted_T[1] <= natural[1] + 0.05 + 1e-9 and report["slack"] >= -1e-9
    assert tied.predicted_T[0] > free.predicted_T[0]  # the bound costs objective
    loose = optimize(model, config=OptimizeConfig(**cfg, constraints=("loss_b<=natural*2",)), progress=False)
    assert not loose.to_json()["constraints"][0]["binds"]
    assert np.allclose(loose.weights_K, free.weights_K)


@pytest.mark.parametrize("text", ["loss_b>=1", "loss_b<=natural+x", "nope<=1", "loss_b<=inf", "loss_b<=1"])
def test_bad_constraints_are_one_error(two_way, text):
    from regmix.errors import RegmixError

    with pytest.raises(RegmixError):  # loss_b<=1: nothing predicts that low
        optimize(two_way, config=OptimizeConfig(samples=1000, constraints=(text,)), progress=False)


def test_a_space_file_carries_constraints_like_the_flag(two_way, tmp_path):
    import dataclasses

    from regmix.errors import RegmixError
    from regmix.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text("constraints: ['loss_b<=natural+0.05']\nbounds: {d0: [0.0, 0.9]}\n")
    space = load_space(path, list(two_way.domains), two_way.prior_K)
    cfg = dict(samples=20_000, top_k=20, seed=0, target_weights=(1.0, 0.0))
    from_file = optimize(two_way, space, OptimizeConfig(**cfg), progress=False)
    without = dataclasses.replace(space, constraints=())
    from_flag = optimize(two_way, without, OptimizeConfig(**cfg, constraints=("loss_b<=natural+0.05",)), progress=False)
    (report,) = from_file.to_json()["constraints"]
    assert report["binds"] and np.allclose(from_file.weights_K, from_flag.weights_K)
    path.write_text("constraints: 'loss_b<=1'\n")  # a string, not a list
    with pytest.raises(RegmixError, match="constraints"):
        load_space(path, list(two_way.domains), two_way.prior_K)
