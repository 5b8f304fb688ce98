import numpy as np
import pandas as pd

from regmix import plots


def test_plots_return_labelled_figures():
    rng = np.random.default_rng(0)
    y = rng.normal(2.0, 0.1, 20)
    fig = plots.oof_scatter(y, y + rng.normal(0, 0.01, 20), "held")
    assert "nats/byte" in fig.axes[0].get_xlabel() and fig.axes[0].get_title()
    fig = plots.mixture_bars({"chosen": {"a": 0.7, "b": 0.3}, "uniform": {"a": 0.5, "b": 0.5}})
    assert fig.axes[0].get_ylabel() == "share of tokens" and len(fig.axes[0].patches) == 4
    fig = plots.target_correlation(pd.DataFrame(rng.normal(size=(20, 3)), columns=list("xyz")))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list("xyz")


def test_residual_panels_and_learning_curve_spread():
    rng = np.random.default_rng(1)
    w = pd.DataFrame(rng.dirichlet(np.ones(5), 30), columns=list("abcde"))
    fig = plots.residuals_vs_weights(w, rng.normal(0, 0.01, 30))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 5 and "share of tokens" in visible[-1].get_xlabel()
    curve = pd.DataFrame({"n_runs": np.repeat([8, 16, 32], 4), "spearman": rng.uniform(0.2, 0.9, 12)})
    fig = plots.learning_curve(curve)
    assert len(fig.axes[0].lines[0].get_xdata()) == 3 and fig.axes[0].collections


def test_shap_contributions_sum_to_prediction():
    import lightgbm as lgb

    rng = np.random.default_rng(2)
    w = pd.DataFrame(rng.dirichlet(np.ones(3), 60), columns=list("abc"))
    y = 2.0 - w["a"].to_numpy() + rng.normal(0, 0.01, 60)
    b = lgb.train({"verbose": -1, "min_data_in_leaf": 5, "seed": 0}, lgb.Dataset(w.to_numpy(), y), 20)
    model = type("M", (), {"boosters": [b]})()
    c = plots.shap_contributions(model, w.to_numpy())
    bias = b.predict(w.to_numpy(), pred_contrib=True)[:, -1]
    assert np.allclose(c.sum(axis=1) + bias, b.predict(w.to_numpy()))
    assert np.abs(c).mean(axis=0).argmax() == 0  # 'a' drives the loss
    assert plots.domain_effects(w, c).axes[0].get_yticklabels()[-1].get_text() == "a"
