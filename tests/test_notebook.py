"""nas in Jupyter, on one real kernel (ipykernel) driven by nbclient as a notebook user runs it:
examples/quickstart.ipynb, cell after cell; then, in the same kernel (TensorFlow imported once), a
search the kernel's interrupt stops (what the stop button sends), resumed in a Ray session the
notebook started. Every search cell shows nas's live status, updated in place, and no Ray worker
logs or TensorFlow messages."""

import asyncio
import json
import re
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nas_commands import nas_env
from nbclient import NotebookClient

import nas

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # rich's styles in a display's text/plain, IPython's in a traceback
STATUS = re.compile(r"trials .* (\d+)/(\d+) .*failed \d+  best .* elapsed .* eta ")  # nas's live status


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A notebook client on one kernel, started in its own directory with the user's environment: no
    RAY_ADDRESS or NAS_TEST_FAULTS, and without the suite's TF_CPP_MIN_LOG_LEVEL, which would hide
    TensorFlow's messages from the spam check."""
    cwd = tmp_path_factory.mktemp("notebook")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    env = {k: v for k, v in nas_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    with client.setup_kernel(env=env):
        yield client, cwd


def run_cell(client, source: str, raises: bool = False):
    """Appends a code cell to the client's notebook and executes it; returns the cell."""
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["raises-exception"]} if raises else {})
    client.nb.cells.append(cell)
    client.execute_cell(cell, len(client.nb.cells) - 1)
    return cell


def texts(cell) -> list[str]:
    """The text of each output of a cell (a rich line in Jupyter is a display_data output)."""
    return [
        ANSI.sub("", o.get("text") or o.get("data", {}).get("text/plain", "") or o.get("evalue", ""))
        for o in cell.outputs
    ]


def check_search_cell(cell) -> str:
    """No stream output (Ray's worker logs, TensorFlow's or Ray's messages all arrive as stream
    output); one live status display, in HTML and text, updated in place after it was shown, since
    the trials' lines come after it. Returns the status's final text."""
    streams = [o.text for o in cell.outputs if o.output_type == "stream"]
    assert not streams, streams
    statuses = [i for i, text in enumerate(texts(cell)) if STATUS.search(text)]
    assert len(statuses) == 1, texts(cell)
    status = cell.outputs[statuses[0]]
    assert status.output_type == "display_data" and "<pre" in status.data["text/html"]
    trial_lines = [i for i, text in enumerate(texts(cell)) if re.match(r"\[\s*\d+/\d+\] trial", text)]
    assert trial_lines and statuses[0] < trial_lines[0]
    return status.data["text/plain"]


def test_the_quickstart_notebook_runs_on_a_real_kernel(kernel):
    client, cwd = kernel
    notebook = client.nb
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed bare
    for index, cell in enumerate(notebook.cells):
        client.execute_cell(cell, index)  # raises CellExecutionError, with the cell's traceback, if a cell fails
    (run,) = [nas.open_run(p) for p in (cwd / "runs").iterdir() if (p / "config.json").exists()]
    assert run.status == "finished" and len(run.trials) == 2 and run.test_accuracy > 0.5
    shown = notebook.cells[-1].outputs[-1]["data"]["text/plain"]  # (labels, true labels) of 8 images
    assert shown.startswith("(['") and (cwd / "runs" / "quickstart-model" / "model.keras").is_file()
    search = notebook.cells[2]
    assert texts(search)[0].startswith("nas search") and "  budget" in texts(search)[2]  # the settings stay
    assert STATUS.search(check_search_cell(search)).groups() == ("2", "2")


def test_a_kernel_interrupt_stops_a_search_as_ctrl_c_does_and_resume_finishes_it(kernel):
    """The interrupt comes while trial 2 trains (slowly, on purpose: 5 s a step), in a Ray nas started;
    the resumed search runs in a Ray the notebook started, which sends its workers' logs to the notebook."""
    client, cwd = kernel
    run = cwd / "runs" / "stopped"
    settings = "space='linear', budget=3, epochs=1, final_epochs=1, workers=1, seed=0, dashboard=False"
    run_cell(client, "import os\n\nimport nas\n\nos.environ['NAS_TEST_FAULTS'] = '2:slow'")
    sent, cell_ended = {}, threading.Event()

    def interrupt_while_trial_2_trains():
        while not cell_ended.is_set():
            try:
                running = [t["trial"] for t in json.loads((run / "state.json").read_text())["running"]]
                if (run / "trials.jsonl").read_text().strip() and running == [2]:
                    asyncio.run(client.km.interrupt_kernel())  # as Jupyter's stop button: SIGINT to the kernel
                    sent["at"] = time.monotonic()
                    return
            except (OSError, ValueError):  # not written yet, or being replaced
                pass
            time.sleep(0.1)

    watcher = threading.Thread(target=interrupt_while_trial_2_trains, daemon=True)
    watcher.start()
    stopped = run_cell(client, f"nas.search(data='digits', name='stopped', runs_dir='runs', {settings})", raises=True)
    ended = time.monotonic()
    cell_ended.set()
    watcher.join()
    assert "at" in sent, texts(stopped)
    assert ended - sent["at"] < 60  # trial 2 alone would take minutes
    (error,) = [o for o in stopped.outputs if o.output_type == "error"]
    assert error.ename == "SearchInterrupted" and error.evalue.startswith("interrupted after 1 finished trials")
    traceback = ANSI.sub("", "\n".join(error.traceback))
    assert "During handling" not in traceback and not re.search(r"File \S*/ray/", traceback), traceback  # nas's own
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert [t["trial"] for t in json.loads((run / "state.json").read_text())["running"]] == [2]
    assert STATUS.search(check_search_cell(stopped)).groups() == ("1", "3")

    run_cell(
        client,
        "import ray\n\n"
        "del os.environ['NAS_TEST_FAULTS']\n"
        "ray.init(address='local', num_cpus=2, include_dashboard=False)  # log_to_driver: workers' logs come here",
    )
    resumed = run_cell(
        client,
        "run = nas.search(name='stopped', runs_dir='runs', resume=True)\n"
        "run.status, sorted(t.trial for t in run.trials)",
    )
    run_cell(client, "ray.shutdown()")
    assert texts(resumed)[-1] == "('finished', [1, 2, 3])"
    assert [json.loads(line)["trial"] for line in (run / "trials.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert any("running again 2, which the last run left unfinished" in text for text in texts(resumed))
    assert STATUS.search(check_search_cell(resumed)).groups() == ("3", "3")
