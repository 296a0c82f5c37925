"""Ray Tune integration: the only module that imports Ray.

    cluster = connect(address=None, dashboard=True)            # local Ray, or join a cluster
    run_trials(search, data, resources, workers, ...)           # every child through Ray Tune
    model_bytes, metrics = train_final(spec, data, ...)        # the winner: one Ray task, or here

A `ControllerSearcher` (a `ray.tune.search.Searcher`) asks the search's controller for each trial
and records each finished one before the next is asked for. Children run in a function trainable;
Tune reuses its actors, so each worker process imports TensorFlow and fetches the data from the
object store once, then trains child after child. A prepared directory too large for memory
(nas.records) travels as its shards' paths instead (`Stream`s), and each child reads them with
tf.data on its worker: on a cluster the directory must be on a disk every node reads at that path.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # nas keeps its own records
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # nas handles Ctrl-C itself: _stop_on_interrupt
# A reused worker waits this long for the previous child's thread before Tune gives up on it (and
# on the trial it was to run): Tune's 2 s is too short on a busy machine.
os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "60")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from nas import accelerators  # noqa: E402
from nas.errors import InputError, SearchStopped  # noqa: E402
from nas.quiet import stderr_silenced  # noqa: E402
from nas.search_state import Search, SearchExhausted  # noqa: E402

# TensorFlow keeps the graphs of every child a worker process trained (measured: 10 MB a linear
# child, 70 MB a cnn10 child; referenced from TensorFlow's C++ side, so no garbage collection frees
# them). Once a worker's memory has grown by --worker-memory-growth since its first child, the
# workers are replaced.
# A child past --trial-timeout stops at its next training step; one stuck outside training (in a
# long graph build, say) has its worker process ended this many seconds later (at most the timeout).
TIMEOUT_GRACE_SECONDS = 30
TIMEOUT_EXIT_CODE = 75  # how the watchdog ends such a worker
REPORT_BEFORE_EXIT_SECONDS = 10  # how long the watchdog waits for Tune to take its report


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
    owned: bool = True  # started by connect(), so disconnect() shuts it down; else the caller's Ray session


def connect(address: str | None, dashboard: bool, num_cpus: int | None = None, verbose: bool = False) -> Cluster:
    """Starts a local Ray instance, or joins a running cluster at `address`. A Ray session this
    process started already (`ray.init()` in a notebook, say) is used as it is, and left running."""
    if ray.is_initialized():  # a cluster of several nodes is one to join, as --address joins it
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
        alive = [n for n in ray.nodes() if n.get("Alive")]
        return _cluster(ray.get_runtime_context().gcs_address if len(alive) > 1 else None, owned=False)
    if address:
        check_reachable(address)
    try:
        with stderr_silenced():  # Ray's C++ side logs each failed attempt to connect
            # Without --address, a Ray of our own ("local"): ray.init() alone would join whatever
            # `ray start` left in /tmp/ray, and hang if that cluster has gone.
            context = ray.init(address=address or "local", num_cpus=None if address else num_cpus,
                               include_dashboard=dashboard if not address else None, dashboard_host="127.0.0.1",
                               log_to_driver=verbose, logging_level="info" if verbose else "error",
                               configure_logging=True)
    except Exception as e:  # Ray raises plain Exception too (a node that timed out during start-up)
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not address:
            raise SearchStopped(f"could not start Ray on this machine: {message} (an overloaded machine can "
                                "cause this: try again)") from None
        hint = ("; `ray start` turns token authentication on: run nas with RAY_AUTH_MODE=token (the token is read "
                "from RAY_AUTH_TOKEN or ~/.ray/auth_token)" if address and os.environ.get("RAY_AUTH_MODE") != "token"
                else "")
        raise InputError(f"address: cannot connect to a Ray cluster at {address!r}: {message}{hint}") from None
    # Tune logs a traceback for every trial whose worker died; nas records a one-line reason instead.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    return _cluster(address, owned=True, url=getattr(context, "dashboard_url", None) or None)


def _cluster(address: str | None, owned: bool, url: str | None = None) -> Cluster:
    largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=1)
    return Cluster(f"http://{url}" if url and not url.startswith("http") else url, ray.cluster_resources(), largest,
                   address, owned)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable head for minutes; a plain TCP connection tells at once."""
    if address.startswith("ray://"):
        raise InputError(f"address: got {address!r}, but Ray Client (ray://) runs Tune on the cluster, away from "
                         "the run directory; expected the head's HOST:6379 (run nas on a node of the cluster)")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        if address in ("auto", "local"):
            return
        raise InputError(f"address: got {address!r}, expected HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise InputError(f"address: cannot reach a Ray cluster at {address!r} ({reason}); expected a running "
                         f"Ray head there (`ray start --head` prints its address)") from None


def disconnect(cluster: Cluster | None = None) -> None:
    """Shuts down the Ray session connect() started (not one the caller had started)."""
    if ray.is_initialized() and (cluster is None or cluster.owned):
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
            ("cpus_per_trial", "CPU", resources.cpus, cluster.largest_node_cpus),
            ("gpus_per_trial", "GPU", resources.gpus, cluster.resources.get("GPU", 0)),
            ("tpu", "TPU", resources.tpus, cluster.resources.get("TPU", 0))):
        if wanted and have < wanted:
            where = "its largest node has" if key == "CPU" else "the Ray cluster has"
            raise InputError(f"{flag}: a trial asks for {wanted:g} {key}, but {where} {have:g}; "
                             f"expected at most {have:g}")


class ControllerSearcher(Searcher):
    """Ray Tune's view of a `Search`: suggest = ask the controller; complete = record and tell."""

    def __init__(self, search: Search, trial_timeout: float | None = None, worker_memory_growth: float = 1024,
                 on_epoch=None, early_stopping: bool = False):
        super().__init__()
        self.search = search
        self.early_stopping = early_stopping  # a scheduler (ASHA) may stop children after any epoch
        self.on_epoch = on_epoch  # called with (Trial, result) for each epoch a child reports
        self.worker_memory_growth = worker_memory_growth
        self.trial_timeout = trial_timeout
        self.trials = {}  # Ray's trial id -> (our Trial, when it was suggested)
        self.started = StartedTrials()
        self.generation = 0  # trials of one generation share worker processes; the next gets new ones
        self.first_rss: dict[int, float] = {}  # worker pid -> its memory after its first child

    def suggest(self, trial_id: str) -> dict | None:
        try:
            trial = self.search.next_trial()
        except SearchExhausted:
            return Searcher.FINISHED
        if trial is None:
            return None
        self.trials[trial_id] = (trial, time.monotonic())
        return {"trial": trial.number, "spec": trial.spec, "generation": self.generation}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # A child reports after each epoch, and once more with its status when it has finished:
        # record that now, before Tune can stop its trial or its worker die, either of which would
        # leave Tune's final result without it.
        if "status" in result:
            self._record(trial_id, result)
        elif self.on_epoch and trial_id in self.trials and "epoch" in result:
            try:
                self.on_epoch(self.trials[trial_id][0], result)
            except Exception as e:  # monitoring must not stop a search
                logging.getLogger("nas").warning("per-epoch monitoring failed: %s", e)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        started = self.started.take(trial_id)
        if trial_id not in self.trials:
            return  # recorded from its result already
        if result and "status" in result:
            return self._record(trial_id, result)
        trial, suggested = self.trials[trial_id]
        if self.search.interrupted or self.search.stopped or started is None:
            # Ended unfinished by Ctrl-C or a stopped search (it stays `running`, so --resume runs it
            # again), or its worker died before the child began (while idle, say): run it again now.
            del self.trials[trial_id]
            self.search.requeue(trial)
            return
        seconds = time.monotonic() - suggested
        if self.early_stopping and not error and result and "epoch" in result:  # the scheduler stopped it
            return self._record(trial_id, {
                "status": "stopped", "val_accuracy": result["val_accuracy"], "val_accuracy_last": result["val_accuracy"],
                "epochs": result["epoch"], "params": result.get("params"), "fit_seconds": result.get("fit_seconds", 0.0),
                "val_loss": result.get("val_loss"), "train_accuracy": result.get("accuracy"), "seconds": seconds,
                "node": result.get("node"), "pid": result.get("pid")})
        if self.trial_timeout and seconds >= self.trial_timeout:  # the watchdog could not report first
            reason = f"TrialTimeout: ran past --trial-timeout {self.trial_timeout:g}s; its worker was stopped"
        else:
            reason = "WorkerDied: " + worker_death_reason(_read(started.error_file))
        self._record(trial_id, {"status": "failed", "error": reason, "seconds": seconds})

    def _record(self, trial_id: str, result: dict) -> None:
        trial, _ = self.trials.pop(trial_id, (None, 0))
        if trial is None:
            return
        try:
            self._watch_memory(result)
            self.search.record(trial, result)
        except Exception as e:  # Tune would log and swallow it, and the trial would hang in `running`
            self.search.stopped = f"recording trial {trial.number} failed: {type(e).__name__}: {e}"

    def __getstate__(self):
        # Tune pickles its searcher into tuner.pkl for its own restore, which nas does not use (a
        # resumed search is rebuilt from the run directory); the controller's TensorFlow graphs
        # cannot be pickled.
        return {**self.__dict__, "search": None, "started": StartedTrials(), "on_epoch": None}

    def _watch_memory(self, result: dict) -> None:
        pid, rss = result.get("pid"), result.get("worker_rss_mb")
        if pid is None or rss is None:
            return
        first = self.first_rss.setdefault(pid, rss)
        if rss - first > self.worker_memory_growth:
            self.generation += 1
            self.first_rss.clear()


class StartedTrials(tune.Callback):
    """Tune's trials that reached a worker: whether an errored trial ever started, and where Tune
    wrote its error (for a one-line reason when a worker dies)."""

    def __init__(self):
        self.started: dict[str, Any] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = trial

    def take(self, trial_id: str):
        return self.started.pop(trial_id, None)

    def __getstate__(self):  # as for the stopper: Tune may pickle its callbacks
        return {"started": {}}


def _read(path: str | None) -> str:
    return Path(path).read_text(errors="replace") if path and Path(path).exists() else ""


def worker_death_reason(error_text: str) -> str:
    """One line from Ray's report of a dead worker: its pid and exit detail, without the advice."""
    pid = re.search(r"\bpid: (\d+)", error_text)
    who = f"the worker process ({pid.group(1)})" if pid else "the worker process"
    if "low on memory" in error_text:
        return f"{who} was killed by Ray's memory monitor: the node ran low on memory"
    if "Worker exit detail:" in error_text:
        detail = error_text.split("Worker exit detail:", 1)[1].split("Some common causes")[0]
        return f"{who} died: {' '.join(detail.split())[:200]}"
    return f"{who} died or Ray stopped the trial before it reported"


class StopWhenSearchStops(tune.Stopper):
    """Ends Tune's loop when the search stops early (too many failures in a row)."""

    def __init__(self, search: Search):
        self.search = search

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return self.search is not None and (self.search.stopped is not None or self.search.interrupted)

    def __getstate__(self):  # Tune pickles its stopper into its experiment state; nas resumes its own way
        return {"search": None}


_WORKER_DATA: dict[str, Any] = {}  # per worker process: the arrays (or Streams), fetched from the object store once


def _arrays(holder: list) -> dict:
    (ref,) = holder
    if ref.hex() not in _WORKER_DATA:
        _WORKER_DATA.clear()
        _WORKER_DATA[ref.hex()] = ray.get(ref)
    return _WORKER_DATA[ref.hex()]


def _setup(resources: Resources, input_shape, num_classes: int, epochs: int, seed: int,
           base: bytes | None = None, plan: accelerators.Plan = accelerators.CPU) -> dict:
    """What every child (or the final training) needs to know besides its spec and the data; `base`
    is a transfer space's base model (nas.transfer), which travels with it through the object store,
    and `plan` how it trains on its trial's accelerators (nas.accelerators)."""
    return {"cpus": resources.cpus, "input_shape": list(input_shape), "num_classes": num_classes, "epochs": epochs,
            "seed": seed, "base": base, "plan": plan}


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _child(config: dict, data: list, setup: dict) -> None:
    """The function trainable: trains one child and reports its metrics (or why it failed)."""
    start = time.perf_counter()
    from nas import trainer, transfer

    try:
        trainer.configure_threads(setup["cpus"])  # imports TensorFlow in a fresh worker
        arrays = _arrays(data)
        transfer.provide(setup.get("base"))
    except Exception as e:  # the worker could not set the child up: a failed child, named as such
        result = _failure(e, "the worker could not set the child up: ")
    else:
        result = _train(config, arrays, setup)
    result.update(seconds=time.perf_counter() - start, **_where(), worker_rss_mb=_rss_mb())
    tune.report(result)


def _train(config: dict, arrays: dict, setup: dict) -> dict:
    from nas import faults, trainer

    # --trial-timeout times the child, not a fresh worker's start-up (TensorFlow's import, the data
    # fetch), which takes tens of seconds on a loaded machine.
    began = time.perf_counter()
    timeout = setup.get("trial_timeout")
    watchdog = None
    if timeout:  # the last resort for a child that never reaches a training step again
        watchdog = threading.Timer(timeout + min(timeout, TIMEOUT_GRACE_SECONDS), _end_hung_child,
                                   args=(began, timeout))
        watchdog.daemon = True
        watchdog.start()
    try:
        where = _where()
        callbacks = [*faults.inject(config["trial"]), trainer.epoch_reporter(lambda r: tune.report({**r, **where}))]
        if timeout:
            callbacks.append(trainer.deadline(began + timeout, f"ran past --trial-timeout {timeout:g}s"))
        return {"status": "completed", **trainer.train_child(
            config["spec"], arrays, input_shape=setup["input_shape"], num_classes=setup["num_classes"],
            epochs=setup["epochs"], seed=setup["seed"] + config["trial"], callbacks=callbacks, plan=setup["plan"])}
    except Exception as e:  # a failing child is a result, not a crash of the search
        return _failure(e)
    finally:
        if watchdog:
            watchdog.cancel()


def _where() -> dict:
    """The node and process a child trains in, for its epoch reports and its result."""
    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def _failure(error: Exception, prefix: str = "") -> dict:
    return {"status": "failed", "error": prefix + _one_line(error), "traceback": traceback.format_exc()[-2000:]}


def _end_hung_child(start: float, timeout: float) -> None:
    """The watchdog: reports the child as timed out (from this thread: the child's is stuck), then
    ends the worker process, the only way to stop a thread that never returns to Python's checks."""
    result = {"status": "failed", "error": f"TrialTimeout: ran past --trial-timeout {timeout:g}s; its worker "
              "was stopped", "seconds": time.perf_counter() - start, "pid": os.getpid()}
    reporter = threading.Thread(target=tune.report, args=(result,), daemon=True)
    reporter.start()
    reporter.join(REPORT_BEFORE_EXIT_SECONDS)
    os._exit(TIMEOUT_EXIT_CODE)


def _rss_mb() -> float | None:
    """This process's resident memory, from /proc (None elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_trials(search: Search, data_arrays: dict, *, input_shape, num_classes: int, epochs: int, seed: int,
               resources: Resources, workers: int, storage: str, trial_timeout: float | None = None,
               worker_memory_growth: float = 1024, on_epoch=None, verbose: bool = False,
               base: bytes | None = None, plan: accelerators.Plan = accelerators.CPU,
               asha: dict | None = None) -> None:
    """Runs the search's trials on Ray Tune until its budget is spent, its controller is exhausted or
    it stops (too many failures in a row). `asha` ({"grace_period": epochs, "reduction_factor": n})
    lets Ray Tune's ASHAScheduler stop children whose validation accuracy trails at a rung."""
    data_ref = ray.put(data_arrays)
    setup = {**_setup(resources, input_shape, num_classes, epochs, seed, base, plan), "trial_timeout": trial_timeout}
    bundle = resources.bundle()

    def placement(config: dict) -> tune.PlacementGroupFactory:
        # Tune reuses a worker only for a trial with an equal placement request. A single bundle is
        # placed alike whatever the strategy, so alternating the strategy with the trial's
        # generation retires each generation's workers.
        return tune.PlacementGroupFactory([bundle], strategy=("PACK", "SPREAD")[config.get("generation", 0) % 2])

    trainable = tune.with_resources(tune.with_parameters(_child, data=[data_ref], setup=setup), placement)
    trainable.__name__ = "nas_child"
    searcher = ControllerSearcher(search, trial_timeout=trial_timeout, worker_memory_growth=worker_memory_growth,
                                  on_epoch=on_epoch, early_stopping=asha is not None)
    scheduler = None
    if asha:
        from ray.tune.schedulers import ASHAScheduler

        # stop_last_trials=False: a child that reaches its last epoch finishes and reports in full.
        scheduler = ASHAScheduler(time_attr="epoch", metric="val_accuracy", mode="max", max_t=epochs,
                                  grace_period=asha["grace_period"], reduction_factor=asha["reduction_factor"],
                                  stop_last_trials=False)
    tuner = tune.Tuner(
        trainable,
        # As many trials as the search hands out (-1): trials are run again after a resume or a
        # worker's death, so Tune cannot count them; the searcher says when the budget is spent.
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1,
                                    max_concurrent_trials=workers, reuse_actors=True, scheduler=scheduler,
                                    trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
        run_config=tune.RunConfig(name="tune", storage_path=storage, verbose=1 if verbose else 0, stop=StopWhenSearchStops(search),
                                  callbacks=[searcher.started], failure_config=tune.FailureConfig(max_failures=0)),
    )
    with _stop_on_interrupt(search):
        tuner.fit()
    if search.interrupted:
        raise KeyboardInterrupt


@contextmanager
def _stop_on_interrupt(search: Search):
    """The first Ctrl-C (SIGINT) or SIGTERM marks the search interrupted: Tune ends its loop at its
    next step, and the trials it ends unfinished stay `running` for --resume. A second Ctrl-C raises
    KeyboardInterrupt at once. (Python's own KeyboardInterrupt can land inside one of Ray's
    callbacks, where it is swallowed, and the search runs on.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def interrupt(signum, frame):
        search.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for signum in previous:
        signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _final(spec: dict, data: list, setup: dict) -> tuple[bytes, dict]:
    return _train_final_here(spec, _arrays(data), setup)


def _train_final_here(spec: dict, arrays: dict, setup: dict) -> tuple[bytes, dict]:
    import tempfile
    from pathlib import Path

    from nas import trainer, transfer

    trainer.configure_threads(setup["cpus"])
    transfer.provide(setup.get("base"))
    model, metrics = trainer.train_final(spec, arrays, input_shape=setup["input_shape"],
                                         num_classes=setup["num_classes"], epochs=setup["epochs"], seed=setup["seed"],
                                         plan=setup["plan"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes(), metrics


def train_final(spec: dict, final_arrays: dict, *, input_shape, num_classes: int, epochs: int, seed: int,
                resources: Resources, base: bytes | None = None,
                plan: accelerators.Plan = accelerators.CPU, here: bool = False) -> tuple[bytes, dict]:
    """Retrains the winner on train + validation as one Ray task and tests it; returns the saved
    model's bytes (the run directory stays on the driver's machine) and its metrics.

    With `here`, for a search on a Ray of its own without accelerators, it trains in this process
    instead, which has the data and often TensorFlow (the REINFORCE controller's) already: a new
    Ray worker spends seconds starting and importing TensorFlow. Measured on 2 cores: a 2-trial
    linear search's retraining took 10 s as a Ray task, for 1 s of training."""
    setup = _setup(resources, input_shape, num_classes, epochs, seed, base, plan)
    if here:
        try:
            return _train_final_here(spec, final_arrays, setup)
        except Exception as e:  # in one line, as a Ray task's error (Ctrl-C is no Exception: it goes on up)
            raise RuntimeError(_one_line(e)) from None
    task = ray.remote(_final).options(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0,
                                      resources={"TPU": resources.tpus} if resources.tpus else None)
    try:
        return ray.get(task.remote(spec, [ray.put(final_arrays)], setup))
    except ray.exceptions.RayError as e:  # the child's own error, or its worker's death, in one line
        cause = getattr(e, "cause", None)
        raise RuntimeError(_one_line(cause) if cause else worker_death_reason(str(e))) from None
