"""MLflow tracking of a search: the search is a parent run, each child a nested run under it.

    tracker = MLflowTracker.connect(uri, experiment="nas", register=None)   # InputError if unreachable
    tracker.start(rundir, settings, records)      # the parent run (reopened on --resume)
    tracker.epoch(trial, result)                  # a running child's epoch: its nested run's metrics
    tracker.finished(record)                      # a finished child: decisions as params, metrics, status
    tracker.end(rundir)                           # the winner's test metrics, report and model; registry

What each run holds:
    parent   params: the search's settings; metrics: the winner's test accuracy, balanced accuracy,
             macro F1, validation accuracy and reward; artifacts: report.html, summary.json,
             trials.jsonl, config.json, export/ (the model directory `nas export` writes, model.py
             included) and model/ (an MLflow Keras model, which --mlflow-register registers)
    child    params: its decisions ("layer0.filters", ...); metrics per epoch (epoch_loss,
             epoch_accuracy, epoch_val_loss, epoch_val_accuracy, stepped by epoch) and at the end
             (reward, val_accuracy, params, latency_ms, fit_seconds, ...); tags nas.trial, nas.status

Everything goes through an `MlflowClient` (never MLflow's active-run state, which belongs to the
caller of `nas.search`), from the driver, so children on other nodes of a cluster need no access
to the tracking server. The server is checked once before the search starts (InputError, exit 2); a
call that fails later costs a warning, never the search: after `MAX_FAILURES` failures in a row the
tracker stops trying. The parent run's id is kept in the run directory (`mlflow.json`), so a resumed
search goes on logging into the same parent and logs the children its killed session had not.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from nas import progress
from nas.errors import InputError
from nas.rundir import RunDir
from nas.trial_record import TrialRecord, is_number

STATE_FILE = "mlflow.json"
MAX_FAILURES = 3  # calls failing in a row before the tracker gives up for the rest of the search
EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")  # logged as epoch_<key>, stepped by epoch
RUN_STATUS = {"completed": "FINISHED", "stopped": "FINISHED", "failed": "FAILED"}
END_STATUS = {"finished": "FINISHED", "interrupted": "KILLED"}  # anything else: FAILED


@contextmanager
def _http(retries: int, timeout: int):
    """MLflow's REST client retries a refused request 7 times with backoff by default (minutes):
    a search should learn in seconds that the server is down."""
    values = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout),
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # a "View run" line per ended child, else
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class MLflowTracker:
    def __init__(self, client, uri: str, experiment_id: str, register: str | None):
        self.client = client
        self.uri = uri
        self.experiment_id = experiment_id
        self.register = register
        self.parent: str | None = None
        self.children: dict[int, str] = {}  # trial -> its nested run, while it runs
        self.epochs_logged: set[int] = set()
        self.failures = 0
        self.disabled = False

    # -- set-up: everything checked before the search starts -------------------------------------------

    @classmethod
    def connect(cls, uri: str, experiment: str = "nas", register: str | None = None) -> MLflowTracker:
        """A tracker on the server or store at `uri`, with its experiment (created if new); InputError
        in one line if MLflow is not installed, the server cannot be reached or refuses."""
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise InputError(
                f"mlflow: {uri}: MLflow is not installed, expected it with pip install 'nas[mlflow]'"
            ) from None
        if not experiment or not experiment.strip():
            raise InputError(f"mlflow_experiment: got {experiment!r}, expected an experiment name")
        _check_reachable(uri)
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            with _http(retries=0, timeout=10):
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    experiment_id = client.create_experiment(experiment)
                elif found.lifecycle_stage != "active":
                    raise InputError(
                        f"mlflow_experiment: {experiment!r} is deleted on {uri}; expected an active experiment "
                        "(restore it, or name another)"
                    )
                else:
                    experiment_id = found.experiment_id
                if register:
                    client.search_registered_models(max_results=1)  # a store without a registry refuses
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - MlflowException, an unsupported scheme, a bad store ...
            raise InputError(
                f"mlflow: {uri}: the tracking server or store refused ({type(e).__name__}: {_one_line(e, 160)}), "
                "expected an MLflow server (http://HOST:PORT) or a local store (file: or sqlite: URI)"
            ) from None
        return cls(client, uri, experiment_id, register)

    def start(self, rundir: RunDir, settings: dict[str, Any], records: list[TrialRecord]) -> None:
        """Opens the search's parent run, or reopens the one a resumed run logged into, and logs the
        finished children it has not seen (those a killed session recorded but did not log)."""
        saved = _read_state(rundir)
        logged: set[int] | None = set()
        if saved and saved.get("uri") == self.uri and saved.get("experiment_id") == self.experiment_id:
            self.parent = saved["run_id"]
            self._call("reopening the parent run", self.client.update_run, self.parent, status="RUNNING")
            logged = self._call("reading the logged children", self._logged_children)
            if logged is None:  # not known: logging them all again could duplicate them
                return
        else:
            from mlflow.entities import Param

            run = self._call(
                "creating the parent run",
                self.client.create_run,
                self.experiment_id,
                run_name=rundir.name,
                tags={"nas.run": rundir.name, "nas.run_dir": str(rundir.path), "mlflow.source.name": "nas search"},
            )
            if run is None:
                return
            self.parent = run.info.run_id
            rundir.write_json(STATE_FILE, {"uri": self.uri, "experiment_id": self.experiment_id, "run_id": self.parent})
            progress.reporter().text(
                f"MLflow: run {rundir.name} ({self.parent}) in experiment {self.experiment_id} at {self.uri}"
            )
            params = [Param(k, _param(v)) for k, v in sorted(settings.items()) if _is_plain(v)]
            self._call("logging the settings", self._log_batch, self.parent, params=params)
        for record in records:
            if record.trial not in logged:
                self.finished(record)

    def _logged_children(self) -> set[int]:
        """The trials with a nested run that ended; runs left RUNNING by a killed session are marked
        KILLED (their trials run again under new runs)."""
        done = set()
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], f"tags.mlflow.parentRunId = '{self.parent}'", max_results=1000, page_token=token
            )
            for run in page:
                trial = int(run.data.tags.get("nas.trial", 0))
                if run.info.status == "RUNNING":
                    self.client.set_terminated(run.info.run_id, status="KILLED")
                elif trial:
                    done.add(trial)
            token = page.token
            if not token:
                return done

    # -- during the search -------------------------------------------------------------------------------

    def epoch(self, trial, result: dict[str, Any]) -> None:
        """One epoch of a running child (from Ray Tune's results): its nested run is created at the first."""
        run_id = self._child(trial.number)
        if run_id is None:
            return
        from mlflow.entities import Metric

        step, now = int(result["epoch"]), _millis()
        metrics = [Metric(f"epoch_{k}", float(result[k]), now, step) for k in EPOCH_KEYS if is_number(result.get(k))]
        if self._call(f"logging trial {trial.number}'s epoch {step}", self._log_batch, run_id, metrics=metrics):
            self.epochs_logged.add(trial.number)

    def supernet_epoch(self, record: dict[str, Any]) -> None:
        """One epoch of an enas search's supernet phase, as the parent run's `supernet_*` metrics."""
        if not self.parent:
            return
        from mlflow.entities import Metric

        from nas.tensorboard import SUPERNET_KEYS

        step, now = int(record["epoch"]), _millis()
        metrics = [
            Metric(f"supernet_{k}", float(record[k]), now, step) for k in SUPERNET_KEYS if is_number(record.get(k))
        ]
        self._call(f"logging the supernet's epoch {step}", self._log_batch, self.parent, metrics=metrics)

    def finished(self, record: TrialRecord) -> None:
        """A finished child: its decisions, final metrics and status; its run ends."""
        run_id = self._child(record.trial)
        if run_id is None:
            return
        from mlflow.entities import Metric, Param, RunTag

        now = _millis()
        metrics = [Metric("reward", record.reward, now, 0)]
        for key, value in record.metrics.to_json().items():
            if is_number(value):
                metrics.append(Metric(key, float(value), now, 0))
        if record.trial not in self.epochs_logged:  # not seen running (logged after a resume, say)
            metrics += [
                Metric("epoch_val_accuracy", v, now, step)
                for step, v in enumerate(record.metrics.val_accuracy_per_epoch, 1)
            ]
        params = [Param(k, _param(v)) for k, v in sorted(record.values.items())]
        tags = [RunTag("nas.status", record.status)]
        if record.error:
            tags.append(RunTag("nas.error", record.error[:5000]))
        if self._call(f"logging trial {record.trial}", self._log_batch, run_id, metrics, params, tags):
            self._call(
                f"ending trial {record.trial}'s run", self.client.set_terminated, run_id, RUN_STATUS[record.status]
            )
        self.children.pop(record.trial, None)
        self.epochs_logged.discard(record.trial)

    def _child(self, trial: int) -> str | None:
        if trial not in self.children and self.parent and not self.disabled:
            run = self._call(
                f"creating trial {trial}'s run",
                self.client.create_run,
                self.experiment_id,
                run_name=f"trial {trial}",
                tags={"mlflow.parentRunId": self.parent, "nas.trial": str(trial)},
            )
            if run is not None:
                self.children[trial] = run.info.run_id
        return self.children.get(trial)

    # -- the end --------------------------------------------------------------------------------------

    def end(self, rundir: RunDir) -> None:
        """The search's outcome from its run directory: the winner's metrics, the report and the model
        as artifacts, the registered model version; the parent run ends with the search's status."""
        from nas.run import read_summary

        if not self.parent or self.disabled:
            return
        summary = read_summary(rundir) or {}
        status = summary.get("status", "failed")
        for trial, run_id in list(self.children.items()):  # left running by an interrupt
            self._call(f"ending trial {trial}'s run", self.client.set_terminated, run_id, "KILLED")
        self.children.clear()
        if status == "finished":
            self._call("logging the winner", self._log_winner, rundir, summary)
        self._call("ending the parent run", self.client.set_terminated, self.parent, END_STATUS.get(status, "FAILED"))

    def _log_winner(self, rundir: RunDir, summary: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        now = _millis()
        best = summary.get("best") or {}
        evaluation = summary.get("evaluation") or {}
        values = {
            "test_accuracy": summary.get("test_accuracy"),
            "test_balanced_accuracy": evaluation.get("balanced_accuracy"),
            "test_macro_f1": evaluation.get("macro_f1"),
            "best_val_accuracy": best.get("val_accuracy"),
            "best_reward": best.get("reward"),
            "best_params": best.get("params"),
            "trials_completed": summary.get("trials_completed"),
            "trials_failed": summary.get("trials_failed"),
            "wall_seconds": summary.get("wall_seconds"),
        }
        metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if is_number(v)]
        tags = [RunTag("nas.best_trial", str(best.get("trial")))]
        self._log_batch(self.parent, metrics, tags=tags)
        for name in ("report.html", "summary.json", "trials.jsonl", "config.json"):
            if rundir.file(name).is_file():
                self.client.log_artifact(self.parent, str(rundir.file(name)))
        with tempfile.TemporaryDirectory(prefix="nas-mlflow-") as tmp:
            from nas.export import export_run

            with progress.reporting(progress.SILENT):
                export = export_run(str(rundir.path), out=Path(tmp) / "export")
            self.client.log_artifacts(self.parent, str(export), "export")
            self._log_model(export, Path(tmp) / "model")
        if self.register:
            self._register()

    def _log_model(self, export: Path, path: Path) -> None:
        """The winner as an MLflow Keras model (mlflow.keras.load_model / pyfunc read it)."""
        import keras
        import mlflow.keras
        import tensorflow as tf
        from mlflow.models import ModelSignature
        from mlflow.types.schema import Schema, TensorSpec

        model = keras.saving.load_model(export / "model.keras")
        float32 = np.dtype("float32")
        signature = ModelSignature(  # raw pixels in, class probabilities out
            inputs=Schema([TensorSpec(float32, (-1, *model.input_shape[1:]), "images")]),
            outputs=Schema([TensorSpec(float32, (-1, model.output_shape[-1]), "probabilities")]),
        )
        mlflow.keras.save_model(
            model,
            str(path),
            signature=signature,
            pip_requirements=[f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"],
        )
        self.client.log_artifacts(self.parent, str(path), "model")

    def _register(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(self.register)
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        run = self.client.get_run(self.parent)
        version = self.client.create_model_version(
            self.register,
            f"{run.info.artifact_uri}/model",
            run_id=self.parent,
            tags={"nas.run": run.info.run_name},
            await_creation_for=0,  # stores create versions at once; waiting only logs that it waits
        )
        progress.reporter().line(f"MLflow: registered {self.register!r} version {version.version}")

    # -- plumbing -------------------------------------------------------------------------------------

    def _log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        self.client.log_batch(run_id, metrics=list(metrics), params=list(params), tags=list(tags))

    def _call(self, what: str, fn, *args, **kwargs):
        """fn(*args, **kwargs), or None and a warning if it fails: tracking never stops a search."""
        if self.disabled:
            return None
        try:
            with _http(retries=1, timeout=30):
                result = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - whatever the tracker's failure, the search goes on
            self.failures += 1
            give_up = self.failures >= MAX_FAILURES
            self.disabled = give_up
            progress.reporter().warning(
                escape(f"MLflow ({self.uri}): {what} failed: {type(e).__name__}: {_one_line(e)}")
                + (f"; no more MLflow logging in this search after {MAX_FAILURES} failures in a row" if give_up else "")
            )
            return None
        self.failures = 0
        return True if result is None else result


def _check_reachable(uri: str) -> None:
    """An http(s) server that is not listening is one line now, not MLflow's retries and traceback."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        socket.create_connection((parts.hostname or "localhost", port), timeout=10).close()
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or f"{type(e).__name__}: {e}"
        raise InputError(
            f"mlflow: {uri}: cannot reach the tracking server ({reason}), expected a running MLflow server "
            "(mlflow server --host HOST --port PORT)"
        ) from None


def _read_state(rundir: RunDir) -> dict[str, Any] | None:
    import json

    try:
        data = json.loads(rundir.file(STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("run_id"), str) else None


def _millis() -> int:
    return int(time.time() * 1000)


def _is_plain(value: Any) -> bool:
    return value is not None and isinstance(value, (str, int, float, bool))


def _param(value: Any) -> str:
    return str(value.item() if hasattr(value, "item") else value)[:6000]


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
