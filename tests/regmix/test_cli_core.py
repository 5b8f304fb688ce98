import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from regmix.cli import main
from regmix.tables import embedded_tables
from regmix.export import FORMATS, parse

from helpers_tables import synthetic_sweep


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.startswith("regmix: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    mix, met, *_ = synthetic_sweep(tmp, n=64, k=4)
    assert main(["fit", "--mixtures", str(mix), "--metrics", str(met), "--target", "target",
                 "--folds", "4", "--out", str(tmp / "model"), "--no-progress"]) == 0
    return tmp, mix, met


def test_fit_predict_optimize_export(fitted, capsys, tmp_path):
    tmp, mix, met = fitted
    # predict matches domains by name: shuffle the columns and use prefix-stripped names
    frame = pd.read_csv(mix)
    renamed = frame.rename(columns={c: c.removeprefix("train_") for c in frame.columns})
    shuffled = renamed[["run", "d3", "d1", "d0", "d2"]]
    shuffled.to_csv(tmp_path / "cands.csv", index=False)
    frame.to_csv(tmp_path / "same.csv", index=False)
    assert main(["predict", "--model", str(tmp / "model"), "--mixtures", str(tmp_path / "cands.csv"), "--out", str(tmp_path / "p1.csv")]) == 0
    assert main(["predict", "--model", str(tmp / "model"), "--mixtures", str(tmp_path / "same.csv"), "--out", str(tmp_path / "p2.csv")]) == 0
    p1, p2 = pd.read_csv(tmp_path / "p1.csv"), pd.read_csv(tmp_path / "p2.csv")
    assert list(p1.columns) == ["run", "prediction"]
    assert p1["prediction"].tolist() == pytest.approx(p2["prediction"].tolist())

    code, out, _ = run_cli(capsys, "optimize", "--model", tmp / "model", "--samples", 20000, "--top-k", 10,
                           "--out", tmp_path / "mixture.json", "--no-progress")
    assert code == 0 and "predicted" in out
    mixture = json.loads((tmp_path / "mixture.json").read_text())
    assert sum(mixture["weights"].values()) == pytest.approx(1.0)
    for fmt in FORMATS:
        target = tmp_path / f"out.{fmt}"
        if fmt == "olmo":  # OLMo-core's SourceMixtureDatasetConfig requires its batch and token count
            extra = ["--token-budget", "1e9", "--global-batch-size", "8", "--sequence-length", "128"]
            assert main(["export", str(tmp_path / "mixture.json"), "--format", fmt, "--out", str(target), *extra]) == 0
        else:
            assert main(["export", str(tmp_path / "mixture.json"), "--format", fmt, "--out", str(target)]) == 0
        ((_, back),) = parse(target.read_text(), fmt)
        for d, w in mixture["weights"].items():
            keys = [d, f"train_{d}", f"/data/{d}_text_document", f"/data/{d}"]
            assert sum(back.get(k, 0.0) for k in keys) == pytest.approx(w, abs=1e-9), (fmt, d)


def test_fit_on_embedded_table_scores_well(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "fit", "--target", "pile_cc", "--folds", 3, "--out", tmp_path / "m", "--no-progress")
    assert code == 0
    row = [l for l in out.splitlines() if l.startswith("metric/the_pile_pile_cc_val_loss")][0]
    assert float(row.split()[1]) > 0.97  # out-of-fold Spearman over 512 runs
    # RegMix's trainer globs '<key>-*' over files named from the original columns (train_the_pile_arxiv-...)
    assert main(["optimize", "--model", str(tmp_path / "m"), "--samples", "2000", "--top-k", "10",
                 "--out", str(tmp_path / "mix.json"), "--no-progress"]) == 0
    assert main(["export", str(tmp_path / "mix.json"), "--format", "lit-gpt", "--out", str(tmp_path / "r.yaml")]) == 0
    config = yaml.safe_load((tmp_path / "r.yaml").read_text())
    columns = pd.read_csv(embedded_tables()[0], nrows=0).columns[1:]
    assert set(config["train"]) <= set(columns) and len(config["valid"]) == len(columns)
    assert set(config["valid"]) == {c.replace("train_", "valid_", 1) for c in columns}


def test_space_file_and_bad_space(fitted, capsys, tmp_path):
    tmp, *_ = fitted
    space = tmp_path / "space.yaml"
    space.write_text("bounds: {d0: [0, 0.3], d1: [0.2, 1]}\n")
    code, _, _ = run_cli(capsys, "optimize", "--model", tmp / "model", "--space", space, "--samples", 5000,
                         "--out", tmp_path / "m.json", "--no-progress")
    w = json.loads((tmp_path / "m.json").read_text())["weights"]
    assert code == 0 and w["d0"] <= 0.3 + 1e-9 and w["d1"] >= 0.2 - 1e-9
    space.write_text("bounds: {d0: [0, 0.1], d1: [0, 0.1], d2: [0, 0.1], d3: [0, 0.1]}\n")
    code, _, err = run_cli(capsys, "optimize", "--model", tmp / "model", "--space", space, "--out", tmp_path / "x.json")
    assert_one_line_error(code, err, "space.yaml", "no feasible mixture")
    space.write_text("boundz: {}\n")
    code, _, err = run_cli(capsys, "optimize", "--model", tmp / "model", "--space", space, "--out", tmp_path / "x.json")
    assert_one_line_error(code, err, "space.yaml", "unknown key 'boundz'")


BAD_MIXTURES = {
    "negative": ("run,a,b\nr1,-0.2,1.2\nr2,0.5,0.5\n", ["m.csv", "r1", "'a'", "negative"]),
    "nan": ("run,a,b\nr1,nan,1\nr2,0.5,0.5\n", ["m.csv", "r1", "'a'", "NaN"]),
    "sum": ("run,a,b\nr1,0.2,0.2\nr2,0.5,0.5\n", ["m.csv", "r1", "sum to 0.4"]),
    "text": ("run,a,b\nr1,0.5,abc\nr2,0.5,0.5\n", ["m.csv", "r1", "'b'", "not a number"]),
    "empty": ("run,a,b\n", ["m.csv", "empty table"]),
    "duplicate": ("run,a,b\nr1,0.5,0.5\nr1,0.5,0.5\n", ["m.csv", "duplicate", "r1"]),
}


@pytest.mark.parametrize("case", sorted(BAD_MIXTURES))
def test_fit_bad_mixtures(case, capsys, tmp_path):
    text, fragments = BAD_MIXTURES[case]
    (tmp_path / "m.csv").write_text(text)
    (tmp_path / "l.csv").write_text("run,loss\nr1,1.0\nr2,2.0\n")
    code, _, err = run_cli(capsys, "fit", "--mixtures", tmp_path / "m.csv", "--metrics", tmp_path / "l.csv",
                           "--target", "loss", "--out", tmp_path / "model")
    assert_one_line_error(code, err, *fragments)


@pytest.mark.parametrize(
    "metrics, target, fragments",
    [
        ("run,loss\nr1,1\nr2,2\nr7,3\n", "loss", ["r7", "not in"]),
        ("run,loss,loss2\nr1,1,1\nr2,2,2\nr3,1,1\n", "los", ["ambiguous target 'los'", "loss2"]),
        ("run,loss\nr1,1\nr2,2\nr3,1\n", "acc", ["unknown target 'acc'", "choices: loss"]),
        ("run,loss\nr1,1\nr2,oops\nr3,1\n", "loss", ["l.csv", "r2", "'loss'", "not a number"]),
        ("run,loss\n", "loss", ["l.csv", "empty table"]),
    ],
)
def test_fit_bad_metrics(metrics, target, fragments, capsys, tmp_path):
    (tmp_path / "m.csv").write_text("run,a,b\nr1,0.5,0.5\nr2,0.2,0.8\nr3,1,0\n")
    (tmp_path / "l.csv").write_text(metrics)
    code, _, err = run_cli(capsys, "fit", "--mixtures", tmp_path / "m.csv", "--metrics", tmp_path / "l.csv",
                           "--target", target, "--out", tmp_path / "model")
    assert_one_line_error(code, err, *fragments)


def test_renormalize_flag_accepts_off_rows(capsys, tmp_path):
    mix, met, *_ = synthetic_sweep(tmp_path, n=40, k=3)
    frame = pd.read_csv(mix)
    frame.iloc[:, 1:] *= 2.0  # rows sum to 2
    frame.to_csv(mix, index=False)
    code, _, err = run_cli(capsys, "fit", "--mixtures", mix, "--metrics", met, "--target", "target", "--folds", 2,
                           "--model", "linear", "--out", tmp_path / "model")
    assert_one_line_error(code, err, "sum to 2", "--renormalize")
    code, _, _ = run_cli(capsys, "fit", "--mixtures", mix, "--metrics", met, "--target", "target", "--folds", 2,
                         "--model", "linear", "--out", tmp_path / "model", "--renormalize", "--no-progress")
    assert code == 0


def test_nan_target_runs_are_excluded_with_warning(capsys, tmp_path):
    mix, met, *_ = synthetic_sweep(tmp_path, n=40, k=3)
    frame = pd.read_csv(met)
    frame.loc[:4, "metric/target_val_loss"] = float("nan")
    frame.to_csv(met, index=False)
    code, out, err = run_cli(capsys, "fit", "--mixtures", mix, "--metrics", met, "--target", "target", "--folds", 3,
                             "--model", "linear", "--out", tmp_path / "model", "--no-progress")
    assert code == 0 and "5 run(s) with a NaN target" in err and "35 runs" in out


def test_predict_missing_domain(fitted, capsys, tmp_path):
    tmp, mix, _ = fitted
    frame = pd.read_csv(mix).drop(columns=["train_d2"])
    frame.iloc[:, 1:] = frame.iloc[:, 1:].div(frame.iloc[:, 1:].sum(axis=1), axis=0)
    frame.to_csv(tmp_path / "c.csv", index=False)
    code, _, err = run_cli(capsys, "predict", "--model", tmp / "model", "--mixtures", tmp_path / "c.csv", "--out", tmp_path / "p.csv")
    assert_one_line_error(code, err, "c.csv", "no column for domain 'd2'")


def test_export_bad_mixture_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "export", tmp_path / "nope.json", "--format", "hf")
    assert_one_line_error(code, err, "nope.json", "file not found")


def test_console_script_exit_code_and_help():
    proc = subprocess.run([sys.executable, "-m", "regmix", "fit", "--mixtures", "/nonexistent.csv",
                           "--metrics", "/nonexistent2.csv", "--target", "x", "--out", "/tmp/never"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "file not found" in proc.stderr
    for cmd in ("fit", "predict", "optimize", "export"):
        out = subprocess.run([sys.executable, "-m", "regmix", cmd, "--help"], capture_output=True, text=True).stdout
        assert "example:" in out and f"regmix {cmd}" in out


def test_version_and_every_flag_has_help(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == "regmix 0.1.0"
    from regmix.cli import build_parser

    def flags(parser):
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                yield parser.prog, action
            for sub in getattr(action, "choices", None) or {}:
                if isinstance(action.choices, dict):
                    yield from flags(action.choices[sub])

    found = list(flags(build_parser()))
    missing = [f"{prog} {a.option_strings[0]}" for prog, a in found if not a.help]
    assert len(found) > 40 and not missing, missing


def test_optimize_takes_caps_from_flags_or_a_token_file_named_in_the_space(fitted, capsys, tmp_path):
    tmp, *_ = fitted
    (tmp_path / "counts.json").write_text(json.dumps({"d0": 1e8, "d1": 1e9, "d2": 1e9, "d3": 1e9}))
    budget, cap = 1e9, 1.0  # d0 may take at most 0.1 of the run
    code, _, _ = run_cli(capsys, "optimize", "--model", tmp / "model", "--samples", 5000, "--top-k", 10,
                         "--token-budget", "1.0e9", "--tokens", tmp_path / "counts.json", "--max-epochs", cap,
                         "--out", tmp_path / "a.json", "--no-progress")
    assert code == 0
    w = json.loads((tmp_path / "a.json").read_text())["weights"]
    assert w["d0"] * budget <= cap * 1e8 * (1 + 1e-6)
    (tmp_path / "space.yaml").write_text("token_budget: 1.0e9\nmax_epochs: 1\ntokens: counts.json\n")
    code, _, _ = run_cli(capsys, "optimize", "--model", tmp / "model", "--space", tmp_path / "space.yaml",
                         "--samples", 5000, "--top-k", 10, "--out", tmp_path / "b.json", "--no-progress")
    assert code == 0 and json.loads((tmp_path / "b.json").read_text())["weights"] == w
