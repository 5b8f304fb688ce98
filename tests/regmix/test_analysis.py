"""The analysis computations on small synthetic sweeps whose answer is known."""

import numpy as np
import pandas as pd
import pytest

from regmix import analysis
from regmix.regress.fit import FittedModel
from regmix.regress.models import LinearModel


def linear_model(coef) -> FittedModel:
    m = LinearModel(np.asarray(coef, float), 1.0, 0.0)
    k = len(coef)
    doms = tuple("abcdefgh"[:k])
    return FittedModel("linear", ["y"], doms, doms, np.full(k, 1 / k), [m], [[m, m]])


def test_shares_stay_on_the_simplex_and_partial_dependence_follows_the_law():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(3), 50)
    moved = analysis._set_share(w, 1, 0.3)
    assert np.allclose(moved.sum(axis=1), 1) and np.allclose(moved[:, 1], 0.3)
    assert np.allclose(moved[:, 0] / moved[:, 2], w[:, 0] / w[:, 2])  # the others keep their ratio
    pdp = analysis.partial_dependence(linear_model([0.0, -1.0, 0.0]), w, ["b"], points=5)
    assert np.allclose(np.diff(pdp["predicted"]) / np.diff(pdp["weight"]), -1.0)  # slope of domain b


def test_interactions_vanish_for_an_additive_model_and_not_for_a_product():
    rng = np.random.default_rng(1)
    w = rng.dirichlet(np.ones(4), 80)
    lin = linear_model([0.5, -1.0, 2.0, 0.0])
    assert analysis.interaction_strength(lin, w, ["a", "b", "c"]).to_numpy().max() < 1e-6

    class Product:
        def predict(self, x):
            return x[:, 0] * x[:, 1] * 10

    prod = FittedModel("x", ["y"], tuple("abcd"), tuple("abcd"), np.full(4, 0.25), [Product()], [[Product()]])
    h = analysis.interaction_strength(prod, w, ["a", "b"])
    assert h.loc["a", "b"] > 0.01 and h.loc["a", "b"] == h.loc["b", "a"]


def test_learning_curve_regret_is_zero_for_a_perfect_ranking():
    rng = np.random.default_rng(2)
    w = rng.dirichlet(np.ones(4), 120)
    y = w @ np.array([1.0, -2.0, 0.5, 0.0]) + 3
    curve = analysis.learning_curve(w, y, sizes=(16, 32, 500), repeats=2, kinds=("linear",), seed=0)
    assert sorted(curve["n_runs"].unique()) == [16, 32]  # 500 > runs: dropped
    assert curve["spearman"].min() > 0.999 and curve["regret"].abs().max() < 1e-9
    noisy = analysis.learning_curve(w, y + rng.normal(0, 0.5, 120), sizes=(16,), repeats=3, kinds=("linear",))
    assert noisy["regret"].mean() > 0 and noisy["spearman"].mean() < 0.99


def test_linear_shap_is_exact_and_epoch_plan_counts_repetitions():
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(3), 40)
    model = linear_model([1.0, -1.0, 0.5])
    phi = analysis.shap_contributions(model, w)
    assert np.allclose(phi.sum(axis=1), model.predict(w)[:, 0] - model.predict(w)[:, 0].mean())
    plan = analysis.epoch_plan({"a": 0.5, "b": 0.5}, 100.0, {"a": 10.0, "b": 100.0}, max_epochs=4)
    assert plan.set_index("domain").loc["a", "epochs"] == pytest.approx(5.0)
    assert plan.set_index("domain")["over_cap"].to_dict() == {"a": True, "b": False}
    assert analysis.total_variation([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5)


def test_units_and_short_names():
    assert analysis.loss_unit(None) == "nats/token"
    assert analysis._short_names(["metric/the_pile_arxiv_val_loss", "metric/the_pile_pile_cc_val_loss"]) == ["arxiv", "pile_cc"]
    frame = analysis.loss_frame(analysis.Sweep(None, pd.DataFrame({"web_val_loss": [1.0], "web_bpb": [2.0],
                                                                   "mean_val_loss": [1.0]}), "nats/byte", "x"))
    assert list(frame.columns) == ["web"]  # losses only: no bits per byte, no mean
