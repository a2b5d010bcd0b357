"""The notebooks in experiments/notebooks/ run top to bottom against a real kernel in smoke mode
(their parameters cell's SMOKE switch), so a broken cell fails here."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).parent.parent  # the kernel imports this checkout's r1jax
NOTEBOOKS = sorted((REPO / "experiments" / "notebooks").glob("*.ipynb"))


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
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # the kernel's own devices
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)  # raises CellExecutionError naming the cell that failed
    assert any(output.get("output_type") == "display_data" and "image/png" in output["data"]
               for cell in notebook.cells for output in cell.get("outputs", ())), "no figure"
