import json

import numpy as np
import pytest

from regmix.errors import RegmixError
from regmix.regress.compiled import compiled_predictor
from regmix.regress.fit import FittedModel, fit_sweep
from regmix.regress.models import LightGBMModel, MODEL_KINDS, make_model
from regmix.tables import load_sweep

from helpers_tables import synthetic_sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    mix_path, met_path, w, loss = synthetic_sweep(tmp, n=96)
    mix, y, names = load_sweep(mix_path, met_path, ["target", "other"])
    return mix, y, names


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_model_learns_the_surface(sweep, kind):
    mix, y, names = sweep
    model, oof = fit_sweep(mix, y[:, :1], names[:1], kind=kind, folds=4, seed=0, progress=False)
    assert model.cv[names[0]]["spearman"] > 0.8, model.cv
    assert len(oof) == len(y) and set(oof["fold"]) == {0, 1, 2, 3}


def test_lightgbm_learns_from_32_runs(sweep):
    mix, y, names = sweep
    model = LightGBMModel().fit(mix.w_NxK[:32], y[:32, 0], seed=0)
    pred = model.predict(mix.w_NxK[32:])
    assert np.ptp(pred) > 0  # default min_data_in_leaf=20 would give a constant
    assert np.corrcoef(pred, y[32:, 0])[0, 1] > 0.5


def test_out_of_fold_predictions_never_see_their_rows(sweep):
    """Corrupting the held-out fold's targets must not change its out-of-fold predictions."""
    mix, y, names = sweep
    _, oof_a = fit_sweep(mix, y[:, :1], names[:1], folds=4, seed=3, progress=False)
    y_bad = y[:, :1].copy()
    fold0 = oof_a["fold"].to_numpy() == 0
    y_bad[fold0] = 100.0
    _, oof_b = fit_sweep(mix, y_bad, names[:1], folds=4, seed=3, progress=False)
    col = f"{names[0]}:oof"
    assert np.allclose(oof_a[col][fold0], oof_b[col][fold0])


def test_save_load_round_trip_without_pickle(sweep, tmp_path):
    mix, y, names = sweep
    model, _ = fit_sweep(mix, y, names, kind="ensemble", folds=3, seed=0, progress=False)
    model.save(tmp_path / "m")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert "model.json" in files and all(f.endswith((".json", ".txt")) for f in files)
    json.loads((tmp_path / "m" / "model.json").read_text())
    back = FittedModel.load(tmp_path / "m")
    assert np.allclose(back.predict(mix.w_NxK), model.predict(mix.w_NxK))
    assert back.predict_folds(mix.w_NxK[:5]).shape == (3, 5, 2)


def test_compiled_trees_match_lightgbm(sweep):
    mix, y, _ = sweep
    model = LightGBMModel().fit(mix.w_NxK, y[:, 0], seed=1)
    compiled = compiled_predictor(model.boosters)
    if compiled is False:
        pytest.skip("no C compiler on this machine")
    x = np.random.default_rng(0).dirichlet(np.ones(mix.w_NxK.shape[1]), 20_000)
    ref = np.mean([b.predict(x) for b in model.boosters], axis=0)
    assert np.allclose(compiled(x), ref, rtol=0, atol=1e-12)
    assert np.allclose(model.predict(x), ref, atol=1e-12)


def test_bad_model_dir(tmp_path):
    with pytest.raises(RegmixError, match="no model.json"):
        FittedModel.load(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(RegmixError, match="corrupt model file"):
        FittedModel.load(tmp_path)
    with pytest.raises(RegmixError, match="unknown model 'forest'"):
        make_model("forest")


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_few_runs_do_not_extrapolate_wildly(kind):
    """12 runs over 10 domains: predictions anywhere on the simplex stay near the measured range."""
    rng = np.random.default_rng(5)
    w = rng.dirichlet(np.ones(10) * 0.3, 12)
    y = 3.0 + w @ rng.normal(0, 0.3, 10) + rng.normal(0, 0.05, 12)
    model = make_model(kind).fit(w, y, seed=0)
    pred = model.predict(rng.dirichlet(np.ones(10) * 0.2, 5000))
    assert np.all(np.isfinite(pred))
    span = np.ptp(y)
    assert pred.min() > y.min() - 10 * span and pred.max() < y.max() + 10 * span


def test_few_runs_and_weak_rankings_are_warned_about():
    from regmix.regress.fit import warn_if_untrustworthy

    good = {"t": {"spearman": 0.95}}
    with pytest.warns(UserWarning, match="16 runs for 10 domains: rankings are unreliable under about 40"):
        warn_if_untrustworthy(good, 16, 10)
    with pytest.warns(UserWarning, match="t: out-of-fold Spearman 0.33 is weak"):
        warn_if_untrustworthy({"t": {"spearman": 0.33}}, 512, 17)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_untrustworthy(good, 512, 17)  # enough runs, a good ranking: silent
