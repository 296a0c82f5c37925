"""The worker side of a search: what runs in a Ray worker process for each child (and for the
winner's retraining), given one frozen `Job` that says how every child of the search trains.

    trainable = tune.with_parameters(child, data=[ray.put(arrays)], job=Job((28, 28, 1), 10, epochs=4))

Ray is imported where it is used: the driver imports `Job` before it knows the input is good.
Each worker process fetches the data from the object store once and keeps it for the children after
(`_arrays`); a child's failure is a reported result, never an exception out of the trainable; a
child stuck past --trial-timeout outside a training step is ended with its worker (`_end_hung_child`).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas import accelerators


@dataclass(frozen=True)
class Job:
    """How every child of a search trains (or the winner, retrained), besides its spec and the data."""

    input_shape: tuple[int, ...]
    num_classes: int
    epochs: int
    seed: int = 0  # a child's seed is this plus its trial number
    cpus: float = 1  # TensorFlow's threads
    base: bytes | None = None  # a transfer space's base model (nas.transfer), through the object store
    plan: accelerators.Plan = accelerators.CPU  # how it trains on its trial's accelerators
    trial_timeout: float | None = None  # seconds a child may train
    class_names: tuple[str, ...] = ()  # the winner's test evaluation names them (nas.evaluation)
    per_class: bool = False  # children measure per-class validation metrics (the objective rewards one)
    class_weight: str | None = None  # --class-weight: none or balanced for every child; None: the spec's
    class_counts: tuple[int, ...] | None = None  # images per class of the split it trains on (the weights')


# A child past --trial-timeout stops at its next training step; one stuck outside training (in a
# long graph build, say) has its worker process ended this many seconds later (at most the timeout).
TIMEOUT_GRACE_SECONDS = 30
TIMEOUT_EXIT_CODE = 75  # how the watchdog ends such a worker
REPORT_BEFORE_EXIT_SECONDS = 10  # how long the watchdog waits for Tune to take its report

# How long Tune waits for the last child's thread to end before it gives up on reusing the worker,
# fails the trial it was to run next and kills the worker (Tune's default, 2 s, is too short on a
# busy machine: seen in a cnn10 search, which then went on with one worker). Set here, in the worker
# process, where the reset reads it: a driver's setting reaches only the workers of a Ray it starts
# afterwards, not a notebook's Ray or a cluster's.
os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "600")

_WORKER_DATA: dict[str, Any] = {}  # per worker process: the arrays (or Streams), fetched from the object store once


def _arrays(holder: list) -> dict:
    import ray

    (ref,) = holder
    if ref.hex() not in _WORKER_DATA:
        _WORKER_DATA.clear()
        _WORKER_DATA[ref.hex()] = ray.get(ref)
    return _WORKER_DATA[ref.hex()]


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def child(config: dict, data: list, job: Job) -> None:
    """The function trainable: trains one child and reports its metrics (or why it failed)."""
    start = time.perf_counter()
    from nas import trainer, transfer

    try:
        trainer.configure_threads(job.cpus)  # imports TensorFlow in a fresh worker
        arrays = _arrays(data)
        transfer.provide(job.base)
    except Exception as e:  # the worker could not set the child up: a failed child, named as such
        result = _failure(e, "the worker could not set the child up: ")
    else:
        result = _train(config, arrays, job)
    result.update(seconds=time.perf_counter() - start, **_where(), worker_rss_mb=_rss_mb())
    _report(result)


def _train(config: dict, arrays: dict, job: Job) -> dict:
    from nas import faults, trainer

    # --trial-timeout times the child, not a fresh worker's start-up (TensorFlow's import, the data
    # fetch), which takes tens of seconds on a loaded machine.
    began = time.perf_counter()
    timeout = job.trial_timeout
    watchdog = None
    if timeout:  # the last resort for a child that never reaches a training step again
        watchdog = threading.Timer(
            timeout + min(timeout, TIMEOUT_GRACE_SECONDS), _end_hung_child, args=(began, timeout)
        )
        watchdog.daemon = True
        watchdog.start()
    try:
        where = _where()
        callbacks = [*faults.inject(config["trial"]), trainer.epoch_reporter(lambda r: _report({**r, **where}))]
        if timeout:
            callbacks.append(trainer.deadline(began + timeout, f"ran past --trial-timeout {timeout:g}s"))
        return {
            "status": "completed",
            **trainer.train_child(
                config["spec"],
                arrays,
                input_shape=job.input_shape,
                num_classes=job.num_classes,
                epochs=job.epochs,
                seed=job.seed + config["trial"],
                callbacks=callbacks,
                plan=job.plan,
                per_class=job.per_class,
                class_weight=job.class_weight,
                class_counts=job.class_counts,
            ),
        }
    except Exception as e:  # a failing child is a result, not a crash of the search
        return _failure(e)
    finally:
        if watchdog:
            watchdog.cancel()


def _report(result: dict) -> None:
    """Ray Tune's report, imported here: nas.tune sets Tune's environment before Tune is imported."""
    from ray import tune

    tune.report(result)


def _where() -> dict:
    """The node and process a child trains in, for its epoch reports and its result."""
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def _failure(error: Exception, prefix: str = "") -> dict:
    return {"status": "failed", "error": prefix + one_line(error), "traceback": traceback.format_exc()[-2000:]}


def _end_hung_child(start: float, timeout: float) -> None:
    """The watchdog: reports the child as timed out (from this thread: the child's is stuck), then
    ends the worker process, the only way to stop a thread that never returns to Python's checks."""
    result = {
        "status": "failed",
        "error": f"TrialTimeout: ran past --trial-timeout {timeout:g}s; its worker was stopped",
        "seconds": time.perf_counter() - start,
        "pid": os.getpid(),
    }
    reporter = threading.Thread(target=_report, args=(result,), daemon=True)
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


def final(spec: dict, data: list, job: Job, rank: int = 1) -> tuple[bytes, dict]:
    """The retraining of the search's `rank`-th model (1 the winner) as a Ray task."""
    return train_final_here(spec, _arrays(data), job, rank)


def train_final_here(spec: dict, arrays: dict, job: Job, rank: int = 1) -> tuple[bytes, dict]:
    """Retrains the search's `rank`-th model (1 the winner) in this process; returns the saved
    model's bytes and its test metrics."""
    from nas import faults, trainer, transfer

    faults.inject_final(rank)
    trainer.configure_threads(job.cpus)
    transfer.provide(job.base)
    model, metrics = trainer.train_final(
        spec,
        arrays,
        input_shape=job.input_shape,
        num_classes=job.num_classes,
        epochs=job.epochs,
        seed=job.seed,
        plan=job.plan,
        class_names=job.class_names,
        class_weight=job.class_weight,
        class_counts=job.class_counts,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        return path.read_bytes(), metrics
