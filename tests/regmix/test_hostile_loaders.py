"""Property tests for the two loaders every command goes through: tables (regmix.tables) and YAML configs
(regmix.config). Whatever the bytes, the only error is a RegmixError; a valid table reads back as written."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxies.config import SweepConfig
from regmix.config import from_dict, load_config, load_yaml
from regmix.errors import RegmixError
from regmix.space import SpaceFile
from regmix.tables import load_metrics, load_mixtures

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# text that looks like a table: the characters that matter to a CSV parser and to number parsing
CSV_CHARS = st.sampled_from(list(",,,\n\n\r\"' \t0123456789.-+eEnaNifINF_runabxy#\x00\xff;\\"))
csv_text = st.text(CSV_CHARS, max_size=300)
# text that looks like YAML
YAML_CHARS = st.sampled_from(list(":::\n\n  -[]{},&*!|>'\"#%@`?0123456789.eE+-abnulltrue_\t\x00\ufeff"))
yaml_text = st.text(YAML_CHARS, max_size=300)


def _only_regmix_errors(call):
    try:
        call()
    except RegmixError as err:
        assert "\n" not in str(err).strip() or len(str(err)) < 2000
        return "refused"
    return "read"


@FAST
@given(data=st.binary(max_size=400))
def test_table_of_arbitrary_bytes(tmp_path, data):
    for name in ("t.csv", "t.parquet"):
        path = tmp_path / name
        path.write_bytes(data)
        _only_regmix_errors(lambda: load_mixtures(path))
        _only_regmix_errors(lambda: load_metrics(path))


@FAST
@given(text=csv_text, renormalize=st.booleans())
def test_table_of_arbitrary_csv_like_text(tmp_path, text, renormalize):
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _only_regmix_errors(lambda: load_mixtures(path, renormalize=renormalize))
    _only_regmix_errors(lambda: load_metrics(path))


NAME = st.text(st.sampled_from(list("abcdefghij_0123456789")), min_size=1, max_size=8).filter(
    lambda s: s.lower() not in ("index", "name", "run_name", "label", "group", "seed", "step", "status", "path",
                                "run", "run_id", "wandb_id"))


@st.composite
def mixture_tables(draw):
    k = draw(st.integers(1, 5))
    n = draw(st.integers(1, 12))
    domains = draw(st.lists(NAME, min_size=k, max_size=k, unique=True))
    ids = draw(st.lists(NAME, min_size=n, max_size=n, unique=True))
    raw = draw(st.lists(st.lists(st.floats(0.001, 1000.0), min_size=k, max_size=k), min_size=n, max_size=n))
    w = np.array(raw)
    return ids, domains, w / w.sum(axis=1, keepdims=True)


@FAST
@given(table=mixture_tables(), fmt=st.sampled_from(["csv", "parquet"]))
def test_valid_mixture_tables_round_trip(tmp_path, table, fmt):
    ids, domains, w = table
    frame = pd.DataFrame(w, columns=[f"w_{d}" for d in domains])
    frame.insert(0, "run", ids)
    path = tmp_path / f"m.{fmt}"
    frame.to_csv(path, index=False) if fmt == "csv" else frame.to_parquet(path, index=False)
    got = load_mixtures(path)
    assert list(got.ids) == ids and got.columns == tuple(f"w_{d}" for d in domains)
    np.testing.assert_allclose(got.w_NxK, w, rtol=1e-12, atol=0)


@FAST
@given(ids=st.lists(NAME, min_size=1, max_size=10, unique=True),
       values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=10, max_size=10))
def test_valid_metric_tables_round_trip(tmp_path, ids, values):
    v = np.array(values[:len(ids)])
    path = tmp_path / "l.csv"
    pd.DataFrame({"run": ids, "loss": v}).to_csv(path, index=False, na_rep="NaN")
    got = load_metrics(path)
    assert list(got.ids) == ids and got.columns == ("loss",)
    expect = np.where(np.isfinite(v), v, np.nan)  # inf loss reads as NaN (a diverged run)
    np.testing.assert_array_equal(got.values_NxT[:, 0], expect)


@FAST
@given(data=st.binary(max_size=400))
def test_yaml_of_arbitrary_bytes(tmp_path, data):
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    if _only_regmix_errors(lambda: load_yaml(path)) == "read":
        assert isinstance(load_yaml(path), dict)


@FAST
@given(text=yaml_text)
def test_yaml_of_arbitrary_yaml_like_text(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _only_regmix_errors(lambda: load_config(SpaceFile, path))


# values of every kind YAML can produce, nested, under the real keys of a config
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.integers(10**300, 10**400),
                 st.floats(allow_nan=True), st.text(max_size=8), st.just("quick"), st.just("regmix"))
VALUE = st.recursive(LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.one_of(st.text(max_size=4), st.integers()),
                                                                   inner, max_size=3)), max_leaves=8)


def _keys(cls):
    return [f.name for f in dataclasses.fields(cls)]


@st.composite
def configs(draw, cls):
    keys = draw(st.lists(st.sampled_from(_keys(cls) + ["zzz"]), max_size=5, unique=True))
    out = {}
    for key in keys:
        f = {f.name: f for f in dataclasses.fields(cls)}.get(key)
        sub = f.type if f is not None and dataclasses.is_dataclass(f.type) else None
        out[key] = draw(configs(sub)) if sub is not None and draw(st.booleans()) else draw(VALUE)
    return out


@FAST
@given(data=configs(SweepConfig))
def test_sweep_config_of_arbitrary_values(data):
    data.setdefault("store", "somewhere")
    _only_regmix_errors(lambda: from_dict(SweepConfig, data, where="sweep.yaml"))


@FAST
@given(data=configs(SpaceFile))
def test_space_file_of_arbitrary_values(tmp_path, data):
    path = tmp_path / "space.yaml"
    try:
        path.write_text(yaml.safe_dump(data))
    except (yaml.YAMLError, UnicodeEncodeError):
        return
    _only_regmix_errors(lambda: load_config(SpaceFile, path))


@pytest.mark.parametrize("text,fragment", [
    ("a: 2001-02-30\n", "day is out of range"),
    ("[" * 5000, "nested deeper than 64"),
    ("{a: " * 2000, "nested deeper than 64"),
    ("? [a, b]\n: 1\n", "unhashable"),
    ("a: !!float x\n", "float"),
    ("a: !!timestamp 'x'\n", "invalid YAML"),
    ("a: !!python/object/apply:os.system [echo hi]\n", "constructor"),
    ("a: &x [1]\nb: *x\n", "aliases"),
    ("a: 1\na: 2\n", "duplicate key 'a'"),
])
def test_yaml_that_used_to_escape_as_other_errors(tmp_path, text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(RegmixError, match=fragment):
        load_yaml(path)


def test_huge_integer_where_a_number_is_needed(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"token_budget: {10 ** 400}\n")
    with pytest.raises(RegmixError, match="token_budget: number too large"):
        load_config(SpaceFile, path)
    path.write_text("token_budget: 25.0e9\n")  # as people write it
    assert load_config(SpaceFile, path).token_budget == 25.0e9
