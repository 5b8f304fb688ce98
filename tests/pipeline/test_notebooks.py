"""Each analysis notebook runs top to bottom headless on small settings (REGMIX_NB_SMALL=1), and every
cell that draws a figure shows it as a PNG."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
FIGURES = {"01_fit_analysis.ipynb": 9, "02_mixture_optimization.ipynb": 4}  # figure cells per notebook
ON_DEMO = {"03_merging_and_final_runs.ipynb"}  # reads a demo folder: run in test_demo.py on its quick demo


def test_every_notebook_is_stored_without_outputs_and_known():
    assert {p.name for p in NOTEBOOKS} == set(FIGURES) | ON_DEMO
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), path


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name in FIGURES], ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom_and_draws_its_figures(path, tmp_path, monkeypatch):
    monkeypatch.setenv("REGMIX_NB_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue") if errors else ""
    drawing = [c for c in cells if "fig = plots." in c.source]
    assert len(drawing) == FIGURES.get(path.name, len(drawing))
    for c in drawing:
        pngs = [o for o in c.outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == 1, c.source  # shown once: not lost, not doubled
        assert len(pngs[0]["data"]["image/png"]) > 5000  # a real picture, base64
    assert not list(tmp_path.iterdir())  # a notebook writes nothing where it runs
