"""The README's tour is a script: its commands run as written, in order, in a fresh folder.

Only sizes are shrunk (a smaller sweep, fewer optimizer candidates) so the test takes about a minute;
every command, flag and file name is the README's own, so the tour cannot drift from the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # trains a small sweep


def tour_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Tour\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


SMALL = {  # README text -> the same command at test size
    "--config quick": "--config tiny.yaml",
}


def test_the_tour_starts_by_activating_the_venv_and_uses_shipped_files():
    script = tour_script()
    first = next(line for line in script.splitlines() if line.strip() and not line.startswith("#"))
    assert first.strip().startswith("source .venv/bin/activate")
    for path in set(re.findall(r"\b(examples/[\w./-]+)", script)):
        assert (ROOT / path).is_file(), path
    for text in SMALL:
        assert text in script, text


def test_the_tour_runs_as_written(tmp_path):
    script = tour_script()
    for text, small in SMALL.items():
        script = script.replace(text, small)
    script = re.sub(r"^regmix optimize (.*)$", r"regmix optimize \1 --samples 20000", script, flags=re.M)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "activate").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    (tmp_path / "tiny.yaml").write_text(
        "extends: quick\nn_proxies: 6\ntrain: {steps: 12, batch: 4, seq_len: 64, warmup_steps: 2, eval_windows: 2, "
        "checkpoint_every: 0}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for made in ("runs/store/meta.json", "runs/quick/metrics.csv", "runs/model/model.json", "runs/mixture.json",
                 "runs/blend.txt", "runs/candidates.csv", "runs/predictions.csv"):
        assert (tmp_path / made).is_file(), made
    assert "Traceback" not in proc.stderr
