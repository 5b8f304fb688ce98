"""LightGBM on transformed features and the stacked blend: learn a known surface, round-trip, refuse corrupt files."""

import json
import shutil

import numpy as np
import pytest
from helpers_tables import surface
from scipy import stats

from regmix.errors import RegmixError
from regmix.regress.fit import FittedModel, fit_sweep
from regmix.regress.models import EPS, make_model, mixture_features
from regmix.regress.stack import MEMBERS, StackModel, blend_weights
from regmix.tables import MixtureTable

KINDS = ("lightgbm-features", "stack")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(5) * 0.6, 160)
    w[rng.random(w.shape) < 0.2] = 0.0  # absent domains, as in real sweeps
    w[w.sum(1) == 0, 0] = 1.0
    w /= w.sum(1, keepdims=True)
    return w, surface(w) + rng.normal(0, 0.005, len(w))


@pytest.mark.parametrize("kind", KINDS)
def test_recovers_a_known_function(data, kind):
    w, y = data
    model = make_model(kind).fit(w[:100], y[:100], seed=0)
    rho = stats.spearmanr(model.predict(w[100:]), y[100:]).statistic
    assert rho > 0.9, rho


def test_features_are_log_weights_presence_count_and_entropy():
    w = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    f = mixture_features(w)
    assert f.shape == (2, 11)
    assert np.allclose(f[:, :3], w) and np.allclose(f[:, 3:6], np.log(w + EPS))
    assert np.array_equal(f[:, 6:9], [[1, 1, 0], [1, 0, 0]]) and np.array_equal(f[:, 9], [2, 1])
    assert np.allclose(f[:, 10], [np.log(2), 0.0])


def test_blend_weights_are_non_negative_and_pick_the_informative_member():
    rng = np.random.default_rng(2)
    y = rng.normal(size=200)
    good, noise, anti = y + rng.normal(0, 0.1, 200), rng.normal(size=200), -y
    coef, b = blend_weights(np.stack([good, noise, anti], 1), y)
    assert np.all(coef >= 0) and coef[0] > 0.8 and coef[2] == 0 and coef[1] < 0.1
    coef, _ = blend_weights(np.stack([-y, -y], 1), y)  # no member helps: their mean, not all zeros
    assert np.allclose(coef, 0.5)


def test_stack_predicts_the_blend_of_its_refitted_members(data):
    w, y = data
    model = StackModel().fit(w[:80], y[:80], seed=1)
    assert [m.kind for m in model.members] == list(MEMBERS)
    assert model.weights_M.min() >= 0 and model.weights_M.max() > 0
    blend = model.intercept + sum(c * m.predict(w[80:]) for c, m in zip(model.weights_M, model.members))
    assert np.allclose(model.predict(w[80:]), blend)


def _fitted(kind, w, y):
    names = tuple(f"d{j}" for j in range(w.shape[1]))
    table = MixtureTable("mem", "id", np.array([str(i) for i in range(len(w))]), names, names, w)
    model, _ = fit_sweep(table, y[:, None], ["y"], kind=kind, folds=3, seed=0, progress=False)
    return model


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """One small fit of each kind, saved once; tests corrupt copies of it."""
    w, y = data
    out = {}
    for kind in KINDS:
        directory = tmp_path_factory.mktemp(kind.replace("-", "_")) / "m"
        out[kind] = (_fitted(kind, w[:48], y[:48]), directory)
        out[kind][0].save(directory)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_without_pickle(saved, kind):
    model, directory = saved[kind]
    files = sorted(p.name for p in directory.iterdir())
    assert "model.json" in files and all(f == "model.json" or f.endswith(".lgb.txt") for f in files)
    back = FittedModel.load(directory)
    probe = np.random.default_rng(4).dirichlet(np.ones(5), 300)
    assert np.array_equal(back.predict(probe), model.predict(probe))
    assert np.array_equal(back.predict_folds(probe), model.predict_folds(probe))
    _, lo, hi = back.interval(probe, 0.8)
    assert np.all(lo < hi)


CORRUPT = [
    ("stack", lambda m: m.__setitem__("weights", m["weights"][:2]), "weights"),
    ("stack", lambda m: m.__setitem__("weights", [-1.0] + m["weights"][1:]), "weights"),
    ("stack", lambda m: m.__setitem__("intercept", float("nan")), "intercept"),
    ("stack", lambda m: m.__setitem__("members", []), "no members"),
    ("stack", lambda m: m["members"].__setitem__(0, {"kind": "stack"}), "another stack"),
    ("lightgbm-features", lambda m: m.__setitem__("files", []), "tree files"),
]


@pytest.mark.parametrize("kind,edit,fragment", CORRUPT, ids=[f"{c[0]}-{i}" for i, c in enumerate(CORRUPT)])
def test_corrupt_model_json_is_refused(saved, tmp_path, kind, edit, fragment):
    shutil.copytree(saved[kind][1], tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    meta = json.loads(path.read_text())
    edit(meta["full"][0])
    path.write_text(json.dumps(meta))
    with pytest.raises(RegmixError, match="model.json") as err:
        FittedModel.load(tmp_path / "m")
    assert fragment in str(err.value)


def test_feature_trees_for_another_number_of_domains_are_refused(saved, tmp_path):
    shutil.copytree(saved["lightgbm-features"][1], tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    meta = json.loads(path.read_text())
    meta["domains"], meta["columns"] = meta["domains"][:4], meta["columns"][:4]
    path.write_text(json.dumps(meta))
    with pytest.raises(RegmixError, match="features"):
        FittedModel.load(tmp_path / "m")


def test_feature_trees_predict_many_candidates_like_the_boosters(saved):
    """Large inputs (the compiled path, or the screening booster) see the same features as fitting."""
    model = saved["lightgbm-features"][0].full[0]
    many = np.random.default_rng(5).dirichlet(np.ones(5) * 0.5, 12_000)
    ref = np.mean([b.predict(mixture_features(many)) for b in model.boosters], axis=0)
    assert np.allclose(model.predict(many), ref, atol=1e-9)
    assert np.allclose(model.predict(many, screen=True), model.boosters[0].predict(mixture_features(many)), atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_optimize_finds_the_known_optimum(kind):
    """`regmix optimize` on these models: loss 3 + exp(w . t), t increasing, is least at the first domain."""
    from regmix.optimize import OptimizeConfig, optimize

    rng = np.random.default_rng(7)
    w = rng.dirichlet(np.ones(4) * 0.7, 64)
    y = 3.0 + np.exp(w @ np.linspace(-2.0, 1.0, 4))
    model = _fitted(kind, w, y)
    result = optimize(model, config=OptimizeConfig(samples=20_000, top_k=20, seed=0), progress=False)
    assert result.weights_K[0] > 0.6, result.weights_K
