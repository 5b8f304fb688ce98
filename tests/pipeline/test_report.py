"""The report's text and the read side's paired margins, from a hand-made summary (no runs needed)."""

import pytest

from regmix.pipeline.report import markdown, to_html
from regmix.pipeline.results import margins


def test_margins_are_paired_differences_with_wins():
    by_seed = {"optimized": [2.0, 2.1, 2.2], "uniform": [2.1, 2.1, 2.5], "natural": [1.9, 2.0, 2.1]}
    m = margins(by_seed, "optimized", by_seed)
    assert set(m) == {"uniform", "natural"}
    assert m["uniform"]["seeds"] == pytest.approx([0.1, 0.0, 0.3]) and m["uniform"]["wins"] == 2
    assert m["natural"]["mean"] == pytest.approx(-0.1) and m["natural"]["wins"] == 0
    assert m["uniform"]["std"] == pytest.approx(0.152753, abs=1e-6) and m["uniform"]["n_seeds"] == 3


def summary() -> dict:
    mix = {"optimized": {"a": 0.7, "b": 0.3}, "uniform": {"a": 0.5, "b": 0.5}}
    runs = {"optimized": {"target": 2.0, "seeds": [2.0, 2.0], "train_mean": 2.5},
            "uniform": {"target": 2.2, "seeds": [2.1, 2.3], "train_mean": 2.4}}
    margin = {"uniform": {"mean": 0.2, "std": 0.1, "seeds": [0.1, 0.3], "wins": 2, "n_seeds": 2}}
    return {
        "target": "held", "target_metric": "validation loss on 'held'", "train_domains": ["a", "b"],
        "stage_seconds": {"sweep": 1.0, "report": 0.5}, "total_seconds": 1.5,
        "fit": {"kind": "lightgbm", "folds": 3, "optimizer": "topk", "top_k": 10, "samples": 1000},
        "cv": {"spearman": 0.8, "pearson": 0.9, "n_runs": 12}, "cv_mean_target": {"spearman": 0.5, "pearson": 0.6},
        "mixtures": mix, "predicted": {n: {"held": 2.0} for n in mix}, "final_runs": runs,
        "ranking": ["optimized", "uniform"], "margins": margin,
        "mean_target": {"final_runs": runs, "margins": {"uniform": dict(margin["uniform"], mean=-0.1, wins=0)}},
        "sweep": {"n_proxies": 12, "params": 27_000, "tokens_per_proxy": 200_000},
        "final": {"params": 115_000, "params_ratio": 4.3, "tokens_per_run": 600_000, "seeds": [0, 1]},
        "exports": {"json": "export/mixture.json"},
    }


def test_markdown_and_html_carry_the_numbers():
    images = {k: f"report/{k}.png" for k in ("final", "mixtures", "fit", "times")}
    md = markdown(summary(), images)
    assert md.startswith("# regmix: the best mixture for the held-out 'held' domain")
    # a summary without verdicts: worded from its seeds' interval (2 seeds, +0.1 and +0.3: it spans zero), not the sign
    assert "ties **uniform** (+0.200 +- 0.100 nats/byte; better on 2 of 2 seeds)" in md
    assert "| uniform | +0.2000 +- 0.1000 | none | 2/2 | optimized ties |" in md
    assert "| 1 | optimized (RegMix) | 2.0000 | 2.000, 2.000 |" in md
    assert "On the mean loss, optimized (RegMix) ties with uniform" in md and "beats" not in md.split("## Time")[0]
    assert "- json: `export/mixture.json`" in md and "| total | 1.5 |" in md
    page = to_html(md, {k: b"\x89PNG" for k in images}, images)
    assert page.count("data:image/png;base64,") == 4 and "<table>" in page
    assert "<title>regmix: the best mixture for the held-out &#x27;held&#x27; domain, on the embedded corpus</title>" in page


def test_verdicts_intervals_and_how_it_was_made():
    s = summary()
    s["margins"]["uniform"].update(verdict="ties", ci95=[-0.7, 1.1])
    s["run"] = {"corpus": "my_corpus", "regmix_version": "9.9", "command": "regmix run --config my.yaml --out x",
                "config": {"corpus": "my_corpus", "target": "held"}}
    md = markdown(s, {k: f"report/{k}.png" for k in ("final", "mixtures", "fit", "times")})
    assert md.startswith("# regmix: the best mixture for the held-out 'held' domain, on corpus `my_corpus`")
    assert "ties **uniform** (+0.200 +- 0.100 nats/byte, 95% paired interval -0.700 to +1.100;" in md
    assert "| uniform | +0.2000 +- 0.1000 | -0.7000 to +1.1000 | 2/2 | optimized ties |" in md
    s["margins"]["uniform"].update(verdict="beats", ci95=[0.05, 0.35], seeds=[0.15, 0.2, 0.25], n_seeds=3, wins=3)
    md = markdown(s, {k: f"report/{k}.png" for k in ("final", "mixtures", "fit", "times")})
    assert "it beats **uniform** (+0.200" in md and "| +0.0500 to +0.3500 | 3/3 | optimized beats |" in md
    assert "- command: `regmix run --config my.yaml --out x`" in md and "- regmix 9.9" in md
    page = to_html(md, {k: b"\x89PNG" for k in ("final", "mixtures", "fit", "times")},
                   {k: f"report/{k}.png" for k in ("final", "mixtures", "fit", "times")})
    assert '<pre>{\n &quot;corpus&quot;: &quot;my_corpus&quot;' in page
