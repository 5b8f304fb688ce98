"""Hostile and broken input: one line naming the file or field, exit code 2, never a crash."""
import json
import re
import shutil
from pathlib import Path

import pytest

from regmix.cli import main

from forkrun import ForkRunner
from helpers_tables import synthetic_sweep


def assert_one_line(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l.startswith("regmix: error:")]
    assert len(lines) == 1, err
    assert len(lines[0]) <= 320, lines[0][:400]
    for f in fragments:
        assert f in lines[0], lines[0]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    return code, err


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    mix, met, *_ = synthetic_sweep(tmp, n=32, k=3)
    models = {}
    for kind in ("lightgbm", "linear", "mixing-law"):
        out = tmp / f"model-{kind}"
        assert main(["fit", "--mixtures", str(mix), "--metrics", str(met), "--target", "target", "--folds", "2",
                     "--model", kind, "--out", str(out), "--no-progress"]) == 0
        models[kind] = out
    return tmp, mix, met, models


@pytest.fixture(scope="module")
def native():
    """Cases where a crash below Python could happen run in forked children of one warm interpreter."""
    runner = ForkRunner()
    yield runner
    runner.close()


def copy_model(sweep, kind, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(sweep[3][kind], dst)
    return dst


# ---- 1. tree files are checked before LightGBM's parser or the compiled path sees them ----

def _truncate(text):
    return text[: len(text) // 2]


def _cut_before_tree(text):
    return text[: text.index("\nTree=1")] + "\n"


def _feature_9(text):
    return re.sub(r"split_feature=(\d+)", "split_feature=9", text, count=1)


def _child_out(text):
    return re.sub(r"left_child=(-?\d+)", "left_child=9999", text, count=1)


def _short_leaves(text):
    return re.sub(r"(leaf_value=\S+) \S+", r"\1", text, count=1)


def _no_header(text):
    return text[text.index("Tree=0"):]


def _bad_num_leaves(text):
    return text.replace("num_leaves=", "num_leaves=x", 1)


def _nan_leaf(text):
    return re.sub(r"leaf_value=\S+", "leaf_value=nan", text, count=1)


def _max_feature_idx(text):
    return re.sub(r"max_feature_idx=\d+", "max_feature_idx=8", text, count=1)


def _empty(text):
    return ""


def _binary(text):
    return "\x00\xff" * 100


def _drop_threshold(text):
    return re.sub(r"\nthreshold=[^\n]*", "", text, count=1)


TREE_CASES = [
    ("truncated", _truncate, ["lgb.txt"]),
    ("cut-before-tree", _cut_before_tree, ["lgb.txt"]),
    ("feature-9-of-3", _feature_9, ["lgb.txt", "feature 9 of 3"]),
    ("child-out-of-range", _child_out, ["lgb.txt", "child index 9999"]),
    ("short-leaf-values", _short_leaves, ["lgb.txt", "leaf_value"]),
    ("no-header", _no_header, ["lgb.txt", "header"]),
    ("bad-num-leaves", _bad_num_leaves, ["lgb.txt", "num_leaves"]),
    ("nan-leaf", _nan_leaf, ["lgb.txt", "leaf_value"]),
    ("max-feature-idx", _max_feature_idx, ["lgb.txt", "9 features"]),
    ("empty", _empty, ["lgb.txt"]),
    ("binary", _binary, ["lgb.txt"]),
    ("no-threshold", _drop_threshold, ["lgb.txt"]),
]


TREE_RUNS = [("predict", *c) for c in TREE_CASES] + [("optimize", *c) for c in TREE_CASES[:3]]


@pytest.mark.parametrize("command,name,tamper,fragments", TREE_RUNS, ids=[f"{r[0]}-{r[1]}" for r in TREE_RUNS])
def test_tampered_tree_file_is_one_line_in_a_child_process(sweep, native, tmp_path, command, name, tamper, fragments):
    model = copy_model(sweep, "lightgbm", tmp_path)
    tree = sorted(model.glob("*.lgb.txt"))[0]
    tree.write_text(tamper(tree.read_text()), encoding="latin-1")
    if command == "predict":
        argv = ["predict", "--model", model, "--mixtures", sweep[1], "--out", tmp_path / "p.csv"]
    else:
        argv = ["optimize", "--model", model, "--samples", "200", "--out", tmp_path / "m.json", "--no-progress"]
    code, err = native.run(argv, tmp_path)
    assert_one_line(code, err, *fragments)


# ---- 2. model.json: containment and finite, consistent numbers ----

def _edit_lgb_files(meta, files):
    meta["full"][0]["files"] = files
    return meta


def _outside_file(model):
    outside = model.parent / "outside"
    outside.mkdir(exist_ok=True)
    src = sorted(model.glob("*.lgb.txt"))[0]
    shutil.copy(src, outside / "stolen.lgb.txt")
    return outside / "stolen.lgb.txt"


def _symlink_out(model):
    target = _outside_file(model)
    (model / "link.lgb.txt").symlink_to(target)
    return "link.lgb.txt"


CONTAIN_CASES = [
    ("dotdot", lambda m: "../outside/stolen.lgb.txt", ["model.json", "plain name"]),
    ("absolute", lambda m: str(_outside_file(m)), ["model.json", "plain name"]),
    ("symlink-out", _symlink_out, ["model.json", "outside the model folder"]),
    ("missing", lambda m: "nope.lgb.txt", ["model.json", "missing file"]),
    ("not-a-string", lambda m: 7, ["model.json", "plain name"]),
    ("empty-name", lambda m: "", ["model.json", "plain name"]),
]


@pytest.mark.parametrize("name,make,fragments", CONTAIN_CASES, ids=[c[0] for c in CONTAIN_CASES])
def test_model_json_names_only_files_inside_its_folder(sweep, tmp_path, capsys, name, make, fragments):
    model = copy_model(sweep, "lightgbm", tmp_path)
    if name in ("dotdot",):
        _outside_file(model)
    meta = json.loads((model / "model.json").read_text())
    _edit_lgb_files(meta, [make(model)])
    (model / "model.json").write_text(json.dumps(meta))
    code, err = run_cli(capsys, "predict", "--model", model, "--mixtures", sweep[1], "--out", tmp_path / "p.csv")
    assert_one_line(code, err, *fragments)
    assert not (tmp_path / "p.csv").exists()


def _set(path, value):
    def edit(meta):
        node = meta
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return meta
    return edit


NAN = float("nan")
META_CASES = [
    ("linear", "coef-too-short", _set(["full", 0, "coef"], [0.1, 0.2]), ["model.json", "coef", "3 domains"]),
    ("linear", "coef-too-long", _set(["full", 0, "coef"], [0.1] * 9), ["model.json", "coef"]),
    ("linear", "coef-nan", _set(["full", 0, "coef"], [0.1, NAN, 0.2]), ["model.json", "coef", "finite"]),
    ("linear", "coef-string", _set(["full", 0, "coef"], [0.1, "x", 0.2]), ["model.json", "coef"]),
    ("linear", "coef-not-list", _set(["full", 0, "coef"], 3), ["model.json", "coef"]),
    ("linear", "intercept-inf", _set(["full", 0, "intercept"], float("inf")), ["model.json", "intercept"]),
    ("linear", "alpha-null", _set(["full", 0, "alpha"], None), ["model.json", "alpha"]),
    ("linear", "fold-coef-short", _set(["folds", 0, 0, "coef"], [1.0]), ["model.json", "coef"]),
    ("linear", "empty-targets", _set(["targets"], []), ["model.json", "targets"]),
    ("linear", "empty-target-name", _set(["targets"], [""]), ["model.json", "targets"]),
    ("linear", "unknown-kind", _set(["full", 0, "kind"], "x" * 5000), ["model.json"]),
    ("linear", "columns-mismatch", _set(["columns"], ["a"]), ["model.json", "columns"]),
    ("mixing-law", "t-short", _set(["full", 0, "t"], [0.5]), ["model.json", "'t'", "3 domains"]),
    ("mixing-law", "t-nan", _set(["full", 0, "t"], [0.5, NAN, 1.0]), ["model.json", "'t'"]),
    ("mixing-law", "c-inf", _set(["full", 0, "c"], float("-inf")), ["model.json", "'c'"]),
    ("mixing-law", "k-string", _set(["full", 0, "k"], "1"), ["model.json", "'k'"]),
    ("mixing-law", "empty-targets", _set(["targets"], []), ["model.json", "targets"]),
    ("mixing-law", "missing-full", lambda m: {k: v for k, v in m.items() if k != "full"}, ["model.json"]),
    ("lightgbm", "no-files", _set(["full", 0, "files"], []), ["model.json", "no tree files"]),
]


@pytest.mark.parametrize("kind,name,edit,fragments", META_CASES, ids=[f"{c[0]}-{c[1]}" for c in META_CASES])
def test_tampered_model_json_is_one_line(sweep, tmp_path, capsys, kind, name, edit, fragments):
    model = copy_model(sweep, kind, tmp_path)
    meta = edit(json.loads((model / "model.json").read_text()))
    (model / "model.json").write_text(json.dumps(meta))
    code, err = run_cli(capsys, "predict", "--model", model, "--mixtures", sweep[1], "--out", tmp_path / "p.csv")
    assert_one_line(code, err, *fragments)


# ---- 3. --out that exists as the wrong kind is refused before any work ----

def _out_argv(command, sweep, out):
    tmp, mix, met, models = sweep
    return {
        "fit": ["fit", "--mixtures", mix, "--metrics", met, "--target", "target", "--folds", "2", "--model", "linear",
                "--out", out, "--no-progress"],
        "predict": ["predict", "--model", models["linear"], "--mixtures", mix, "--out", out],
        "optimize": ["optimize", "--model", models["linear"], "--samples", "100", "--out", out, "--no-progress"],
        "export": ["export", tmp / "mixture.json", "--format", "json", "--out", out],
        "prepare": ["prepare", "--corpus", tmp / "no-corpus", "--out", out],
        "sample": ["sample", "--domains", "a,b,c", "--n", "4", "--out", out],
        "sweep": ["sweep", "--config", "quick", "--out", out, "--quiet"],
        "demo": ["demo", "--quick", "--out", out],
        "run": ["run", "--config", "demo-quick", "--out", out],
    }[command]


FOLDER_WRITERS = {"fit", "prepare", "sweep", "demo", "run"}
OUT_CASES = [(c, k) for c in ("fit", "predict", "optimize", "export", "prepare", "sample", "sweep", "demo", "run")
             for k in ("wrong-kind", "under-dev-null", "under-a-file")]


@pytest.mark.parametrize("command,case", OUT_CASES, ids=[f"{c}-{k}" for c, k in OUT_CASES])
def test_out_of_the_wrong_kind_is_refused_first(sweep, tmp_path, capsys, command, case):
    if case == "wrong-kind":
        out = tmp_path / "out"
        if command in FOLDER_WRITERS:
            out.write_text("keep me\n")
        else:
            out.mkdir()
        fragment = str(out)
    elif case == "under-dev-null":
        out, fragment = Path("/dev/null/out"), "/dev/null"
    else:
        (tmp_path / "afile").write_text("keep me\n")
        out, fragment = tmp_path / "afile" / "sub" / "out", "afile"
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = run_cli(capsys, *_out_argv(command, sweep, out))
    assert_one_line(code, err, "--out", fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case != "under-dev-null" and out.is_file():
        assert out.read_text() == "keep me\n"


# ---- 4. bad numbers and names are refused with one bounded line ----

def _write(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return tmp_path / name


def _mixture_json(tmp_path):
    return _write(tmp_path, "mixture.json", json.dumps({"weights": {"d0": 0.5, "d1": 0.3, "d2": 0.2}}))


FLAG_CASES = [
    ("optimize", ["--kl", "nan"], ["--kl"]),
    ("optimize", ["--kl=-inf"], ["--kl"]),
    ("optimize", ["--kl=-1"], ["--kl"]),
    ("optimize", ["--target-weights", "nan"], ["--target-weights"]),
    ("optimize", ["--target-weights", "inf"], ["--target-weights"]),
    ("optimize", ["--token-budget", "nan"], ["--token-budget"]),
    ("optimize", ["--token-budget", "inf"], ["--token-budget"]),
    ("optimize", ["--token-budget", "0"], ["--token-budget"]),
    ("optimize", ["--max-epochs", "nan", "--token-budget", "1e9"], ["--max-epochs"]),
    ("optimize", ["--samples", "0"], ["--samples"]),
    ("optimize", ["--top-k", "0"], ["--top-k"]),
    ("export", ["--token-budget", "nan"], ["--token-budget"]),
    ("export", ["--token-budget", "inf"], ["--token-budget"]),
    ("export", ["--token-budget", "0"], ["--token-budget"]),
    ("export", ["--token-budget=-1e9"], ["--token-budget"]),
    ("export", ["--token-budget", "1e9", "--max-epochs", "inf"], ["--max-epochs"]),
]


@pytest.mark.parametrize("command,flags,fragments", FLAG_CASES, ids=[f"{c[0]}{' '.join(c[1])}" for c in FLAG_CASES])
def test_bad_number_flags(sweep, tmp_path, capsys, command, flags, fragments):
    if command == "optimize":
        argv = ["optimize", "--model", sweep[3]["linear"], "--samples", "100", "--out", tmp_path / "m.json",
                "--no-progress", *flags]
    else:
        argv = ["export", _mixture_json(tmp_path), "--format", "json", "--out", tmp_path / "o.json", *flags]
    code, err = run_cli(capsys, *argv)
    assert_one_line(code, err, *fragments)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "o.json").exists()


TOKEN_FILES = [
    ("nan-count", "d0: .nan\nd1: 1e9\nd2: 1e9\n", ["tokens.yaml", "d0"]),
    ("negative-count", "d0: -5\nd1: 1e9\nd2: 1e9\n", ["tokens.yaml", "d0"]),
    ("inf-count", "d0: .inf\nd1: 1e9\nd2: 1e9\n", ["tokens.yaml", "d0"]),
    ("string-count", "d0: lots\nd1: 1e9\nd2: 1e9\n", ["tokens.yaml", "d0"]),
    ("not-a-mapping", "- 1\n- 2\n", ["tokens.yaml"]),
    ("non-utf8", None, ["tokens.yaml"]),
]


@pytest.mark.parametrize("command", ["optimize", "export"])
@pytest.mark.parametrize("name,text,fragments", TOKEN_FILES, ids=[c[0] for c in TOKEN_FILES])
def test_bad_token_files(sweep, tmp_path, capsys, command, name, text, fragments):
    tokens = tmp_path / "tokens.yaml"
    if text is None:
        tokens.write_bytes(b"d0: 1\xff\xfe\n")
    else:
        tokens.write_text(text)
    caps = ["--token-budget", "1e9", "--tokens", tokens, "--max-epochs", "4"]
    if command == "optimize":
        argv = ["optimize", "--model", sweep[3]["linear"], "--samples", "100", "--out", tmp_path / "m.json",
                "--no-progress", *caps]
    else:
        argv = ["export", _mixture_json(tmp_path), "--format", "json", "--out", tmp_path / "o.json", *caps]
    code, err = run_cli(capsys, *argv)
    assert_one_line(code, err, *fragments)


HEADER = "run,train_d0,train_d1,train_d2\n"
TABLE_CASES = [
    ("inf-weight", HEADER + "r0,inf,0.5,0.5\n", [], ["c.csv", "train_d0", "infinite"]),
    ("inf-weight-renormalize", HEADER + "r0,inf,0.5,0.5\n", ["--renormalize"], ["c.csv", "train_d0"]),
    ("minus-inf-renormalize", HEADER + "r0,0.5,-inf,0.5\n", ["--renormalize"], ["c.csv", "train_d1"]),
    ("nan-weight-renormalize", HEADER + "r0,0.5,nan,0.5\n", ["--renormalize"], ["c.csv", "train_d1"]),
    ("huge-weight-renormalize", HEADER + "r0,1e308,1e308,1e308\n", ["--renormalize"], ["c.csv"]),
    ("duplicate-columns", "run,train_d0,train_d0,train_d2\nr0,0.2,0.3,0.5\n", [], ["c.csv", "duplicate column", "train_d0"]),
    ("empty-column-name", "run,train_d0,,train_d2\nr0,0.2,0.3,0.5\n", [], ["c.csv", "empty name"]),
    ("huge-cell", HEADER + "r0," + "x" * 100000 + ",0.5,0.5\n", [], ["c.csv", "train_d0"]),
    ("huge-run-id", HEADER + "r" * 100000 + ",-1,0.5,0.5\n", [], ["c.csv"]),
]


@pytest.mark.parametrize("name,text,flags,fragments", TABLE_CASES, ids=[c[0] for c in TABLE_CASES])
def test_bad_mixture_tables_for_predict(sweep, tmp_path, capsys, name, text, flags, fragments):
    table = _write(tmp_path, "c.csv", text)
    code, err = run_cli(capsys, "predict", "--model", sweep[3]["linear"], "--mixtures", table,
                        "--out", tmp_path / "p.csv", *flags)
    assert_one_line(code, err, *fragments)
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("target,fragments", [("", ["--target", "empty"]), ("   ", ["--target", "empty"])])
def test_empty_target_name(sweep, tmp_path, capsys, target, fragments):
    code, err = run_cli(capsys, "fit", "--mixtures", sweep[1], "--metrics", sweep[2], "--target", target,
                        "--model", "linear", "--out", tmp_path / "m", "--no-progress")
    assert_one_line(code, err, *fragments)
    assert not (tmp_path / "m").exists()


def test_duplicate_metric_columns(sweep, tmp_path, capsys):
    met = _write(tmp_path, "l.csv", "run,metric/target_val_loss,metric/target_val_loss\nr000,1,2\n")
    code, err = run_cli(capsys, "fit", "--mixtures", sweep[1], "--metrics", met, "--target", "target",
                        "--model", "linear", "--out", tmp_path / "m", "--no-progress")
    assert_one_line(code, err, "l.csv", "duplicate column")
