"""TensorBoard logs of a search, written by the driver into `runs/<name>/tensorboard/`:

    trial_0001/ ...   each child's per-epoch scalars (loss, accuracy, val_loss, val_accuracy) and,
                      once it has finished, its decisions as HParams with its final metrics
    controller/       the controller's learning: mean reward, baseline, entropy, loss per update
    supernet/         an enas search's supernet phase per epoch: its training loss, its controller's
                      mean and best reward with shared weights and the policy's entropy
    (top level)       the HParams experiment: every decision a hyperparameter, the metrics

    log = TensorBoardLog(rundir.file("tensorboard"), space, controller)
    log.epoch(trial, {"epoch": 1, "loss": 0.9, "val_accuracy": 0.8})    # from Ray Tune's results
    log.finished(record)                                                # after Search.record

`tensorboard --logdir runs/<name>/tensorboard` shows them (the HPARAMS tab compares children). The
driver writes everything, so it works the same when children run on other nodes of a cluster.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from nas.trial_record import TrialRecord, is_number
from search_spaces import SearchSpace

METRICS = (
    ("val_accuracy", "validation accuracy"),
    ("reward", "reward"),
    ("params", "parameters"),
    ("latency_ms", "latency (ms, batch of 1)"),
)

# What a supernet epoch's record holds that is worth a curve (nas.enas.SupernetPhase.train_epoch)
SUPERNET_KEYS = ("loss", "reward_mean", "reward_max", "entropy")


class TensorBoardLog:
    def __init__(self, root: Path, space: SearchSpace, controller):
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hp

        self.tf, self.hp = tf, hp
        self.root = Path(root)
        self.controller = controller
        self.hparams = {
            d.name: hp.HParam(d.name, hp.Discrete([_plain(c) for c in _uniform(d.choices)])) for d in space.decisions
        }
        self.writers: dict[int, Any] = {}
        self.started: set[int] = set()
        self.updates_written = len(controller.updates())
        with tf.summary.create_file_writer(str(self.root)).as_default():
            hp.hparams_config(
                hparams=list(self.hparams.values()),
                metrics=[hp.Metric(key, display_name=name) for key, name in METRICS],
            )

    def _writer(self, trial: int):
        if trial not in self.writers:
            folder = self.root / f"trial_{trial:04d}"
            if trial not in self.started and folder.exists():
                shutil.rmtree(folder)  # left by a session that was killed while this trial ran
            self.started.add(trial)
            self.writers[trial] = self.tf.summary.create_file_writer(str(folder))
        return self.writers[trial]

    def epoch(self, trial, result: dict[str, Any]) -> None:
        """One epoch of a running child: its Keras logs as scalars, stepped by epoch."""
        with self._writer(trial.number).as_default():
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                if key in result:
                    self.tf.summary.scalar(f"epoch_{key}", result[key], step=int(result["epoch"]))

    def finished(self, record: TrialRecord) -> None:
        """A finished trial (completed or failed): its decisions and final metrics; and whatever the
        controller learnt since the last call."""
        writer = self._writer(record.trial)
        with writer.as_default():
            values = {
                self.hparams[name]: _plain(_uniform_value(self.hparams[name], value))
                for name, value in record.values.items()
                if name in self.hparams
            }
            self.hp.hparams(values, trial_id=f"trial_{record.trial:04d}")
            metrics = {**record.metrics.to_json(), "reward": record.reward}
            for key, _ in METRICS:
                if metrics.get(key) is not None:
                    self.tf.summary.scalar(key, float(metrics[key]), step=0)
        writer.close()
        del self.writers[record.trial]
        self._controller_updates()

    def supernet_epoch(self, record: dict[str, Any]) -> None:
        """One epoch of an enas search's supernet phase (nas.enas.SupernetPhase.train_epoch's record)."""
        self._scalars("supernet", [(int(record["epoch"]), {k: record.get(k) for k in SUPERNET_KEYS})])

    def _controller_updates(self) -> None:
        updates = self.controller.updates()
        if len(updates) <= self.updates_written:
            return
        self._scalars("controller", [(int(entry["update"]), entry) for entry in updates[self.updates_written :]])
        self.updates_written = len(updates)

    def _scalars(self, folder: str, steps: list[tuple[int, dict[str, Any]]]) -> None:
        """Each (step, values) as scalars `folder/key` in `folder`, its numbers only (None, bools and
        the step's own counter left out)."""
        writer = self.tf.summary.create_file_writer(str(self.root / folder))
        with writer.as_default():
            for step, values in steps:
                for key, value in values.items():
                    if key not in ("update", "epoch") and is_number(value):
                        self.tf.summary.scalar(f"{folder}/{key}", value, step=step)
        writer.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


def _uniform(choices) -> list:
    """HParams' Discrete domains hold one type: bools, numbers (as floats when mixed) or strings."""
    if all(isinstance(c, bool) for c in choices):
        return list(choices)
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
        return [float(c) for c in choices] if any(isinstance(c, float) for c in choices) else list(choices)
    return [str(c) for c in choices]


def _uniform_value(hparam, value):
    kind = type(hparam.domain.values[0])
    return kind(value) if kind is not str else str(value)


def _plain(value):
    """NumPy scalars (from a space's choices) as Python's own."""
    return value.item() if hasattr(value, "item") else value
