import numpy as np
import pandas as pd
import pytest

from regmix.errors import RegmixError
from regmix.tables import (
    common_prefix, embedded_tables, join, load_metrics, load_mixtures, load_sweep, resolve_target,
)


def test_embedded_table_loads_and_strips_prefix():
    mix_path, met_path = embedded_tables()
    mix = load_mixtures(mix_path)
    assert mix.w_NxK.shape == (512, 17)
    assert "pile_cc" in mix.domains and mix.columns[0].startswith("train_the_pile_")
    assert np.allclose(mix.w_NxK.sum(axis=1), 1.0)  # rows summing to 0.996..1.004 are renormalised
    met = load_metrics(met_path)
    assert len(met.columns) == 13
    assert resolve_target("pile_cc", met.columns) == "metric/the_pile_pile_cc_val_loss"


def test_common_prefix_cuts_at_separator():
    assert common_prefix(["train_the_pile_arxiv", "train_the_pile_arb"]) == "train_the_pile_"
    assert common_prefix(["alpha", "beta"]) == ""


def test_target_resolution_errors():
    cols = ["metric/a_val_loss", "metric/b_val_loss", "metric/b_bpb"]
    with pytest.raises(RegmixError, match="ambiguous target 'b'"):
        resolve_target("b", cols)
    with pytest.raises(RegmixError, match="unknown target 'zzz'.*choices"):
        resolve_target("zzz", cols)
    assert resolve_target("b_bpb", cols) == "metric/b_bpb"


def test_olmix_layout_with_metadata_columns(tmp_path):
    ratios = pd.DataFrame({"name": ["x", "y", "z", "w"], "run": ["a1", "a2", "a3", "a4"], "index": [0, 1, 2, 3],
                           "web": [0.5, 0.2, 0.1, 0.7], "code": [0.5, 0.8, 0.9, 0.3]})
    metrics = pd.DataFrame({"run": ["a4", "a3", "a2", "a1"], "name": ["w", "z", "y", "x"], "loss": [1.0, 2.0, 3.0, 4.0]})
    ratios.to_csv(tmp_path / "ratios.csv", index=False)
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    mix, y, names = load_sweep(tmp_path / "ratios.csv", tmp_path / "metrics.csv", ["loss"])
    assert mix.domains == ("web", "code") and mix.id_column == "run"
    assert names == ["loss"] and y[:, 0].tolist() == [4.0, 3.0, 2.0, 1.0]  # joined on id, not position


def test_parquet_tables(tmp_path):
    pd.DataFrame({"id": ["a", "b"], "x": [0.5, 1.0], "y": [0.5, 0.0]}).to_parquet(tmp_path / "m.parquet")
    mix = load_mixtures(tmp_path / "m.parquet")
    assert mix.w_NxK.tolist() == [[0.5, 0.5], [1.0, 0.0]]


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,a,b\nr1,-0.1,1.1\n", "id r1, column 'a': negative weight"),
        ("id,a,b\nr1,nan,1\n", "id r1, column 'a': weight is missing or NaN"),
        ("id,a,b\nr1,0.3,0.3\n", "id r1: weights sum to 0.6"),
        ("id,a,b\nr1,x,1\n", "id r1, column 'a': not a number"),
        ("id,a,b\n", "empty table"),
        ("", "empty table"),
        ("id,a,b\nr1,0.5,0.5\nr1,0.2,0.8\n", "duplicate run ids in column 'id': r1"),
    ],
)
def test_bad_mixture_rows(tmp_path, text, message):
    with pytest.raises(RegmixError) as err:
        load_mixtures(_write(tmp_path, "m.csv", text))
    assert message in str(err.value) and "m.csv" in str(err.value)


def test_sum_tolerance_and_renormalize(tmp_path):
    p = _write(tmp_path, "m.csv", "id,a,b\nr1,0.502,0.5\nr2,0.3,0.3\n")
    with pytest.raises(RegmixError, match="r2: weights sum to 0.6"):
        load_mixtures(p)
    mix = load_mixtures(p, renormalize=True)
    assert np.allclose(mix.w_NxK.sum(axis=1), 1)


def test_join_lists_missing_ids(tmp_path):
    mix = load_mixtures(_write(tmp_path, "m.csv", "id,a,b\nr1,0.5,0.5\nr2,0.5,0.5\nr3,1,0\n"))
    met = load_metrics(_write(tmp_path, "l.csv", "id,loss\nr1,1\nr2,2\nr9,3\n"))
    with pytest.raises(RegmixError, match=r"1 id\(s\) in .*m.csv but not in .*l.csv: r3.*r9"):
        join(mix, met)


def test_nan_targets_are_dropped_with_warning(tmp_path):
    rows = "\n".join(f"r{i},{i / 10},{1 - i / 10}" for i in range(8))
    m = _write(tmp_path, "m.csv", "id,a,b\n" + rows + "\n")
    l = _write(tmp_path, "l.csv", "id,loss\n" + "\n".join(f"r{i},{'nan' if i < 2 else i}" for i in range(8)) + "\n")
    with pytest.warns(UserWarning, match="2 run"):
        mix, y, _ = load_sweep(m, l, ["loss"])
    assert len(y) == 6 and list(mix.ids) == [f"r{i}" for i in range(2, 8)]
