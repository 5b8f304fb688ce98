"""Stage reuse is keyed on the config sections a stage reads and on the corpus's content."""

from __future__ import annotations

import dataclasses
import os

import pytest

from regmix.pipeline import STAGES, PipelineConfig, stage_key
from regmix.pipeline.config import CapsSection, PrepareSection


def small_corpus(root):
    for d, text in {"a": "alpha " * 300, "b": "beta " * 300, "c": "gamma " * 300}.items():
        (root / d).mkdir(parents=True)
        (root / d / "doc.txt").write_text(text)
    return root


def test_a_corpus_rewritten_in_place_changes_every_stage_key(tmp_path):
    corpus = small_corpus(tmp_path / "corpus")
    cfg = PipelineConfig(corpus=str(corpus), target="c", train_domains=["a", "b"])
    before = {s: stage_key(cfg, s) for s in STAGES}
    assert before == {s: stage_key(cfg, s) for s in STAGES}  # stable when nothing changed
    path = corpus / "a" / "doc.txt"
    st = path.stat()
    path.write_text("alpha " * 299 + "omega ")  # same size, new bytes
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    after = {s: stage_key(cfg, s) for s in STAGES}
    assert all(before[s] != after[s] for s in STAGES)


@pytest.mark.parametrize("section, changed_from", [
    ({"prepare": PrepareSection(valid_fraction=0.2)}, "prepare"),
    ({"caps": CapsSection(token_budget=1e9, max_epochs=2)}, "optimize"),
])
def test_prepare_and_caps_sections_rerun_their_stage_and_the_later_ones(section, changed_from):
    base = PipelineConfig()
    edited = dataclasses.replace(base, **section)
    same = [s for s in STAGES if stage_key(base, s) == stage_key(edited, s)]
    assert same == list(STAGES[: STAGES.index(changed_from)])


def test_target_may_be_a_training_domain_and_is_scored_once():
    cfg = PipelineConfig(target="code")
    assert not cfg.held_out and cfg.eval_domains == list(cfg.train_domains)
    held = PipelineConfig()
    assert held.held_out and held.eval_domains == list(held.train_domains) + ["pydocs"]


@pytest.mark.parametrize("kw, message", [
    ({"target": ""}, "target"), ({"target": "train_mean"}, "optimized_mean"),
    ({"prepare": PrepareSection(valid_fraction=1.0)}, "valid_fraction"),
    ({"caps": CapsSection(token_budget=float("nan"))}, "caps"),
])
def test_bad_sections_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig(**kw)
