"""A tampered model folder is one line and exit 2, never a crash inside LightGBM or the compiled trees."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers_tables import synthetic_sweep

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tree")
    mix, met, w, _ = synthetic_sweep(tmp, n=48, k=3)
    out = tmp / "model"
    proc = subprocess.run([sys.executable, "-m", "regmix", "fit", "--mixtures", mix, "--metrics", met, "--target",
                           "target", "--model", "lightgbm", "--folds", "3", "--out", out], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cands = tmp / "cands.csv"
    frame = pd.DataFrame(np.random.default_rng(0).dirichlet(np.ones(3), 12_000), columns=[f"train_d{j}" for j in range(3)])
    frame.insert(0, "run", [f"c{i}" for i in range(len(frame))])
    frame.to_csv(cands, index=False)  # over 10,000 rows: the compiled path
    return out, cands


def tree_file(folder: Path) -> Path:
    return sorted(folder.glob("*.lgb.txt"))[0]


def predict(folder: Path, cands: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regmix", "predict", "--model", folder, "--mixtures", cands,
                           "--out", out], capture_output=True, text=True, timeout=120)


def truncate_mid(text):
    return text[: len(text) // 2]


def cut_before_tree(text):
    return text[: text.index("\nTree=1")] + "\n\nend of trees\n"


def feature_9(text):
    return re.sub(r"^split_feature=(\d+)", "split_feature=9", text, count=1, flags=re.M)


def child_out(text):
    return re.sub(r"^left_child=(-?\d+)", "left_child=77", text, count=1, flags=re.M)


def short_leaves(text):
    return re.sub(r"^leaf_value=(\S+) ", "leaf_value=", text, count=1, flags=re.M)


def header_features(text):
    return text.replace("max_feature_idx=2", "max_feature_idx=8", 1)


def garbage(text):
    return "not a model\n"


@pytest.mark.parametrize("tamper, says", [
    (truncate_mid, "truncated"), (cut_before_tree, "tree"), (feature_9, "feature 9 of 3"),
    (child_out, "outside the tree"), (short_leaves, "leaf_value"), (header_features, "9 features"),
    (garbage, "not a LightGBM text model"),
])
def test_tampered_tree_files_are_one_line(model, tmp_path, tamper, says):
    folder, cands = model
    bad = tmp_path / "model"
    shutil.copytree(folder, bad)
    path = tree_file(bad)
    path.write_text(tamper(path.read_text()))
    proc = predict(bad, cands, tmp_path / "p.csv")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("regmix: error:") and says in lines[0], proc.stderr
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("name", ["../outside.lgb.txt", "/etc/passwd", "sub/x.lgb.txt", ""])
def test_model_json_names_only_files_inside_its_folder(model, tmp_path, name):
    folder, cands = model
    bad = tmp_path / "model"
    shutil.copytree(folder, bad)
    shutil.copy(tree_file(bad), tmp_path / "outside.lgb.txt")
    meta = json.loads((bad / "model.json").read_text())
    meta["full"][0]["files"][0] = name
    (bad / "model.json").write_text(json.dumps(meta))
    proc = predict(bad, cands, tmp_path / "p.csv")
    assert proc.returncode == 2 and "model folder" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_the_untampered_model_still_predicts(model, tmp_path):
    folder, cands = model
    proc = predict(folder, cands, tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(tmp_path / "p.csv")) == 12_000
