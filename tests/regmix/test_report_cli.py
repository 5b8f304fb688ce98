"""`regmix report` end to end on small fits: the embedded RegMix table with the linear model, and a
64-run sweep folder cut from it with LightGBM and two targets."""

import re

import pandas as pd
import pytest

from regmix.cli import main
from regmix.tables import embedded_tables


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, fragment):
    lines = [l for l in err.strip().splitlines() if l.startswith("regmix: error")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def linear_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "model"
    assert main(["fit", "--model", "linear", "--out", str(out), "--no-progress"]) == 0
    return out


def test_report_on_the_embedded_table(linear_model, capsys, tmp_path):
    import json

    out = tmp_path / "report"
    domains = [c.removeprefix("train_the_pile_") for c in pd.read_csv(embedded_tables()[0], nrows=1).columns[1:]]
    (tmp_path / "tokens.json").write_text(json.dumps({d: 2e9 for d in domains}))
    code, stdout, err = run_cli(capsys, "report", "--model", linear_model, "--out", out, "--samples", 2000,
                                "--repeats", 1, "--token-budget", 25e9, "--tokens", tmp_path / "tokens.json")
    assert code == 0, err
    pngs = sorted(p.stem for p in (out / "figures").glob("*.png"))
    for name in ("oof", "residuals", "learning_curve", "domain_effects", "partial_dependence", "interactions",
                 "target_correlation", "candidates", "mixtures", "sensitivity", "epochs"):
        assert name in pngs
    md = (out / "report.md").read_text()
    assert "nats/token" in md and "| pile_cc |" in md and "embedded" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(pngs) and 'src="figures/' not in page  # self-contained
    assert re.search(r"<td>linear</td><td>\d+</td>", page)  # the learning-curve table
    assert "report written to" in stdout


def test_report_on_a_demo_folder_with_lightgbm_and_two_targets(capsys, tmp_path):
    """A demo-shaped folder: DIR/sweep (64 runs cut from the embedded table), DIR/fit/model, summary.json."""
    import json

    mix_path, met_path = embedded_tables()
    demo = tmp_path / "demo"
    sweep = demo / "sweep"
    sweep.mkdir(parents=True)
    mix = pd.read_csv(mix_path).head(64)
    mix.to_csv(sweep / "mixtures.csv", index=False)
    pd.read_csv(met_path).head(64).to_csv(sweep / "metrics.csv", index=False)
    assert main(["fit", "--mixtures", str(sweep / "mixtures.csv"), "--metrics", str(sweep / "metrics.csv"),
                 "--target", "github", "--target", "pile_cc", "--model", "lightgbm", "--folds", "3",
                 "--out", str(demo / "fit" / "model"),
                 "--no-progress"]) == 0
    domains = [c.removeprefix("train_the_pile_") for c in mix.columns[1:]]
    summary = {"mixtures": {"optimized": {d: 1 / len(domains) for d in domains}, "uniform": {d: 1 / len(domains) for d in domains}},
               "final_runs": {"optimized": {"target": 3.25}, "uniform": {"target": 3.5}}}
    (demo / "summary.json").write_text(json.dumps(summary))
    capsys.readouterr()
    code, _, err = run_cli(capsys, "report", "--demo", demo, "--out", tmp_path / "r", "--samples", 1000,
                           "--repeats", 1, "--no-sensitivity")
    assert code == 0, err
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| github |" in md and "| pile_cc |" in md and "shap.png" in md and "fit of github, pile_cc" in md
    assert "| optimized | 3.2500 |" in md and (tmp_path / "r" / "figures" / "demo_mixtures.png").exists()
    assert not (tmp_path / "r" / "figures" / "sensitivity.png").exists()


def test_bad_input_is_one_line(linear_model, capsys, tmp_path):
    code, _, err = run_cli(capsys, "report", "--model", tmp_path / "nothing", "--out", tmp_path / "r")
    one_line_error(code, err, "no model.json")
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "report", "--model", linear_model, "--out", tmp_path / "file")
    one_line_error(code, err, "exists and is not a folder")
    code, _, err = run_cli(capsys, "report", "--model", linear_model, "--sweep", tmp_path, "--out", tmp_path / "r")
    one_line_error(code, err, "no mixtures.csv")
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame({"run": range(8), "web": 0.5, "code": 0.5}).to_csv(other / "mixtures.csv", index=False)
    pd.DataFrame({"run": range(8), "web_val_loss": 1.0}).to_csv(other / "metrics.csv", index=False)
    code, _, err = run_cli(capsys, "report", "--model", linear_model, "--sweep", other, "--out", tmp_path / "r")
    one_line_error(code, err, "give the sweep it was fitted on")
    code, _, err = run_cli(capsys, "report", "--model", linear_model, "--max-epochs", 4, "--out", tmp_path / "r")
    one_line_error(code, err, "need both --tokens and --token-budget")
    code, _, err = run_cli(capsys, "report", "--demo", tmp_path, "--out", tmp_path / "r")
    one_line_error(code, err, "no summary.json")
    assert not (tmp_path / "r").exists()  # nothing written on refusal
