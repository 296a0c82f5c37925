"""Ray Tune integration: the searcher and the trial loop on the driver (the cluster is nas.cluster's,
the workers' side nas.worker's).

    run_trials(search, data, Job(input_shape, classes, epochs), resources=..., workers=2, storage=...)
    [(model_bytes, metrics), ...] = train_final([spec, ...], data, job, resources=...)  # the winner
    # (here, or a Ray task), or an ensemble's best children (Ray tasks at once)

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
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # nas keeps its own records
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # nas handles Ctrl-C itself: _stop_on_interrupt

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from nas.cluster import Resources  # noqa: E402
from nas.search_state import Search, SearchExhausted  # noqa: E402
from nas.worker import Job, child, final, one_line, train_final_here  # noqa: E402

# TensorFlow keeps the graphs of every child a worker process trained (measured: 10 MB a linear
# child, 70 MB a cnn10 child; referenced from TensorFlow's C++ side, so no garbage collection frees
# them). Once a worker's memory has grown by --worker-memory-growth since its first child, the
# workers are replaced (ControllerSearcher._watch_memory).


class ControllerSearcher(Searcher):
    """Ray Tune's view of a `Search`: suggest = ask the controller; complete = record and tell."""

    def __init__(
        self,
        search: Search,
        trial_timeout: float | None = None,
        worker_memory_growth: float = 1024,
        on_epoch=None,
        early_stopping: bool = False,
    ):
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
            return self._record(
                trial_id,
                {
                    "status": "stopped",
                    "val_accuracy": result["val_accuracy"],
                    "val_accuracy_last": result["val_accuracy"],
                    "val_balanced_accuracy": result.get("val_balanced_accuracy"),
                    "val_macro_f1": result.get("val_macro_f1"),
                    "epochs": result["epoch"],
                    "params": result.get("params"),
                    "fit_seconds": result.get("fit_seconds", 0.0),
                    "val_loss": result.get("val_loss"),
                    "train_accuracy": result.get("accuracy"),
                    "seconds": seconds,
                    "node": result.get("node"),
                    "pid": result.get("pid"),
                },
            )
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


class _NoReport(tune.ProgressReporter):
    """Tune's progress reporter when nas reports (nas.progress) and Tune is to say nothing."""

    def should_report(self, trials, done=False):
        return False

    def report(self, trials, done, *sys_info):
        pass


def run_trials(
    search: Search,
    data_arrays: dict,
    job: Job,
    *,
    resources: Resources,
    workers: int,
    storage: str,
    worker_memory_growth: float = 1024,
    on_epoch=None,
    verbose: bool = False,
    asha: dict | None = None,
) -> None:
    """Runs the search's trials on Ray Tune until its budget is spent, its controller is exhausted or
    it stops (too many failures in a row). `asha` ({"grace_period": epochs, "reduction_factor": n})
    lets Ray Tune's ASHAScheduler stop children whose validation accuracy trails at a rung."""
    data_ref = ray.put(data_arrays)
    bundle = resources.bundle()

    def placement(config: dict) -> tune.PlacementGroupFactory:
        # Tune reuses a worker only for a trial with an equal placement request. A single bundle is
        # placed alike whatever the strategy, so alternating the strategy with the trial's
        # generation retires each generation's workers.
        return tune.PlacementGroupFactory([bundle], strategy=("PACK", "SPREAD")[config.get("generation", 0) % 2])

    trainable = tune.with_resources(tune.with_parameters(child, data=[data_ref], job=job), placement)
    trainable.__name__ = "nas_child"
    searcher = ControllerSearcher(
        search,
        trial_timeout=job.trial_timeout,
        worker_memory_growth=worker_memory_growth,
        on_epoch=on_epoch,
        early_stopping=asha is not None,
    )
    scheduler = None
    if asha:
        from ray.tune.schedulers import ASHAScheduler

        # stop_last_trials=False: a child that reaches its last epoch finishes and reports in full.
        scheduler = ASHAScheduler(
            time_attr="epoch",
            metric=search.objective.metric,  # each epoch's report has it
            mode="max",
            max_t=job.epochs,
            grace_period=asha["grace_period"],
            reduction_factor=asha["reduction_factor"],
            stop_last_trials=False,
        )
    tuner = tune.Tuner(
        trainable,
        # As many trials as the search hands out (-1): trials are run again after a resume or a
        # worker's death, so Tune cannot count them; the searcher says when the budget is spent.
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=-1,
            max_concurrent_trials=workers,
            reuse_actors=True,
            scheduler=scheduler,
            trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=storage,
            verbose=1 if verbose else 0,
            # Tune's default reporter in Jupyter clears the cell's output (the settings nas printed)
            # and displays a table of its own, even at verbose 0.
            progress_reporter=tune.CLIReporter() if verbose else _NoReport(),
            stop=StopWhenSearchStops(search),
            callbacks=[searcher.started],
            failure_config=tune.FailureConfig(max_failures=0),
        ),
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


def train_final(
    specs: Sequence[dict], final_arrays: dict, job: Job, *, resources: Resources, here: bool = False
) -> list[tuple[bytes, dict]]:
    """Retrains the winner, and for an ensemble the next-best children (`specs`, best first), on
    train + validation and tests each; returns each saved model's bytes (the run directory stays on
    the driver's machine) and its metrics, in the order given.

    They train at the same time, as Ray tasks sharing `resources`' CPUs equally (each also asks one
    trial's accelerators). With `here`, for a search on a Ray of its own without accelerators, a
    lone winner trains in this process instead, which has the data and often TensorFlow (the
    REINFORCE controller's) already: a new Ray worker spends seconds starting and importing
    TensorFlow (measured on 2 cores: a 2-trial linear search's retraining took 10 s as a Ray task,
    for 1 s of training). Several always train as Ray tasks: each sets its own TensorFlow threads,
    which this process, initialised already, cannot (beside a task, its threads would contend).
    A failure raises RuntimeError in one line (prefixed with the member's rank when there are
    several) and cancels the others."""
    share = max(1.0, resources.cpus / len(specs))
    member_job = replace(job, cpus=share)
    remote = ray.remote(final).options(
        num_cpus=share,
        num_gpus=resources.gpus,
        max_retries=0,
        resources={"TPU": resources.tpus} if resources.tpus else None,
    )
    here = here and len(specs) == 1
    data = [] if here else [ray.put(final_arrays)]
    pending = [] if here else [remote.remote(spec, data, member_job, rank) for rank, spec in enumerate(specs, 1)]

    def failed(rank: int, reason: str) -> RuntimeError:
        for ref in pending:
            ray.cancel(ref, force=True)
        return RuntimeError(f"member {rank}: {reason}" if len(specs) > 1 else reason)

    if here:
        try:
            return [train_final_here(specs[0], final_arrays, member_job)]
        except Exception as e:  # in one line, as a Ray task's error (Ctrl-C is no Exception: it goes on up)
            raise failed(1, one_line(e)) from None
    rank = {ref: k for k, ref in enumerate(pending, 1)}
    results, waiting = {}, list(pending)
    while waiting:  # in the order they end: a member that fails at once stops the others at once
        (ref,), waiting = ray.wait(waiting, num_returns=1)
        try:
            results[rank[ref]] = ray.get(ref)
        except ray.exceptions.RayError as e:  # the child's own error, or its worker's death, in one line
            cause = getattr(e, "cause", None)
            raise failed(rank[ref], one_line(cause) if cause else worker_death_reason(str(e))) from None
    return [results[k] for k in sorted(results)]
