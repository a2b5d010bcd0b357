"""The notebooks in experiments/notebooks/ run top to bottom against a real kernel in smoke mode
(their parameters cell's SMOKE switch), so a broken cell fails here."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

FOLDER = Path(__file__).parent.parent / "experiments" / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))
_spec = importlib.util.spec_from_file_location("notebook_runner", FOLDER / "run.py")
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)  # what users run the notebooks in full with


def with_parameters(notebook, **values):
    """The notebook with a cell setting ``values`` after its cell tagged "parameters" (what
    papermill injects)."""
    index = next(i for i, cell in enumerate(notebook.cells)
                 if "parameters" in cell.metadata.get("tags", ()))
    lines = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(lines))
    return notebook


def test_every_notebook_has_a_smoke_switch():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        parameters = [c for c in cells if "parameters" in c.metadata.get("tags", ())]
        assert len(parameters) == 1 and "SMOKE = False" in parameters[0].source, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, tmp_path):
    notebook = with_parameters(nbformat.read(path, as_version=4), SMOKE=True,
                               WORKDIR=str(tmp_path / "runs"))
    runner.execute(notebook, timeout=600)  # CellExecutionError names a cell that fails
    assert any(output.get("output_type") == "display_data" and "image/png" in output["data"]
               for cell in notebook.cells for output in cell.get("outputs", ())), "no figure"
