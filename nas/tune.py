"""Ray Tune integration: the only module that imports Ray.

    cluster = connect(address=None, dashboard=True)            # local Ray, or join a cluster
    run_trials(search, data, resources, workers, ...)           # every child through Ray Tune
    model_bytes, metrics = train_final(spec, data, ...)        # the winner, as one Ray task

A `ControllerSearcher` (a `ray.tune.search.Searcher`) asks the search's controller for each trial
and records each finished one before the next is asked for. Children run in a function trainable;
Tune reuses its actors, so each worker process imports TensorFlow and fetches the data from the
object store once, then trains child after child.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # nas keeps its own records
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C stops nas, not just Tune's loop

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from nas.errors import InputError  # noqa: E402
from nas.search import Search, SearchExhausted  # noqa: E402


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for."""

    cpus: float = 1
    gpus: float = 0
    tpus: int = 0  # Ray's "TPU" resource, one per chip

    def bundle(self) -> dict[str, float]:
        bundle = {"CPU": self.cpus, "GPU": self.gpus}
        if self.tpus:
            bundle["TPU"] = self.tpus
        return bundle


@dataclass(frozen=True)
class Cluster:
    dashboard_url: str | None
    resources: dict[str, float]  # the whole cluster's, e.g. {"CPU": 2.0, "memory": ...}
    largest_node_cpus: float  # a task cannot use more CPUs than one node has
    address: str | None


def connect(address: str | None, dashboard: bool, num_cpus: int | None = None) -> Cluster:
    """Starts a local Ray instance, or joins a running cluster at `address`."""
    try:
        context = ray.init(address=address, num_cpus=None if address else num_cpus,
                           include_dashboard=dashboard if not address else None, dashboard_host="127.0.0.1",
                           log_to_driver=False, logging_level="error", configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"--address: cannot connect to a Ray cluster at {address!r}: {message}") from None
    url = getattr(context, "dashboard_url", None) or None
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
    return Cluster(f"http://{url}" if url and not url.startswith("http") else url, ray.cluster_resources(), largest,
                   address)


def disconnect() -> None:
    if ray.is_initialized():
        ray.shutdown()


def default_workers(cluster: Cluster, resources: Resources) -> int:
    """As many concurrent trials as the cluster's CPUs (and GPUs, TPUs) allow."""
    limits = [cluster.resources.get("CPU", 1) / resources.cpus if resources.cpus else float("inf")]
    if resources.gpus:
        limits.append(cluster.resources.get("GPU", 0) / resources.gpus)
    if resources.tpus:
        limits.append(cluster.resources.get("TPU", 0) / resources.tpus)
    return max(1, int(min(limits)))


def check_resources(cluster: Cluster, resources: Resources) -> None:
    """A trial that asks for what no node has would wait forever: refuse it now."""
    for flag, key, wanted, have in (
            ("--cpus-per-trial", "CPU", resources.cpus, cluster.largest_node_cpus),
            ("--gpus-per-trial", "GPU", resources.gpus, cluster.resources.get("GPU", 0)),
            ("--tpu", "TPU", resources.tpus, cluster.resources.get("TPU", 0))):
        if wanted and have < wanted:
            where = "its largest node has" if key == "CPU" else "the Ray cluster has"
            raise InputError(f"{flag}: a trial asks for {wanted:g} {key}, but {where} {have:g}; "
                             f"expected at most {have:g}")


class ControllerSearcher(Searcher):
    """Ray Tune's view of a `Search`: suggest = ask the controller; complete = record and tell."""

    def __init__(self, search: Search):
        super().__init__()
        self.search = search
        self.trials = {}  # Ray's trial id -> our Trial

    def suggest(self, trial_id: str) -> dict | None:
        try:
            trial = self.search.next_trial()
        except SearchExhausted:
            return Searcher.FINISHED
        if trial is None:
            return None
        self.trials[trial_id] = trial
        return {"trial": trial.number, "spec": trial.spec}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.trials.pop(trial_id, None)
        if trial is None:
            return
        if error or not result or "status" not in result:
            result = {"status": "failed", "error": "the trial's worker died or Ray stopped it before it reported"}
        self.search.record(trial, result)


_WORKER_DATA: dict[str, Any] = {}  # per worker process: the arrays, fetched from the object store once


def _arrays(holder: list) -> dict:
    (ref,) = holder
    if ref.hex() not in _WORKER_DATA:
        _WORKER_DATA.clear()
        _WORKER_DATA[ref.hex()] = ray.get(ref)
    return _WORKER_DATA[ref.hex()]


def _setup(resources: Resources, input_shape, num_classes: int, epochs: int, seed: int) -> dict:
    """What every child (or the final training) needs to know besides its spec and the data."""
    return {"cpus": resources.cpus, "input_shape": list(input_shape), "num_classes": num_classes, "epochs": epochs,
            "seed": seed}


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _child(config: dict, data: list, setup: dict) -> None:
    """The function trainable: trains one child and reports its metrics (or why it failed)."""
    start = time.perf_counter()
    from nas import trainer

    trainer.configure_threads(setup["cpus"])
    try:
        result = {"status": "completed", **trainer.train_child(
            config["spec"], _arrays(data), input_shape=setup["input_shape"], num_classes=setup["num_classes"],
            epochs=setup["epochs"], seed=setup["seed"] + config["trial"])}
    except Exception as e:  # a failing child is a result, not a crash of the search
        result = {"status": "failed", "error": _one_line(e), "traceback": traceback.format_exc()[-2000:]}
    result.update(seconds=time.perf_counter() - start, node=ray.get_runtime_context().get_node_id(), pid=os.getpid())
    tune.report(result)


def run_trials(search: Search, data_arrays: dict, *, input_shape, num_classes: int, epochs: int, seed: int,
               resources: Resources, workers: int, storage: str) -> None:
    """Runs the search's trials on Ray Tune until its budget is spent or its controller is exhausted."""
    data_ref = ray.put(data_arrays)
    setup = _setup(resources, input_shape, num_classes, epochs, seed)
    trainable = tune.with_resources(tune.with_parameters(_child, data=[data_ref], setup=setup),
                                    tune.PlacementGroupFactory([resources.bundle()]))
    trainable.__name__ = "nas_child"
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=ControllerSearcher(search), num_samples=search.budget,
                                    max_concurrent_trials=workers, reuse_actors=True,
                                    trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=tune.RunConfig(name="tune", storage_path=storage, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    tuner.fit()


def _final(spec: dict, data: list, setup: dict) -> tuple[bytes, dict]:
    import tempfile
    from pathlib import Path

    from nas import trainer

    trainer.configure_threads(setup["cpus"])
    model, metrics = trainer.train_final(spec, _arrays(data), input_shape=setup["input_shape"],
                                         num_classes=setup["num_classes"], epochs=setup["epochs"], seed=setup["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes(), metrics


def train_final(spec: dict, final_arrays: dict, *, input_shape, num_classes: int, epochs: int, seed: int,
                resources: Resources) -> tuple[bytes, dict]:
    """Retrains the winner on train + validation as one Ray task and tests it; returns the saved
    model's bytes (the run directory stays on the driver's machine) and its metrics."""
    setup = _setup(resources, input_shape, num_classes, epochs, seed)
    task = ray.remote(_final).options(num_cpus=resources.cpus, num_gpus=resources.gpus,
                                      resources={"TPU": resources.tpus} if resources.tpus else None)
    return ray.get(task.remote(spec, [ray.put(final_arrays)], setup))
