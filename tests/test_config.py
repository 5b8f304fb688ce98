from dataclasses import dataclass, field
from typing import Literal

import pytest

from regmix.config import from_dict, load_config
from regmix.errors import RegmixError


@dataclass(frozen=True)
class Inner:
    steps: int = 10
    kind: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    rates: list[float] = field(default_factory=list)
    limit: float | None = None


def test_nested_values_and_defaults():
    cfg = from_dict(Outer, {"name": "x", "inner": {"steps": 3}, "rates": [1, 0.5]})
    assert cfg == Outer("x", Inner(3, "a"), [1.0, 0.5], None)
    assert isinstance(cfg.rates[0], float)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "x", "inner": {"stepz": 1}}, "unknown key 'inner.stepz'"),
        ({"name": "x", "inner": {"steps": "ten"}}, "inner.steps: expected an integer"),
        ({"name": "x", "inner": {"kind": "c"}}, "inner.kind: expected one of"),
        ({"name": "x", "rates": ["a"]}, "rates[0]: expected a number"),
        ({"inner": {}}, "missing required key 'name'"),
        ({"name": "x", "limit": True}, "limit"),
    ],
)
def test_errors_name_the_field(data, message):
    with pytest.raises(RegmixError, match=None) as err:
        from_dict(Outer, data, where="cfg.yaml")
    assert message in str(err.value) and str(err.value).startswith("cfg.yaml")


def test_load_config_reports_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RegmixError, match="bad.yaml.*invalid YAML"):
        load_config(Outer, bad)
    with pytest.raises(RegmixError, match="file not found"):
        load_config(Outer, tmp_path / "missing.yaml")
