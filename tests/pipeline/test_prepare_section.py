"""The pipeline's prepare.token_limits: validated when the config loads, part of the prepare stage's key,
applied by the prepare stage; the demo presets are skewed and cap repetition."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from regmix.cli import main
from regmix.errors import RegmixError
from regmix.pipeline import STAGES, PipelineConfig, load_pipeline_config, stage_key
from regmix.pipeline.config import PrepareSection

CONFIGS = Path(__file__).resolve().parents[2] / "regmix" / "configs"


def test_a_changed_limit_reruns_prepare_and_every_later_stage():
    base = PipelineConfig(prepare=PrepareSection(token_limits={"code": 1000}))
    for edited in (dataclasses.replace(base, prepare=PrepareSection(token_limits={"code": 2000})),
                   dataclasses.replace(base, prepare=PrepareSection()),
                   dataclasses.replace(base, prepare=PrepareSection(token_limits={"code": 1000, "math": 500}))):
        assert [s for s in STAGES if stage_key(base, s) == stage_key(edited, s)] == []
    same = dataclasses.replace(base, prepare=PrepareSection(token_limits={"code": 1000}))
    assert all(stage_key(base, s) == stage_key(same, s) for s in STAGES)


@pytest.mark.parametrize("limits, message", [
    ("{code: 0}", "prepare: token_limits.code: expected a positive number of tokens, got 0"),
    ("{code: -3}", "prepare: token_limits.code: expected a positive number of tokens, got -3"),
    ("{code: lots}", "prepare.token_limits.code: expected an integer, got 'lots'"),
    ("{code: 2.5}", "prepare.token_limits.code: expected an integer, got 2.5"),
    ("[code]", "prepare.token_limits: expected a mapping, got ['code']"),
])
def test_bad_limits_are_one_line_naming_the_field_exit_2(tmp_path, capsys, limits, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: demo-quick\nprepare: {{token_limits: {limits}}}\n")
    with pytest.raises(RegmixError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_pipeline_config(bad)
    assert main(["run", "--config", str(bad), "--stage", "prepare", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("regmix: error:") and message in err[0]
    assert not (tmp_path / "x").exists()


def test_a_limit_on_a_domain_the_corpus_lacks_stops_the_prepare_stage(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: demo-quick\nprepare: {token_limits: {cod: 1000}}\n")
    assert main(["run", "--config", str(bad), "--stage", "prepare", "--out", str(tmp_path / "x")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("regmix: error:") and "token_limits.cod: unknown domain (known: books, code," in last
    assert not (tmp_path / "x" / "prepare" / "done.json").exists()


def test_the_prepare_stage_applies_the_limits(tmp_path, capsys):
    cfg_file = tmp_path / "small.yaml"
    cfg_file.write_text("extends: demo-quick\nprepare: {token_limits: {code: 50000, math: 3000}}\n")
    assert main(["run", "--config", str(cfg_file), "--stage", "prepare", "--out", str(tmp_path / "x")]) == 0
    from regmix.corpus.store import TokenStore

    store = TokenStore.open(tmp_path / "x" / "prepare" / "store")
    for d, n in {"code": 50000, "math": 3000}.items():
        info = store.meta["domains"][d]
        assert n - 25_000 < info["train_tokens"] <= n or info["documents"] == 1, d  # whole documents
        assert info["token_limit"] == n and info["valid_tokens"] > 100_000  # validation: whole
    assert store.meta["domains"]["books"]["train_tokens"] > 1_000_000 and "token_limit" not in store.meta["domains"]["books"]


@pytest.mark.parametrize("name", ["demo", "demo-quick"])
def test_demo_presets_are_skewed_and_cap_repetition_at_the_final_runs_size(name):
    cfg = load_pipeline_config(CONFIGS / f"{name}.yaml")
    t = cfg.final.train
    assert cfg.caps.token_budget == t.steps * t.batch * t.seq_len and cfg.caps.max_epochs > 1
    limits = cfg.prepare.token_limits
    assert set(cfg.train_domains) - set(limits) <= {"books"}  # one domain whole, the others limited
    assert len(set(limits[d] for d in cfg.train_domains if d in limits)) > 2  # not one size for all
    assert t.eval_windows == 0 and cfg.sweep.train.eval_windows > 0  # final runs: the whole split; proxies: fixed
