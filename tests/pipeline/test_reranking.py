"""Re-ranking by merged models and the upsampled schedules' exports, from the files the pipeline writes: the
redrawn candidates are optimize's, the merging-informed choice follows its rule, the summary pairs it with the
regressor-only choice, and the schedule exports are accepted by the trainers' own config rules."""

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from regmix.corpus.store import write_store
from regmix.export import parse
from regmix.optimize import OptimizeConfig, optimize
from regmix.pipeline import reranking
from regmix.pipeline.config import FinalSection, MergingSection, PipelineConfig
from regmix.pipeline.layout import store_dir
from regmix.pipeline.merging import report_section
from regmix.pipeline.results import margins
from regmix.pipeline.stages import export_schedules
from regmix.regress.fit import fit_sweep, save_fit
from regmix.tables import MixtureTable
from proxies.config import TrainConfig

if "consumer_schemas" not in sys.modules:  # the export tests' copies of the trainers' config rules
    _spec = importlib.util.spec_from_file_location("consumer_schemas", Path(__file__).parents[1] / "regmix" /
                                                   "consumer_schemas.py")
    sys.modules["consumer_schemas"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["consumer_schemas"])
cs = sys.modules["consumer_schemas"]

DOMAINS = ["a", "b", "c", "d"]


def cfg(**merging) -> PipelineConfig:
    final = FinalSection(merging=MergingSection(enabled=True, **merging), seeds=[0, 1, 2],
                         train=TrainConfig(steps=2048, batch=8, seq_len=64))
    return PipelineConfig(target="held", train_domains=DOMAINS, final=final,
                          optimize=OptimizeConfig(samples=4000, top_k=10, seed=3))


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A pipeline folder with what re-ranking reads: a token store and a fitted regressor (smooth: no ties)."""
    out = tmp_path_factory.mktemp("rerank")
    rng = np.random.default_rng(0)
    write_store(store_dir(out), {d: (rng.integers(0, 50, n), rng.integers(0, 50, 200))
                                 for d, n in zip(DOMAINS, [4000, 2000, 1000, 1000])}, vocab_size=64, eod_id=63)
    w = rng.dirichlet(np.ones(4), 120)
    y = np.stack([3 + np.exp(w @ np.array([-1.0, 0.0, 0.5, 1.0])), 3 + np.exp(w @ np.array([1.0, 0, 0, -1]))], 1)
    table = MixtureTable("mem", "run", np.array([str(i) for i in range(len(w))]), tuple(DOMAINS), tuple(DOMAINS), w)
    model, oof = fit_sweep(table, y, ["held", "train_mean"], kind="mixing-law", folds=3, seed=0, progress=False)
    save_fit(model, oof, out / "fit" / "model")
    return out


def test_redrawn_candidates_are_optimizes(out):
    from regmix.regress.fit import FittedModel

    c = cfg()
    model = FittedModel.load(out / "fit" / "model")
    space = reranking.search_space(c, out, DOMAINS, {"a": 0.5, "b": 0.25, "c": 0.125, "d": 0.125})
    ranked, predicted = reranking.regressor_ranking(c, model, space)
    assert np.all(np.diff(predicted) >= 0) and len(ranked) == 500  # 50 x top_k screened, best first
    res = optimize(model, space, dataclasses.replace(c.optimize, target_weights=(1.0, 0.0)), progress=False)
    np.testing.assert_allclose(ranked[:10].mean(0), res.topk_K, atol=1e-12)


def test_the_merging_informed_choice_follows_its_rule(out, tmp_path):
    c = cfg(rerank_top=50, rerank_k=5)
    v = np.array([0.0, 0.3, -0.2, 0.1])  # a merged loss that disagrees with the regressor
    calls = []

    def score(w):
        calls.append(len(w))
        return 3 + w @ v

    from regmix.pipeline.results import natural_mixture

    optimized = {"a": 0.7, "b": 0.1, "c": 0.1, "d": 0.1}
    natural = natural_mixture(out, DOMAINS)
    rec = reranking.rerank(c, out, optimized, natural, score, tmp_path)
    from regmix.regress.fit import FittedModel

    space = reranking.search_space(c, out, DOMAINS, natural)
    top = reranking.regressor_ranking(c, FittedModel.load(out / "fit" / "model"), space)[0][:50]
    want = top[np.argsort(top @ v)[:5]].mean(0)
    assert rec["top"] == 50 and rec["k"] == 5 and calls == [51, 1]  # the optimized mixture scored with them
    np.testing.assert_allclose([rec["mixture"][d] for d in DOMAINS], want, atol=2e-6)  # 6 decimals
    assert rec["merged"]["reranked"] == pytest.approx(3 + want @ v, abs=1e-5)
    assert rec["merged"]["optimized"] == pytest.approx(3 + np.array([0.7, 0.1, 0.1, 0.1]) @ v)
    assert rec["tv_to_optimized"] == pytest.approx(0.5 * np.abs(want - [0.7, 0.1, 0.1, 0.1]).sum(), abs=1e-5)
    assert "mean of the 5 mixtures with the lowest merged held loss among the regressor's 50 best" in rec["rule"]
    assert reranking.rerank(c, out, optimized, natural, None, tmp_path) == rec  # the file is kept: nothing scored again


def test_summary_pairs_the_two_choices_and_the_report_says_so(tmp_path):
    (tmp_path / "merging").mkdir()
    rec = {"rule": "mean of the 10 ...", "top": 100, "k": 10, "mixture": {"a": 1.0}, "tv_to_optimized": 0.01,
           "regenerated_tv": 0.0, "merged": {"optimized": 3.2, "reranked": 3.1, "top_best": 3.0, "top_median": 3.3},
           "predicted": {"optimized": 3.0, "reranked": 3.05, "top_range": [3.0, 3.1]},
           "spearman_predicted_vs_merged": 0.4, "merge_seconds": 2.0}
    (tmp_path / "merging" / "rerank.json").write_text(json.dumps(rec))
    runs = {n: {s: {"val_loss": {"held": x}} for s, x in enumerate(xs)}
            for n, xs in {"optimized": [3.0, 3.1, 3.2], "reranked": [2.9, 3.0, 3.1]}.items()}
    r = reranking.summary(cfg(), tmp_path, runs, margins)
    assert r["regressor_only"]["seeds"] == [3.0, 3.1, 3.2] and r["merging_informed"]["seeds"] == [2.9, 3.0, 3.1]
    np.testing.assert_allclose(r["vs_regressor_only"]["seeds"], [0.1, 0.1, 0.1])  # positive: re-ranking helps
    assert r["vs_regressor_only"]["verdict"] == "beats" and "nearly the regressor's" in r["note"]
    text = "\n".join(report_section({"merging": {"n": 4, "spearman": 1, "pearson": 1, "spearman_vs_sweep": 1,
                                                 "seconds_per_mixture": 1, "train_seconds_per_mixture": 2,
                                                 "ablation": []}, "upsampling": None, "reranking": r}, {}))
    assert "| merging-informed (reranked) | 3.0000 | 2.9000, 3.0000, 3.1000 |" in text
    assert "the merging-informed choice **beats** the regressor-only one" in text and "total variation 0.010" in text
    runs["reranked"] = {s: {"val_loss": {"held": x}} for s, x in enumerate([3.1, 3.0, 3.3])}
    assert reranking.summary(cfg(), tmp_path, runs, margins)["vs_regressor_only"]["verdict"] == "ties"
    assert reranking.summary(cfg(rerank_top=0), tmp_path, runs, margins) is None


def test_upsampled_schedules_export_as_the_trainers_read_them(out):
    base = {"a": 0.5, "b": 0.3, "c": 0.2, "d": 0.0}
    late = {"a": 0.3, "b": 0.2, "c": 0.3, "d": 0.2}
    files, notes = export_schedules(cfg(), out, {"optimized_up10": [(0, base), (0.9, late)],
                                                 "optimized_up25": [(0, base), (0.75, late)]})
    assert files["optimized_up25"] == {"json": "export/mixture_up25.json",
                                       "levanter": "export/mixture_up25.levanter.yaml",
                                       "nanotron": "export/mixture_up25.nanotron.yaml"}
    read = lambda name, fmt: (out / files[name][fmt]).read_text()
    assert [s for s, _ in parse(read("optimized_up25", "json"), "json")] == [0, 1536]
    for name, switch in (("optimized_up25", 1536), ("optimized_up10", 1792)):  # Levanter: blocks of 256 steps
        stages = cs.levanter_checks(cs.strict(cs.LmDataConfig, yaml.safe_load(read(name, "levanter"))["data"]), 8)
        assert [s for s, _ in stages] == [0, switch] and stages[1][1] == pytest.approx(late)
        runs = [cs.strict(cs.DatasetStageArgs, s) for s in yaml.safe_load(read(name, "nanotron"))["data_stages"]]
        cs.nanotron_checks(runs)
        assert runs[1].data.dataset.dataset_weights == pytest.approx([0.3, 0.2, 0.3, 0.2])
    assert [s for s, _ in parse(read("optimized_up10", "nanotron"), "nanotron")] == [0, 1843]
    assert notes == ["optimized_up10 levanter: export levanter: late phase starts at step 1792, not 1843: Levanter's "
                     "mixture blocks of 2048 sequences at 8 sequences per step"]
    short = dataclasses.replace(cfg(), final=dataclasses.replace(cfg().final, train=TrainConfig(steps=40, batch=4)))
    files, notes = export_schedules(short, out, {"optimized_up10": [(0, base), (0.9, late)]})
    assert set(files["optimized_up10"]) == {"json", "nanotron"} and "no stage boundary" in notes[0]
