"""examples/quickstart.ipynb, executed headless by nbclient on a real Jupyter kernel (ipykernel), as a
notebook user runs it: every cell must run without error, and the run it made must be on disk."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

import nas

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_on_a_real_kernel(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed bare
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()  # raises CellExecutionError, with the cell's traceback, if a cell fails
    (run,) = [nas.open_run(p) for p in (tmp_path / "runs").iterdir() if (p / "config.json").exists()]
    assert run.status == "finished" and len(run.trials) == 2 and run.test_accuracy > 0.5
    shown = notebook.cells[-1].outputs[-1]["data"]["text/plain"]  # (labels, true labels) of 8 images
    assert shown.startswith("(['") and (tmp_path / "runs" / "quickstart-model" / "model.keras").is_file()
