"""Hostile and broken input: one line naming the file or field, exit code 2, never a crash."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
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


# ---- 5. every command, every input kind: contained, one line, bounded ----

HANG_GUARD_S = 60  # a case still running after this is a hang, not a slow case


def run_contained(capsys, tmp_path, argv, out=None):
    """Run in-process under a hang guard; nothing may appear in tmp_path except under `out`."""
    import signal

    before = {p for p in tmp_path.rglob("*")}

    def hang(signum, frame):
        raise TimeoutError(f"regmix {argv[0]} still running after {HANG_GUARD_S} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(HANG_GUARD_S)
    try:
        code, err = run_cli(capsys, *argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    new = {p for p in tmp_path.rglob("*")} - before
    stray = [p for p in new if out is None or not (p == Path(out) or Path(out) in p.parents)]
    assert not stray, f"files created outside the output: {sorted(map(str, stray))[:5]}"
    return code, err


BOMB = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b]\n"
CONFIG_TEXTS = [
    ("alias-bomb", BOMB, "aliases"),
    ("duplicate-key", "seed: 1\nseed: 2\n", "duplicate key"),
    ("not-a-mapping", "- 1\n- 2\n", "mapping"),
    ("bad-yaml", "seed: [1, 2\n", "invalid YAML"),
    ("non-utf8", None, "cannot read"),
    ("deep-nesting", "seed: " + "[" * 200 + "]" * 200 + "\n", "nested deeper"),
    ("python-tag", "seed: !!python/object/apply:os.system [touch PWNED]\n", "invalid YAML"),
    ("bad-date", "seed: 2001-02-30\n", "invalid YAML"),
    ("unknown-key", "zzz_unknown: 1\n", "unknown key 'zzz_unknown'"),
    ("extends-itself", "extends: c.yaml\n", "extends itself"),
    ("extends-missing", "extends: nowhere-at-all.yaml\n", "nowhere-at-all"),
    ("seed-string", "seed: many\n", "seed"),
]
SWEEP_CONFIG_TEXTS = [
    ("n-proxies-negative", "store: demo\nn_proxies: -3\n", "n_proxies"),
    ("model-unknown", "store: demo\nmodel: gigantic\n", "model"),
    ("steps-zero", "store: demo\ntrain: {steps: 0}\n", "steps"),
    ("steps-string", "store: demo\ntrain: {steps: lots}\n", "train.steps"),
    ("store-missing", "store: /nonexistent/store\n", "/nonexistent/store"),
    ("pipeline-config", "corpus: demo\ntarget: mean\n", "pipeline config"),
]
PIPELINE_CONFIG_TEXTS = [
    ("n-proxies-negative", "extends: demo-quick\nsample: {n_proxies: -3}\n", "n_proxies"),
    ("model-unknown", "extends: demo-quick\nsweep: {model: gigantic}\n", "gigantic"),
    ("sweep-config", "store: demo\nn_proxies: 4\n", "sweep config"),
    ("seq-len-string", "extends: demo-quick\nseq_len: long\n", "seq_len"),
]
CONFIG_RUNS = ([(c, *t) for c in ("sweep", "demo", "run") for t in CONFIG_TEXTS]
               + [("sweep", *t) for t in SWEEP_CONFIG_TEXTS]
               + [(c, *t) for c in ("demo", "run") for t in PIPELINE_CONFIG_TEXTS])


@pytest.mark.parametrize("command,name,text,fragment", CONFIG_RUNS, ids=[f"{r[0]}-{r[1]}" for r in CONFIG_RUNS])
def test_bad_configs(tmp_path, capsys, command, name, text, fragment):
    config = tmp_path / "c.yaml"
    if text is None:
        config.write_bytes(b"seed: 1\xff\xfe\n")
    else:
        config.write_text(text)
    out = tmp_path / "out"
    argv = [command, "--config", config, "--out", out] + (["--quiet"] if command == "sweep" else [])
    code, err = run_contained(capsys, tmp_path, argv, out)
    fragments = [fragment] if name in ("store-missing", "extends-missing", "model-unknown") else ["c.yaml", fragment]
    assert_one_line(code, err, *fragments)
    assert not (tmp_path / "PWNED").exists() and not (Path.cwd() / "PWNED").exists()


SPACE_TEXTS = [
    ("alias-bomb", BOMB, ["space.yaml", "aliases"]),
    ("duplicate-bound", "bounds:\n  d0: [0, 1]\n  d0: [0, 0.5]\n", ["space.yaml", "duplicate key"]),
    ("not-a-mapping", "[1, 2]\n", ["space.yaml", "mapping"]),
    ("unknown-key", "boundz: {}\n", ["space.yaml", "boundz"]),
    ("bound-not-a-pair", "bounds: {d0: 0.5}\n", ["space.yaml", "bounds.d0"]),
    ("bound-three-items", "bounds: {d0: [0, 0.5, 1]}\n", ["space.yaml", "bounds.d0"]),
    ("bound-nan", "bounds: {d0: [.nan, 1]}\n", ["space.yaml", "d0"]),
    ("bound-reversed", "bounds: {d0: [0.9, 0.1]}\n", ["space.yaml", "d0"]),
    ("bound-unknown-domain", "bounds: {zz: [0, 1]}\n", ["space.yaml", "zz"]),
    ("prior-negative", "prior: {d0: -1, d1: 1, d2: 1}\n", ["space.yaml", "prior"]),
    ("max-epochs-negative", "max_epochs: -1\ntoken_budget: 1e9\ntokens: {d0: 1e9, d1: 1e9, d2: 1e9}\n",
     ["space.yaml", "max_epochs"]),
    ("token-budget-inf", "max_epochs: 4\ntoken_budget: .inf\ntokens: {d0: 1e9, d1: 1e9, d2: 1e9}\n",
     ["space.yaml", "token_budget"]),
    ("tokens-not-counts", "max_epochs: 4\ntoken_budget: 1e9\ntokens: [1, 2]\n", ["space.yaml", "tokens"]),
    ("huge-integer", f"token_budget: {10 ** 400}\n", ["space.yaml", "token_budget"]),
]
SPACE_RUNS = [(c, *t) for c in ("optimize", "sample") for t in SPACE_TEXTS]


@pytest.mark.parametrize("command,name,text,fragments", SPACE_RUNS, ids=[f"{r[0]}-{r[1]}" for r in SPACE_RUNS])
def test_bad_space_files(sweep, tmp_path, capsys, command, name, text, fragments):
    space = _write(tmp_path, "space.yaml", text)
    out = tmp_path / ("m.json" if command == "optimize" else "s.csv")
    if command == "optimize":
        argv = ["optimize", "--model", sweep[3]["linear"], "--samples", "100", "--space", space, "--out", out,
                "--no-progress"]
    else:
        argv = ["sample", "--space", space, "--domains", "d0,d1,d2", "--n", "8", "--out", out, "--no-progress"]
    code, err = run_contained(capsys, tmp_path, argv, out)
    assert_one_line(code, err, *fragments)
    assert not out.exists()


def _store(tmp_path):
    from regmix.corpus.store import write_store

    rng = np.random.default_rng(0)
    arrays = {d: (rng.integers(0, 256, 3000), rng.integers(0, 256, 300)) for d in ("d0", "d1", "d2")}
    write_store(tmp_path / "store", arrays, vocab_size=257, eod_id=256)
    return tmp_path / "store"


def _meta_edit(edit):
    def apply(store):
        meta = json.loads((store / "meta.json").read_text())
        (store / "meta.json").write_text(json.dumps(edit(meta)))
    return apply


def _rename_domain(new):
    def edit(meta):
        meta["domains"] = {new if d == "d0" else d: v for d, v in meta["domains"].items()}
        return meta
    return edit


STORE_CASES = [
    ("meta-not-json", lambda s: (s / "meta.json").write_text("{nope"), ["meta.json"]),
    ("meta-a-list", lambda s: (s / "meta.json").write_text("[]"), ["meta.json", "JSON object"]),
    ("format-2", _meta_edit(_set(["format"], 2)), ["meta.json", "format"]),
    ("dtype-bad", _meta_edit(_set(["dtype"], "float64")), ["meta.json", "dtype"]),
    ("vocab-string", _meta_edit(_set(["vocab_size"], "many")), ["meta.json", "vocab_size"]),
    ("eod-outside", _meta_edit(_set(["eod_id"], 9999)), ["meta.json", "eod_id"]),
    ("vocab-too-big-for-dtype", _meta_edit(_set(["vocab_size"], 10 ** 7)), ["meta.json", "vocab_size"]),
    ("train-tokens-string", _meta_edit(_set(["domains", "d0", "train_tokens"], "x")), ["meta.json", "train_tokens"]),
    ("train-tokens-negative", _meta_edit(_set(["domains", "d0", "train_tokens"], -5)), ["meta.json", "train_tokens"]),
    ("domain-dotdot", _meta_edit(_rename_domain("../../outside")), ["meta.json", "domain name"]),
    ("domain-meta-json", _meta_edit(_rename_domain("meta.json")), ["meta.json", "domain name"]),
    ("domain-absolute", _meta_edit(_rename_domain("/etc")), ["meta.json", "domain name"]),
    ("token-file-missing", lambda s: (s / "d0" / "train.bin").unlink(), ["train.bin", "missing"]),
]


@pytest.mark.parametrize("name,tamper,fragments", STORE_CASES, ids=[c[0] for c in STORE_CASES])
def test_tampered_token_store_for_a_sweep(tmp_path, capsys, name, tamper, fragments):
    store = _store(tmp_path)
    tamper(store)
    config = _write(tmp_path, "sweep.yaml", f"store: {store}\nn_proxies: 2\nmodel: tiny\n")
    out = tmp_path / "out"
    code, err = run_contained(capsys, tmp_path, ["sweep", "--config", config, "--out", out, "--quiet"], out)
    assert_one_line(code, err, *fragments)
    assert not (out / "sweep.json").exists()


TOKEN_STORE_CASES = STORE_CASES[:1] + [
    ("domains-a-list", _meta_edit(_set(["domains"], [1, 2])), ["meta.json"]),
    ("count-string", _meta_edit(_set(["domains", "d0", "train_tokens"], "x")), ["meta.json", "d0"]),
    ("count-negative", _meta_edit(_set(["domains", "d0", "train_tokens"], -1)), ["meta.json", "d0"]),
]


@pytest.mark.parametrize("command", ["optimize", "export"])
@pytest.mark.parametrize("name,tamper,fragments", TOKEN_STORE_CASES, ids=[c[0] for c in TOKEN_STORE_CASES])
def test_tampered_token_store_as_tokens(sweep, tmp_path, capsys, command, name, tamper, fragments):
    store = _store(tmp_path)
    tamper(store)
    caps = ["--token-budget", "1e9", "--tokens", store, "--max-epochs", "4"]
    out = tmp_path / "o.json"
    if command == "optimize":
        argv = ["optimize", "--model", sweep[3]["linear"], "--samples", "100", "--out", out, "--no-progress", *caps]
    else:
        argv = ["export", _mixture_json(tmp_path), "--format", "json", "--out", out, *caps]
    code, err = run_contained(capsys, tmp_path, argv, out)
    assert_one_line(code, err, *fragments)


def _jsonl(path, docs):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))


DOC = "alpha beta gamma delta " * 20


def _corpus_two(root):
    _jsonl(root / "web" / "a.jsonl", [DOC] * 3)
    _jsonl(root / "code" / "a.jsonl", [DOC] * 3)


def _regmix_named(name):
    def make(root):
        _jsonl(root / "train" / "web-0.jsonl", [DOC] * 3)
        _jsonl(root / "train" / f"{name}-0.jsonl", [DOC] * 3)
    return make


def _extra_folder(name):
    def make(root):
        _corpus_two(root)
        _jsonl(root / name / "a.jsonl", [DOC] * 3)
    return make


def _corrupt_gz(root):
    _corpus_two(root)
    (root / "web" / "b.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage-not-gzip")


def _garbage_parquet(root):
    _corpus_two(root)
    (root / "web" / "b.parquet").write_bytes(b"PAR1 not really parquet")


def _no_valid_docs(root):
    _corpus_two(root)
    (root / "web" / "a.jsonl").write_text('{"txt": "x"}\n[1, 2]\nnot json\n')


def _empty_domain(root):
    _corpus_two(root)
    (root / "empty").mkdir()
    (root / "empty" / "notes.md").write_text("not corpus input")


def _symlink_domain(root):
    _corpus_two(root)
    outside = root.parent / "outside"
    _jsonl(outside / "a.jsonl", [DOC])
    (root / "..evil").symlink_to(outside)


CORPUS_CASES = [
    ("regmix-dotdot", _regmix_named(".."), [], ["'..'"]),
    ("regmix-dot", _regmix_named("."), [], ["domain name"]),
    ("regmix-meta-json", _regmix_named("meta.json"), [], ["meta.json", "store's own files"]),
    ("regmix-tokenizer-json", _regmix_named("tokenizer.json"), [], ["tokenizer.json", "domain name"]),
    ("regmix-control-char", _regmix_named("we\x01b"), [], ["control character"]),
    ("folder-meta-json", _extra_folder("meta.json"), [], ["meta.json", "domain name"]),
    ("folder-tokenizer-json", _extra_folder("tokenizer.json"), [], ["tokenizer.json", "domain name"]),
    ("folder-newline", _extra_folder("we\nb"), [], ["control character"]),
    ("folder-long-name", _extra_folder("d" * 230), [], ["characters; a domain needs a plain name"]),
    ("corrupt-gz", _corrupt_gz, [], ["b.jsonl.gz", "corrupt"]),
    ("garbage-parquet", _garbage_parquet, [], ["b.parquet"]),
    ("no-usable-docs", _no_valid_docs, [], ["web", "no training documents"]),
    ("empty-domain", _empty_domain, [], ["empty", "no .txt"]),
    ("no-domains", lambda root: root.mkdir(), [], ["no domain folders"]),
    ("missing-corpus", lambda root: None, [], ["corpus folder not found"]),
    ("too-short", _corpus_two, ["--seq-len", "100000"], ["fewer than one training sequence"]),
    ("valid-fraction-1.5", _corpus_two, ["--valid-fraction", "1.5"], ["valid_fraction"]),
    ("tokenizer-garbage", _corpus_two, ["--tokenizer", "bpe:x"], ["bpe:x"]),
    ("tokenizer-file-garbage", _corpus_two, ["--tokenizer", "TOKFILE"], ["tok.json"]),
]


@pytest.mark.parametrize("name,make,flags,fragments", CORPUS_CASES, ids=[c[0] for c in CORPUS_CASES])
def test_hostile_corpora_for_prepare(tmp_path, capsys, name, make, flags, fragments):
    root = tmp_path / "corpus"
    make(root)
    if "TOKFILE" in flags:
        _write(tmp_path, "tok.json", "{not a tokenizer")
        flags = ["--tokenizer", str(tmp_path / "tok.json")]
    out = tmp_path / "store"
    argv = ["prepare", "--corpus", root, "--out", out, "--seq-len", "16", "--no-progress", *flags]
    code, err = run_contained(capsys, tmp_path, argv, out)
    assert_one_line(code, err, *fragments)
    assert not (out / "meta.json").exists()


TEMPLATES = [
    ("attribute", "{domain.__class__.__mro__}"),
    ("unclosed", "{domain"),
    ("other-field", "{dom}"),
    ("positional", "{}"),
    ("index", "{0}"),
    ("conversion", "{domain!r}"),
    ("huge-spec", "{domain:>99999999}"),
    ("no-field", "/data/all"),
    ("lone-brace", "/data/}{domain}"),
    ("item", "{domain[0]}"),
]


@pytest.mark.parametrize("name,template", TEMPLATES, ids=[t[0] for t in TEMPLATES])
def test_path_templates_take_only_domain(tmp_path, capsys, name, template):
    out = tmp_path / "o.json"
    code, err = run_contained(capsys, tmp_path, ["export", _mixture_json(tmp_path), "--format", "hf", "--out", out,
                                                 "--path-template", template], out)
    assert_one_line(code, err, "--path-template")
    assert not out.exists()


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory):
    """A sweep folder as `regmix sweep` leaves it after planning (sweep.json, mixtures.csv), no training."""
    from proxies.config import SweepConfig
    from proxies.sweep import create_sweep, group_dir
    from regmix.config import load_config

    tmp = tmp_path_factory.mktemp("sweepdir")
    store = _store(tmp)
    config = _write(tmp, "sweep.yaml", f"store: {store}\nn_proxies: 2\nmodel: tiny\nsampler: uniform\n"
                                       "train: {steps: 4, batch: 2, seq_len: 16, eval_windows: 2, eval_batch: 2}\n"
                                       "run: {workers: 1, group_size: 1}\n")
    out = tmp / "out"
    out.mkdir()
    record = create_sweep(load_config(SweepConfig, config), out, str(config))
    result = {"runs": ["p0000"], "eval_domains": record["eval_domains"], "val_loss": [[5.0, 5.0, 5.0]],
              "bpb": [[7.0, 7.0, 7.0]], "diverged": [False], "steps": [4], "tokens": [128], "seconds": 1.0}
    group_dir(out, 0).mkdir(parents=True)
    (group_dir(out, 0) / "result.json").write_text(json.dumps(result))
    return config, out


def _json_edit(name, edit):
    def apply(out):
        path = out / name
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return apply


SWEEP_DIR_CASES = [
    ("sweep-json-not-json", lambda o: (o / "sweep.json").write_text("{nope"), ["sweep.json", "cannot read"]),
    ("sweep-json-a-list", lambda o: (o / "sweep.json").write_text("[1]"), ["sweep.json", "JSON object"]),
    ("sweep-json-no-config", _json_edit("sweep.json", lambda r: {k: v for k, v in r.items() if k != "config"}),
     ["sweep.json", "'config'"]),
    ("sweep-json-groups-strings", _json_edit("sweep.json", _set(["groups"], [["a"], ["b"]])), ["sweep.json", "groups"]),
    ("result-not-json", lambda o: (o / "groups/g0000/result.json").write_text("{"), ["result.json", "cannot read"]),
    ("result-a-list", lambda o: (o / "groups/g0000/result.json").write_text("[]"), ["result.json", "JSON object"]),
    ("result-no-runs", _json_edit("groups/g0000/result.json", lambda r: {k: v for k, v in r.items() if k != "runs"}),
     ["result.json", "'runs'"]),
    ("result-wrong-length", _json_edit("groups/g0000/result.json", _set(["runs"], ["p0000", "p0001"])),
     ["result.json", "runs"]),
    ("result-loss-strings", _json_edit("groups/g0000/result.json", _set(["val_loss"], [["x", "y", "z"]])),
     ["result.json", "val_loss"]),
    ("result-loss-short", _json_edit("groups/g0000/result.json", _set(["bpb"], [[1.0]])), ["result.json", "bpb"]),
]


@pytest.mark.parametrize("name,tamper,fragments", SWEEP_DIR_CASES, ids=[c[0] for c in SWEEP_DIR_CASES])
def test_tampered_sweep_folder(sweep_folder, tmp_path, capsys, name, tamper, fragments):
    config, clean = sweep_folder
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    tamper(out)
    code, err = run_contained(capsys, tmp_path, ["sweep", "--config", config, "--out", out, "--quiet"], out)
    assert_one_line(code, err, *fragments)
    assert not (out / "groups" / "g0001" / "result.json").exists()  # refused before any training


def test_fit_keeps_a_users_partial_folder(sweep, tmp_path, capsys):
    mine = tmp_path / "m.partial"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    code, err = run_cli(capsys, "fit", "--mixtures", sweep[1], "--metrics", sweep[2], "--target", "target",
                        "--folds", "2", "--model", "linear", "--out", tmp_path / "m", "--no-progress")
    assert code == 0, err
    assert (mine / "notes.txt").read_text() == "mine\n"


RUN_FLAGS = [
    (["bench", "proxies", "--workers", "-3"], "--workers"),
    (["bench", "proxies", "--group-size", "-1"], "--group-size"),
    (["bench", "proxies", "--memory-budget-gb", "nan"], "--memory-budget-gb"),
    (["bench", "proxies", "--n-proxies", "0"], "--n-proxies"),
    (["bench", "proxies", "--preset", "huge"], "huge"),
    (["sweep", "--config", "quick", "--out", "OUT", "--workers", "-3"], "--workers"),
    (["sweep", "--config", "quick", "--out", "OUT", "--n-proxies", "0"], "n_proxies"),
    (["run", "--config", "demo-quick", "--out", "OUT", "--stage", "nope"], "unknown stage"),
    (["run", "--config", "demo-quick", "--out", "OUT", "--force"], "--force needs --stage"),
]


@pytest.mark.parametrize("argv,fragment", RUN_FLAGS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in RUN_FLAGS])
def test_bad_flags_of_the_training_commands(tmp_path, capsys, argv, fragment):
    out = tmp_path / "out"
    code, err = run_contained(capsys, tmp_path, [str(out) if a == "OUT" else a for a in argv], out)
    assert_one_line(code, err, fragment)
    assert not out.exists()


def test_prepare_never_writes_into_a_folder_of_other_files(tmp_path, capsys):
    root = tmp_path / "corpus"
    _corpus_two(root)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "meta.json.bak").write_text("keep\n")
    (out / "tokenizer.json").write_text("keep\n")
    code, err = run_contained(capsys, tmp_path, ["prepare", "--corpus", root, "--out", out, "--no-progress"], None)
    assert_one_line(code, err, str(out), "not a token store")
    assert sorted(p.name for p in out.iterdir()) == ["meta.json.bak", "tokenizer.json"]
    code, err = run_contained(capsys, tmp_path, ["prepare", "--corpus", root, "--out", root, "--no-progress"], None)
    assert_one_line(code, err, "not a token store")  # the corpus itself is not an output
