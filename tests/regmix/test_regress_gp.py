"""The Gaussian process and the log-linear law: learn a known surface, round-trip, refuse corrupt files."""

import json

import numpy as np
import pytest
from helpers_tables import surface
from scipy import stats

from regmix.errors import RegmixError
from regmix.regress.fit import FittedModel
from regmix.regress.gp import GPModel, _nlml
from regmix.regress.models import make_model

NEW_KINDS = ("gp", "loglinear")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(5) * 0.6, 160)
    return w, surface(w) + rng.normal(0, 0.005, len(w))


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_recovers_a_known_function(data, kind):
    w, y = data
    model = make_model(kind).fit(w[:100], y[:100], seed=0)
    rho = stats.spearmanr(model.predict(w[100:]), y[100:]).statistic
    assert rho > 0.95, rho


def test_gp_gradient_is_the_derivative():
    rng = np.random.default_rng(1)
    x = rng.random((25, 3))
    sq = (x.T[:, :, None] - x.T[:, None, :]) ** 2
    z = rng.normal(size=25)
    p = rng.normal(0, 0.3, 5)
    value, grad = _nlml(p, sq, z)
    eps = 1e-6
    numeric = [(_nlml(p + eps * e, sq, z)[0] - _nlml(p - eps * e, sq, z)[0]) / (2 * eps) for e in np.eye(5)]
    assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_gp_likelihood_of_several_targets_is_the_sum_of_theirs():
    """The shared-kernel likelihood (learning curve's gp-shared) is the sum over targets, and its
    gradient is the derivative."""
    rng = np.random.default_rng(2)
    x = rng.random((20, 3))
    sq = (x.T[:, :, None] - x.T[:, None, :]) ** 2
    z = rng.normal(size=(20, 4))
    p = rng.normal(0, 0.3, 5)
    value, grad = _nlml(p, sq, z)
    parts = [_nlml(p, sq, z[:, t]) for t in range(4)]
    assert np.isclose(value, sum(v for v, _ in parts)) and np.allclose(grad, sum(g for _, g in parts))


def test_gp_large_inputs_and_screen_agree_with_exact(data):
    w, y = data
    model = GPModel().fit(w, y, seed=0)
    many = np.random.default_rng(3).dirichlet(np.ones(5) * 0.6, 12_000)
    exact = model._cross(many) @ model._alpha * model.y_std + model.y_mean
    assert np.allclose(model.predict(many), exact, atol=1e-3 * np.ptp(y))  # float32 chunks
    rho = stats.spearmanr(model.predict(many, screen=True), exact).statistic
    assert rho > 0.9  # the screening approximation ranks like the full model
    mean, sd = model.predict_sd(many[:50])
    assert np.allclose(mean, exact[:50]) and np.all(sd > 0)


def _fitted(kind, w, y):
    from regmix.regress.fit import fit_sweep
    from regmix.tables import MixtureTable

    names = tuple(f"d{j}" for j in range(w.shape[1]))
    table = MixtureTable("mem", "id", np.array([str(i) for i in range(len(w))]), names, names, w)
    model, _ = fit_sweep(table, y[:, None], ["y"], kind=kind, folds=3, seed=0, progress=False)
    return model


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_round_trip_without_pickle(data, kind, tmp_path):
    w, y = data
    model = _fitted(kind, w[:60], y[:60])
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json"]
    back = FittedModel.load(tmp_path / "m")
    probe = np.random.default_rng(4).dirichlet(np.ones(5), 300)
    assert np.array_equal(back.predict(probe), model.predict(probe))
    assert np.array_equal(back.predict_folds(probe), model.predict_folds(probe))


CORRUPT = [
    ("gp", lambda m: m.__setitem__("y", m["y"][:-1]), "'y'"),
    ("gp", lambda m: m["w"][0].__setitem__(1, float("nan")), "'w'"),
    ("gp", lambda m: m.__setitem__("log_lengthscales", m["log_lengthscales"][:2]), "log_lengthscales"),
    ("gp", lambda m: m.__setitem__("log_noise_var", 1e6), "out of range"),
    ("gp", lambda m: m.__setitem__("transform", "ilr"), "transform"),
    ("gp", lambda m: m.__setitem__("y_std", -1.0), "y_std"),
    ("gp", lambda m: m.__setitem__("w", [[-0.5] + r[1:] for r in m["w"]]), "non-negative"),
    ("loglinear", lambda m: m.__setitem__("t", m["t"][:3]), "'t'"),
    ("loglinear", lambda m: m.__setitem__("b", "1"), "'b'"),
    ("loglinear", lambda m: m.__setitem__("t", [1e9] * len(m["t"])), "'t'"),
]


@pytest.mark.parametrize("kind,edit,fragment", CORRUPT, ids=[f"{c[0]}-{i}" for i, c in enumerate(CORRUPT)])
def test_corrupt_model_json_is_refused(data, tmp_path, kind, edit, fragment):
    w, y = data
    model = _fitted(kind, w[:40], y[:40])
    model.save(tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    meta = json.loads(path.read_text())
    edit(meta["full"][0])
    path.write_text(json.dumps(meta))
    with pytest.raises(RegmixError, match="model.json") as err:
        FittedModel.load(tmp_path / "m")
    assert fragment in str(err.value)


@pytest.mark.parametrize("value,fragment", [({"y": [0.1, float("nan")]}, "calibration"), ({"other": [0.1]}, "calibration"),
                                            ({"y": [-1.0]}, "calibration"), ({"y": []}, "calibration")])
def test_corrupt_calibration_is_refused(data, tmp_path, value, fragment):
    w, y = data
    _fitted("loglinear", w[:40], y[:40]).save(tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    meta = json.loads(path.read_text())
    meta["calibration"] = value
    path.write_text(json.dumps(meta))
    with pytest.raises(RegmixError, match=fragment):
        FittedModel.load(tmp_path / "m")
