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
    with pytest.raises(RegmixError, match="missing.yaml: no such config file or preset \\(presets: demo, "):
        load_config(Outer, tmp_path / "missing.yaml")


def test_presets_and_extends(tmp_path):
    from regmix.config import load_tree, preset_path

    assert preset_path("quick").name == "quick.yaml" and preset_path("demo.yaml").parent.name == "configs"
    base = tmp_path / "base.yaml"
    base.write_text("name: a\ninner: {steps: 3, kind: b}\nrates: [1]\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\ninner: {steps: 5}\n")
    assert load_config(Outer, child) == Outer("a", Inner(5, "b"), [1.0], None)  # maps merge, the rest replaces
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(RegmixError, match="extends itself"):
        load_tree(loop)


@pytest.mark.parametrize("text,value", [("25.0e9", 25e9), ("19e9", 19e9), ("1.2E+10", 1.2e10), ("-3.5e-2", -0.035),
                                        (".5e3", 500.0), ("1_000", 1000), ("0.25", 0.25)])
def test_numbers_people_write_are_numbers(text, value):
    from regmix.config import parse_yaml

    assert parse_yaml(f"x: {text}")["x"] == value
    if "_" not in text and not text.startswith("."):  # also a JSON number
        assert parse_yaml(f'{{"x": {text}}}')["x"] == value


def test_exponent_numbers_in_space_and_token_files(tmp_path):
    from regmix.export import read_token_counts
    from regmix.space import load_space

    space = tmp_path / "space.yaml"
    space.write_text("max_epochs: 4\ntoken_budget: 25.0e9\ntokens: {a: 1.2e9, b: 60.0e9}\nbounds: {a: [0.0, 0.2]}\n")
    s = load_space(space, ["a", "b"])
    assert s.token_budget == 25e9 and list(s.tokens_K) == [1.2e9, 60e9]
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"arxiv": 19.0e9, "web": 1.2E+10}')
    assert read_token_counts(tokens) == {"arxiv": 19e9, "web": 1.2e10}
    tokens.write_text("arxiv: 19.0e9\nweb: nope\n")
    with pytest.raises(RegmixError, match="web: expected a token count, got 'nope'"):
        read_token_counts(tokens)


def test_yaml_aliases_and_duplicate_keys_are_refused(tmp_path):
    import pytest
    from regmix.config import load_yaml
    from regmix.errors import RegmixError
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n")
    with pytest.raises(RegmixError, match="alias"):
        load_yaml(laughs)
    dup = tmp_path / "dup.yaml"
    dup.write_text("bounds:\n  a: 1\n  a: 2\n")
    with pytest.raises(RegmixError, match="duplicate key 'a'"):
        load_yaml(dup)
    ok = tmp_path / "ok.yaml"
    ok.write_text("tokens: 25.0e9\n")
    assert load_yaml(ok) == {"tokens": 25.0e9}
