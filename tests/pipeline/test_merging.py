"""The pipeline's merging step from the files it writes: upsampled runs and their schedules, the summary's
"merging" and "upsampling" (paired, with verdicts), the report section, and the config checks."""

import json

import numpy as np
import pandas as pd
import pytest

from regmix.config import load_config
from regmix.errors import RegmixError
from regmix.pipeline.config import FinalSection, MergingSection, PipelineConfig
from regmix.pipeline.merging import merging_summary, report_section, upsampling_runs
from regmix.pipeline.results import margins

DOMAINS = ["books", "code", "kerneldocs", "legal", "math", "manpages"]
OPT = {"books": 0.3, "code": 0.3, "kerneldocs": 0.1, "legal": 0.1, "math": 0.1, "manpages": 0.1}


def cfg(**merging) -> PipelineConfig:
    return PipelineConfig(final=FinalSection(merging=MergingSection(enabled=True, **merging), seeds=[0, 1, 2]))


def test_upsampled_runs_follow_the_favoured_domains():
    mixtures, schedules = upsampling_runs(cfg(), {"favoured": ["math", "legal"]}, OPT)
    assert set(mixtures) == set(schedules) == {"optimized_up10", "optimized_up20"}
    assert all(m == OPT for m in mixtures.values())
    (s0, base), (f, late) = schedules["optimized_up20"]
    assert s0 == 0 and base == OPT and f == pytest.approx(0.8)
    assert late["math"] == pytest.approx(0.2) and late["legal"] == pytest.approx(0.2)
    assert sum(late.values()) == pytest.approx(1) and late["books"] == pytest.approx(0.3 * 0.6 / 0.8)
    assert upsampling_runs(cfg(), {"favoured": []}, OPT) == ({}, {})


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "merging").mkdir()
    (tmp_path / "sweep").mkdir()
    (tmp_path / "merging" / "compare.json").write_text(json.dumps({
        "runs": ["a", "b", "c", "d"], "merged": [1.0, 2.0, 3.0, 4.0], "trained": [1.1, 2.2, 3.1, 4.5],
        "sweep": [2.0, 1.0, 3.0, 4.0], "merge_seconds": 0.4, "trained_seconds": 8.0}))
    table = [{"domain": d, "base": 3.0, "removed": 0.01, "doubled": -0.02 if d == "math" else 0.01} for d in DOMAINS]
    (tmp_path / "merging" / "ablation.json").write_text(json.dumps({"mixture": OPT, "table": table,
                                                                    "favoured": ["math"]}))
    pd.DataFrame({"run": list("abcdefgh"), "status": "ok"}).to_csv(tmp_path / "sweep" / "status.csv", index=False)
    (tmp_path / "sweep" / "done.json").write_text(json.dumps({"stage": "sweep", "seconds": 16.0}))
    return tmp_path


def runs_of(values: dict[str, list[float]]) -> dict:
    return {n: {s: {"val_loss": {"pydocs": v}} for s, v in enumerate(vs)} for n, vs in values.items()}


def test_summary_and_report_section(folder):
    runs = runs_of({"optimized": [3.0, 3.1, 3.2], "optimized_up10": [2.9, 3.0, 3.1],
                    "optimized_up20": [3.1, 3.0, 3.3]})
    m, up = merging_summary(cfg(), folder, runs, margins)
    assert m["spearman"] == pytest.approx(1.0) and m["n"] == 4 and m["spearman_vs_sweep"] == pytest.approx(0.8)
    assert m["pearson"] == pytest.approx(np.corrcoef([1, 2, 3, 4], [1.1, 2.2, 3.1, 4.5])[0, 1])
    assert m["seconds_per_mixture"] == pytest.approx(0.1) and m["train_seconds_per_mixture"] == pytest.approx(2.0)
    assert up["favoured"] == ["math"]
    r10, r20 = up["runs"]["optimized_up10"], up["runs"]["optimized_up20"]
    np.testing.assert_allclose(r10["vs_no_upsampling"]["seeds"], [0.1, 0.1, 0.1])  # no upsampling - upsampled
    assert r10["vs_no_upsampling"]["verdict"] == "beats" and r20["vs_no_upsampling"]["verdict"] == "ties"
    lines = "\n".join(report_section({"target": "pydocs", "merging": m, "upsampling": up},
                                     {"merging": "report/merging.png", "ablation": "report/ablation.png"}))
    assert "Spearman 1.000" in lines and "| math | +0.0100 | -0.0200 |" in lines
    assert "upsampling beats no upsampling" in lines and "upsampling ties no upsampling" in lines
    assert "![ablations](report/ablation.png)" in lines
    assert merging_summary(PipelineConfig(), folder, runs, margins) == (None, None)  # merging off
    assert report_section({"merging": None}, {}) == []


def test_no_favoured_domain_means_no_upsampled_runs(folder):
    path = folder / "merging" / "ablation.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), favoured=[])))
    m, up = merging_summary(cfg(), folder, runs_of({"optimized": [3.0, 3.1, 3.2]}), margins)
    assert m["favoured"] == [] and up["favoured"] == [] and "no doubled domain" in up["note"]


@pytest.mark.parametrize("section, match", [
    ({"upsample_fractions": [0.1, 1.0]}, "upsample_fractions"),
    ({"upsample_fractions": [0.1, 0.1]}, "upsample_fractions"),
    ({"n_compare": 2}, "n_compare"),
    ({"upsample_factor": 1.0}, "upsample_factor"),
    ({"seed_steps": -1}, "seed_steps"),
    ({"rerank_top": -1}, "rerank_top"),
    ({"rerank_top": 10, "rerank_k": 11}, "rerank_k at most rerank_top"),
])
def test_bad_merging_sections_are_refused(tmp_path, section, match):
    (tmp_path / "c.yaml").write_text(json.dumps({"final": {"merging": section}}))
    with pytest.raises(RegmixError, match=match):
        load_config(PipelineConfig, tmp_path / "c.yaml")
