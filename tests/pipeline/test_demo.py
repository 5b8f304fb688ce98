"""`regmix demo --quick` end to end, resuming after a kill, `regmix run --stage`, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # end-to-end runs of the whole pipeline

from regmix.export import FORMATS, parse
from regmix.pipeline import STAGES, PipelineConfig, load_pipeline_config, stage_key

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "regmix" / "configs" / "demo-quick.yaml"


def regmix(*args, check=True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "regmix", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"regmix {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def reused(stderr: str) -> set[str]:
    return {s for s in STAGES if f"pipeline: {s}: done, reused" in stderr}


def ran(stderr: str) -> set[str]:
    return {s for s in STAGES if f"pipeline: {s}: running" in stderr}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "quick"
    proc = regmix("demo", "--quick", "--out", out)
    assert ran(proc.stderr) == set(STAGES)
    return out


def test_quick_demo_writes_summary_report_and_exports(quick):
    s = json.loads((quick / "summary.json").read_text())
    assert s["target"] == "pydocs" and s["target"] not in s["train_domains"]
    assert set(s["stage_seconds"]) == set(STAGES) and all(v >= 0 for v in s["stage_seconds"].values())
    assert set(s["cv"]) >= {"spearman", "pearson", "n_runs"} and s["cv"]["n_runs"] == 12
    assert -1 <= s["cv"]["spearman"] <= 1 and -1 <= s["cv"]["pearson"] <= 1
    names = {"optimized", "uniform", "natural", "best_proxy"}
    assert set(s["mixtures"]) >= names and set(s["final_runs"]) >= names
    for n in names:
        w = s["mixtures"][n]
        assert set(w) == set(s["train_domains"]) and abs(sum(w.values()) - 1) < 1e-6 and min(w.values()) >= 0
        r = s["final_runs"][n]
        assert len(r["seeds"]) == 2 and np.isclose(r["target"], np.mean(r["seeds"]))
    for b in ("uniform", "natural", "best_proxy"):
        m = s["margins"][b]
        diff = np.array(s["final_runs"][b]["seeds"]) - np.array(s["final_runs"]["optimized"]["seeds"])
        assert np.allclose(m["seeds"], diff) and np.isclose(m["mean"], diff.mean()) and m["n_seeds"] == 2
    assert s["ranking"][0] in s["final_runs"] and len(s["ranking"]) == len(s["final_runs"])
    # every exported format reads back to the optimized mixture
    assert set(s["exports"]) == set(FORMATS)
    for fmt, rel in s["exports"].items():
        ((_, back),) = parse((quick / rel).read_text(encoding="utf-8"), fmt)
        for d, w in s["mixtures"]["optimized"].items():
            keys = [d, f"train_{d}", f"/data/{d}_text_document", f"/data/{d}"]
            assert np.isclose(sum(back.get(k, 0.0) for k in keys), w, atol=1e-8), (fmt, d)
    html = (quick / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 7 and "<table>" in html  # 2 of them: final.merging
    md = (quick / "report.md").read_text()
    assert "## Final runs" in md and "## Fit quality" in md and "## Time per stage" in md
    assert "## Merged models" in md and s["merging"]["n"] == 12 and -1 <= s["merging"]["spearman"] <= 1
    assert "## The sweep" in md and "(spread of the cross-validation fold models)" in md
    for png in ("final", "mixtures", "fit", "times", "merging", "ablation", "sweep"):
        assert (quick / "report" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    # re-ranking: the merging-informed choice paired with the regressor's over the same seeds
    r = s["reranking"]
    assert r["regressor_only"]["seeds"] == s["final_runs"]["optimized"]["seeds"] and r["top"] == 64
    diff = np.array(r["regressor_only"]["seeds"]) - np.array(r["merging_informed"]["seeds"])
    assert np.allclose(r["vs_regressor_only"]["seeds"], diff) and "### Re-ranking" in md
    # the upsampled runs fork from the optimized one; their schedules are exported for trainers
    plan = json.loads((quick / "final" / "plan.json").read_text())
    up = s["upsampling"]
    assert set(plan.get("forks", {})) == set(up.get("runs", {}))
    for name, files in up.get("exports", {}).items():
        assert [len(parse((quick / rel).read_text(), fmt)) for fmt, rel in files.items()] == [2] * len(files)


def test_merging_notebook_reads_the_demo_folder_and_draws_every_figure(quick, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("REGMIX_DEMO", str(quick))
    monkeypatch.setenv("MPLBACKEND", "agg")
    nb = nbformat.read(ROOT / "notebooks" / "03_merging_and_final_runs.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    # final-run curves, mixtures, the sweep, merged vs trained, ablations
    assert len(pngs) == 5 and all(len(o["data"]["image/png"]) > 5000 for o in pngs)
    text = "".join(o.get("text", "") for o in outputs)
    assert "merged vs trained from the seed: Spearman" in text and not list(tmp_path.iterdir())


def test_rerun_reuses_every_finished_stage(quick):
    before = {s: (quick / s / "done.json").stat().st_mtime_ns for s in STAGES}
    proc = regmix("demo", "--quick", "--out", quick)
    assert reused(proc.stderr) == set(STAGES) and not ran(proc.stderr)
    assert before == {s: (quick / s / "done.json").stat().st_mtime_ns for s in STAGES}


def test_resume_after_kill_in_final_runs(quick, tmp_path):
    """SIGKILL during the final runs: the re-run keeps prepare..export and the finished jobs, and its
    numbers equal the uninterrupted run's (same seeds, same numbers)."""
    out = tmp_path / "killed"
    shutil.copytree(quick, out, ignore=shutil.ignore_patterns(".lock"))
    for s in ("final", "report"):
        shutil.rmtree(out / s)
    (out / "summary.json").unlink()
    sweep_mtime = (out / "sweep" / "metrics.csv").stat().st_mtime_ns
    proc = subprocess.Popen([sys.executable, "-m", "regmix", "demo", "--quick", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "final" / "plan.json").exists() and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)  # the demo and its workers
    proc.wait()
    assert not (out / "final" / "done.json").exists()
    rerun = regmix("demo", "--quick", "--out", out)
    assert reused(rerun.stderr) == {"prepare", "sample", "sweep", "fit", "optimize", "export"}
    assert ran(rerun.stderr) == {"final", "report"}
    assert (out / "sweep" / "metrics.csv").stat().st_mtime_ns == sweep_mtime
    a = json.loads((quick / "summary.json").read_text())["final_runs"]
    b = json.loads((out / "summary.json").read_text())["final_runs"]
    for n in a:
        assert np.allclose(a[n]["seeds"], b[n]["seeds"], rtol=0, atol=1e-6), n


def test_run_stage_alone_and_its_errors(quick, tmp_path):
    out = tmp_path / "stages"
    shutil.copytree(quick, out, ignore=shutil.ignore_patterns(".lock"))
    fit_model = (out / "fit" / "model" / "model.json").read_text()
    proc = regmix("run", "--config", QUICK, "--stage", "fit", "--out", out)
    assert "already done" in proc.stdout
    proc = regmix("run", "--config", QUICK, "--stage", "fit", "--force", "--out", out)
    assert ran(proc.stderr) == {"fit"}
    assert (out / "fit" / "model" / "model.json").read_text() == fit_model  # seeded: same model
    # a forced stage makes every later stage stale
    proc = regmix("run", "--config", QUICK, "--stage", "export", "--out", out, check=False)
    assert proc.returncode == 2 and "needs stage 'optimize'" in proc.stderr
    regmix("run", "--config", QUICK, "--stage", "optimize", "--out", out)
    regmix("run", "--config", QUICK, "--stage", "export", "--out", out)
    assert json.loads((out / "optimize" / "mixture.json").read_text())["weights"] == \
        json.loads((quick / "optimize" / "mixture.json").read_text())["weights"]


@pytest.mark.parametrize("args, message", [
    (["run", "--config", QUICK, "--stage", "train", "--out", "X"], "unknown stage 'train'"),
    (["run", "--config", QUICK, "--stage", "final", "--out", "EMPTY"], "needs stage 'prepare'"),
    (["demo", "--config", "BAD", "--out", "X"], "unknown key 'fit.kinds'"),
    (["demo", "--config", "HELD", "--out", "X"], "as the 'optimized_mean' final run"),
    (["demo", "--config", "missing.yaml", "--out", "X"], "missing.yaml: no such config file or preset"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(QUICK.read_text().replace("fit: {kind:", "fit: {kinds:"))
    held = tmp_path / "held.yaml"
    held.write_text(QUICK.read_text() + "target: train_mean\n")  # a training domain is a valid target; this is not
    subs = {"X": tmp_path / "x", "EMPTY": tmp_path / "empty", "BAD": bad, "HELD": held}
    proc = regmix(*[subs.get(a, a) if isinstance(a, str) else a for a in args], check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regmix: error:") and message in lines[0], proc.stderr


def test_stage_keys_change_only_from_the_edited_section():
    base = load_pipeline_config(QUICK)
    edited = load_pipeline_config(QUICK, seeds=[5, 6, 7])
    same = [s for s in STAGES if stage_key(base, s) == stage_key(edited, s)]
    assert same == ["prepare", "sample", "sweep", "fit", "optimize", "export"]
    assert stage_key(PipelineConfig(), "report") == stage_key(PipelineConfig(), "report")


def test_final_plan_pairs_seeds_and_checks_schedule():
    from proxies.config import ModelConfig, TrainConfig
    from proxies.final import make_plan
    from regmix.errors import RegmixError

    mix = {"a": {"x": 1.0, "y": 0.0}, "b": {"x": 0.5, "y": 0.5}, "c": {"x": 0.0, "y": 1.0}}
    kw = dict(model=ModelConfig(), train=TrainConfig(), eval_domains=["x", "y"])
    plan = make_plan("store", ["x", "y"], mix, seeds=[0, 1, 2], workers=2, **kw)
    # 3 seeds on 2 workers: each seed's mixtures split in 2 jobs, every (seed, mixture) once
    pairs = sorted((j["seed"], m) for j in plan["jobs"] for m in j["mixtures"])
    assert pairs == sorted((s, m) for s in (0, 1, 2) for m in mix) and len(plan["jobs"]) == 6
    sched = make_plan("store", ["x", "y"], mix, seeds=[0], late_mixtures={"a": {"y": 1.0}}, late_fraction=0.2, **kw)
    assert sched["final_mixtures"] == {"a": [0.0, 1.0]} and sched["final_fraction"] == 0.2
    with pytest.raises(RegmixError, match="unknown mixture"):
        make_plan("store", ["x", "y"], mix, seeds=[0], late_mixtures={"z": {"y": 1.0}}, late_fraction=0.2, **kw)
    with pytest.raises(RegmixError, match="repeated seed"):
        make_plan("store", ["x", "y"], mix, seeds=[0, 0], **kw)


def test_changed_final_section_reruns_only_final_with_schedule(quick, tmp_path):
    """Other seeds and a schedule (legal text only for the last quarter of the optimized run):
    only the final runs and the report are redone; seed 1 alone equals seed 1 of the two-seed run."""
    out = tmp_path / "scheduled"
    shutil.copytree(quick, out, ignore=shutil.ignore_patterns(".lock"))
    config = tmp_path / "scheduled.yaml"
    config.write_text(QUICK.read_text().replace("  mean_target_run: false",
                                                "  mean_target_run: false\n  late_fraction: 0.25\n"
                                                "  late_mixture: {legal: 1.0}"))
    proc = regmix("demo", "--config", config, "--seeds", "1", "--out", out)
    assert ran(proc.stderr) == {"final", "report"}
    plan = json.loads((out / "final" / "plan.json").read_text())
    assert plan["final_fraction"] == 0.25 and set(plan["final_mixtures"]) == {"optimized"}
    s = json.loads((out / "summary.json").read_text())["final_runs"]
    a = json.loads((quick / "summary.json").read_text())["final_runs"]
    assert all(len(r["seeds"]) == 1 for r in s.values())
    # the optimized run trained on other data at the end; the others keep their mixture (their last
    # quarter draws a fresh block sequence of the same mixture: nearly the same loss)
    assert abs(s["optimized"]["seeds"][0] - a["optimized"]["seeds"][1]) > 1e-3
    for n in ("uniform", "natural", "best_proxy"):
        assert abs(s[n]["seeds"][0] - a[n]["seeds"][1]) < 0.03, n
