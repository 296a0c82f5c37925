"""`nas search --mlflow` against a real MLflow server (SQLite backend, local artifact folder) that
the module starts on a free localhost port: what the server holds is read back through MLflow's
client and checked against the run directory (trials.jsonl, summary.json, best/model.keras)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from nas_commands import run_nas

REGISTERED = "digits-linear"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        # Without MLflow's job runner (a pool of huey consumers for its GenAI jobs, which nas never
        # starts): tracking and the model registry are the same server without it, and cheaper.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield uri
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="module")
def tracked(server, tmp_path_factory):
    """A 2-child linear search on digits, logged to the server and registered."""
    root = tmp_path_factory.mktemp("tracked")
    result = run_nas(
        "search",
        "--space",
        "linear",
        "--data",
        "digits",
        "--budget",
        "2",
        "--workers",
        "1",  # one worker starting TensorFlow, not two, for two children
        "--epochs",
        "2",
        "--final-epochs",
        "1",
        "--no-dashboard",
        "--name",
        "tracked",
        "--runs-dir",
        "runs",
        "--mlflow",
        server,
        "--mlflow-experiment",
        "digits",
        "--mlflow-register",
        REGISTERED,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=server, registry_uri=server)
    run = root / "runs" / "tracked"
    records = {r["trial"]: r for r in map(json.loads, (run / "trials.jsonl").read_text().splitlines())}
    return client, run, records, result


def children(client, parent):
    experiment = client.get_run(parent).info.experiment_id
    found = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'", max_results=100)
    return {int(r.data.tags["nas.trial"]): r for r in found}


def test_a_parent_run_and_one_nested_run_per_child_as_trials_jsonl_says(tracked):
    client, run, records, result = tracked
    state = json.loads((run / "mlflow.json").read_text())
    parent = client.get_run(state["run_id"])
    assert parent.info.run_name == "tracked" and parent.info.status == "FINISHED"
    assert client.get_experiment(parent.info.experiment_id).name == "digits"
    assert parent.data.params["space"] == "linear" and parent.data.params["budget"] == "2"
    assert "View run" not in result.stdout  # MLflow's own line per ended run is kept off the console
    runs = children(client, parent.info.run_id)
    assert sorted(runs) == sorted(records) == [1, 2]
    for trial, record in records.items():
        child = runs[trial]
        assert child.info.status == "FINISHED" and child.data.tags["nas.status"] == record["status"]
        assert child.data.params == {k: str(v) for k, v in record["values"].items()}
        assert child.data.metrics["reward"] == pytest.approx(record["reward"])
        assert child.data.metrics["val_accuracy"] == pytest.approx(record["metrics"]["val_accuracy"])
        assert child.data.metrics["params"] == record["metrics"]["params"]
        # per epoch, live from the child's reports: the history trials.jsonl keeps
        history = client.get_metric_history(child.info.run_id, "epoch_val_accuracy")
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == pytest.approx(record["metrics"]["val_accuracy_per_epoch"])
        assert len(client.get_metric_history(child.info.run_id, "epoch_loss")) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert parent.data.metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert parent.data.metrics["test_balanced_accuracy"] == pytest.approx(summary["evaluation"]["balanced_accuracy"])
    assert parent.data.tags["nas.best_trial"] == str(summary["best"]["trial"])


def test_the_winner_is_an_artifact_and_a_registered_model(tracked, tmp_path, monkeypatch):
    import keras
    import mlflow.artifacts
    import mlflow.keras

    client, run, records, _ = tracked
    parent = json.loads((run / "mlflow.json").read_text())["run_id"]
    names = {a.path for a in client.list_artifacts(parent)}
    assert {"report.html", "summary.json", "trials.jsonl", "config.json", "export", "model"} <= names
    assert {a.path for a in client.list_artifacts(parent, "export")} >= {"export/model.py", "export/model.keras"}
    (version,) = client.search_model_versions(f"name = '{REGISTERED}'")
    assert version.run_id == parent and version.version == "1"
    # models:/ resolves through the tracking URI; mlflow.set_tracking_uri would also set it for every
    # later command this worker starts
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client._tracking_client.tracking_uri)
    registered = mlflow.keras.load_model(f"models:/{REGISTERED}/1")
    best = keras.saving.load_model(run / "best" / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (16, *best.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(registered.predict(x, verbose=0), best.predict(x, verbose=0), atol=1e-6)
    # model.py from the artifacts rebuilds the winner's architecture
    folder = Path(mlflow.artifacts.download_artifacts(run_id=parent, artifact_path="export", dst_path=str(tmp_path)))
    assert (folder / "model.py").read_text().startswith("# ")


def test_a_resumed_search_logs_only_the_children_its_parent_lacks(tracked):
    """The resume path of the tracker: the parent run is reopened from mlflow.json, and a child
    whose run is gone (as if the killed session recorded it but never logged it) is logged again."""
    from nas.run import read_trials
    from nas.rundir import RunDir
    from nas.tracking import MLflowTracker

    client, run, records, _ = tracked
    state = json.loads((run / "mlflow.json").read_text())
    uri = state["uri"]
    before = children(client, state["run_id"])
    client.delete_run(before[2].info.run_id)
    tracker = MLflowTracker.connect(uri, "digits")
    rundir = RunDir(run)
    tracker.start(rundir, {}, read_trials(rundir))
    after = children(client, state["run_id"])
    assert sorted(after) == [1, 2] and tracker.parent == state["run_id"]
    assert after[1].info.run_id == before[1].info.run_id and after[2].info.run_id != before[2].info.run_id
    history = client.get_metric_history(after[2].info.run_id, "epoch_val_accuracy")
    assert [m.value for m in history] == pytest.approx(records[2]["metrics"]["val_accuracy_per_epoch"])
    # an enas search's supernet epochs, as the parent's metrics (entropy None: the random controller's)
    for epoch, loss in ((1, 2.1), (2, 1.7)):
        tracker.supernet_epoch({"epoch": epoch, "loss": loss, "reward_mean": 0.3, "reward_max": 0.5, "entropy": None})
    losses = client.get_metric_history(state["run_id"], "supernet_loss")
    assert sorted((m.step, m.value) for m in losses) == [(1, pytest.approx(2.1)), (2, pytest.approx(1.7))]
    assert not client.get_metric_history(state["run_id"], "supernet_entropy")
    tracker.end(rundir)
    assert client.get_run(state["run_id"]).info.status == "FINISHED"


def test_a_tracker_failing_mid_search_warns_and_gives_up_without_raising(server, tmp_path):
    from nas import progress
    from nas.rundir import RunDir
    from nas.tracking import MAX_FAILURES, MLflowTracker
    from nas.trial_record import TrialRecord

    tracker = MLflowTracker.connect(server, "doomed")
    rundir = RunDir(tmp_path / "run")
    rundir.path.mkdir()
    tracker.start(rundir, {"space": "linear"}, [])
    tracker.client.delete_experiment(tracker.experiment_id)  # every later call is refused
    record = TrialRecord.from_json(
        {"trial": 1, "status": "completed", "arch": {"choices": [0]}, "values": {}, "reward": 0.5,
         "metrics": {"val_accuracy": 0.5, "params": 10}}
    )  # fmt: skip
    with progress.reporting(progress.Recorder()) as recorder:
        for trial in range(1, MAX_FAILURES + 3):
            tracker.finished(TrialRecord(**{**record.__dict__, "trial": trial}))
        tracker.end(rundir)
    warnings = [line for line in recorder.lines if line.startswith("warning: MLflow")]
    assert len(warnings) == MAX_FAILURES and tracker.disabled
    assert "creating trial 1's run failed" in warnings[0] and "no more MLflow logging" in warnings[-1]
    shutil.rmtree(rundir.path)
