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

    from regmix.analysis import shap_contributions
    from regmix.regress.models import LightGBMModel

    rng = np.random.default_rng(2)
    w = pd.DataFrame(rng.dirichlet(np.ones(3), 60), columns=list("abc"))
    y = 2.0 - w["a"].to_numpy() + rng.normal(0, 0.01, 60)
    b = lgb.train({"verbose": -1, "min_data_in_leaf": 5, "seed": 0}, lgb.Dataset(w.to_numpy(), y), 20)
    model = type("M", (), {"full": [LightGBMModel([b], 20)]})()
    c = shap_contributions(model, w.to_numpy())
    bias = b.predict(w.to_numpy(), pred_contrib=True)[:, -1]
    assert np.allclose(c.sum(axis=1) + bias, b.predict(w.to_numpy()))
    assert np.abs(c).mean(axis=0).argmax() == 0  # 'a' drives the loss
    assert plots.domain_effects(w, c).axes[0].get_yticklabels()[-1].get_text() == "a"


def test_many_domains_get_level_names_and_learning_curve_has_regret_and_kinds():
    doms = [f"domain_{i}" for i in range(12)]
    fig = plots.mixture_bars({"chosen": {d: (i + 1) / 78 for i, d in enumerate(doms)},
                              "uniform": {d: 1 / 12 for d in doms}})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "share of tokens" and all(t.get_rotation() == 0 for t in ax.get_yticklabels())
    assert ax.get_yticklabels()[-1].get_text() == "domain_11"  # the chosen mixture's largest share on top
    curve = pd.DataFrame({"kind": np.repeat(["linear", "lightgbm"], 6), "n_runs": np.tile(np.repeat([16, 32], 3), 2),
                          "spearman": np.linspace(0.5, 0.9, 12), "regret": np.linspace(0.1, 0.0, 12)})
    fig = plots.learning_curve(curve, "nats/token")
    assert len(fig.axes) == 2 and "nats/token" in fig.axes[1].get_ylabel()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["linear (mean)", "lightgbm (mean)"]
