import json

import pytest
import yaml

from regmix.errors import RegmixError
from regmix.export import FORMATS, Budget, parse, read_mixture, render

WEIGHTS = {"web": 0.55, "code": 0.3, "books": 0.15, "math": 0.0}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips(fmt):
    text = render(WEIGHTS, fmt)
    back = parse(text, fmt)
    for d, w in WEIGHTS.items():
        assert back.get(d, 0.0) == pytest.approx(w, abs=1e-12)


def test_formats_are_what_trainers_read():
    lit = yaml.safe_load(render(WEIGHTS, "lit-gpt"))
    assert lit["train"]["train_web"] == 0.55
    blend = render(WEIGHTS, "megatron").split()
    assert blend[:2] == ["0.55", "/data/web_text_document"] and len(blend) == 6  # zero weight left out
    hf = json.loads(render(WEIGHTS, "hf"))
    assert hf["probabilities"] == [0.55, 0.3, 0.15, 0.0] and hf["datasets"][0] == "web"
    olmo = yaml.safe_load(render(WEIGHTS, "olmo", budget=Budget(1e9, {"web": 1e9, "code": 1e9, "books": 1e8}, 4)))
    src = olmo["source_mixture_config"]["source_configs"]
    assert src[0] == {"source_name": "web", "target_ratio": 0.55, "paths": ["/data/web/*.npy"], "max_repetition_ratio": 4.0}
    mosaic = yaml.safe_load(render(WEIGHTS, "mosaic", path_template="s3://b/{domain}"))
    assert mosaic["train_loader"]["dataset"]["streams"]["code"] == {"local": "s3://b/code", "proportion": 0.3}


def test_budget_epochs_and_cap_warning():
    budget = Budget(1e9, {"web": 1e9, "code": 1e9, "books": 1e8, "math": 5e7}, max_epochs=1.0)
    plan = budget.plan(WEIGHTS)
    assert plan["books"]["tokens"] == pytest.approx(1.5e8) and plan["books"]["epochs"] == pytest.approx(1.5)
    with pytest.warns(UserWarning, match="'books' would repeat 1.50 times"):
        data = json.loads(render(WEIGHTS, "json", budget=budget))
    assert data["domains"]["web"]["epochs"] == pytest.approx(0.55)


def test_read_mixture_rejects_bad_files(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"weights": {"a": 0.5, "b": -0.5}}))
    with pytest.raises(RegmixError, match="weights.b: expected a non-negative number"):
        read_mixture(p)
    p.write_text(json.dumps({"weights": {"a": 0.5, "b": 0.2}}))
    with pytest.raises(RegmixError, match="sum to 0.7"):
        read_mixture(p)
    p.write_text("{")
    with pytest.raises(RegmixError, match="not valid JSON"):
        read_mixture(p)
