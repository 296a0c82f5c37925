"""One finished trial as the search records it, one line of the run's `trials.jsonl`.

    record = TrialRecord.from_json(json.loads(line))    # checked: RecordError names the field
    record.trial, record.status, record.reward, record.values, record.metrics.val_accuracy
    line = json.dumps(record.to_json())

A record keeps nas's own metrics only (`Metrics`); what else a worker's result holds (Ray Tune's
`config/...`, `hostname`, `time_since_restore`, ...) is not kept. Lines written before that still
read: keys a record does not know are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

STATUSES = ("completed", "stopped", "failed")  # stopped: ended early by the scheduler (ASHA), rewarded


class RecordError(ValueError):
    """A line that is not a trial as nas writes it; the message names the field and the value."""


@dataclass(frozen=True)
class Metrics:
    """What a child measured. A failed child's metrics are all unset."""

    val_accuracy: float | None = None  # the reward's accuracy: the best of the last epochs (nas.trainer)
    val_accuracy_last: float | None = None
    val_accuracy_per_epoch: tuple[float, ...] = ()
    val_loss: float | None = None
    # with an objective of balanced-accuracy or macro-f1 (nas.objective), the best of the last epochs
    val_balanced_accuracy: float | None = None
    val_macro_f1: float | None = None
    train_accuracy: float | None = None
    test_accuracy: float | None = None  # tabular benchmarks only: children are never tested in a search
    params: int | None = None
    latency_ms: float | None = None  # ms per image, batch of 1, on the child's worker
    epochs: int | None = None  # epochs trained (fewer than asked when ASHA stopped it)
    fit_seconds: float = 0.0
    worker_rss_mb: float | None = None

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> Metrics:
        """The metrics in a worker's result or a saved record; other keys are left out, and so are
        values that are NaN or infinite. A value of the wrong type is a RecordError naming it."""
        values = {}
        for f in fields(cls):
            value = result.get(f.name)
            if value is None:
                continue
            if f.name == "val_accuracy_per_epoch":
                if not isinstance(value, (list, tuple)) or not all(_is_real(v) for v in value):
                    raise RecordError(f"metrics.{f.name}: got {_short(value)}, expected a list of numbers")
                values[f.name] = tuple(float(v) for v in value)
            elif not _is_real(value):
                raise RecordError(f"metrics.{f.name}: got {_short(value)}, expected a number")
            elif f.name in ("params", "epochs"):
                if not is_number(value) or value != int(value):
                    raise RecordError(f"metrics.{f.name}: got {value!r}, expected an integer")
                values[f.name] = int(value)
            elif math.isfinite(value):  # a diverged child's NaN loss is no measurement
                values[f.name] = float(value)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None and v != ()}
        if self.val_accuracy_per_epoch:
            data["val_accuracy_per_epoch"] = list(self.val_accuracy_per_epoch)
        return data


@dataclass(frozen=True)
class TrialRecord:
    trial: int  # 1, 2, ... in the order the trials were asked for
    status: str  # one of STATUSES
    arch: dict[str, Any]  # the architecture as SearchSpace.from_json reads it: {"space", "choices"}
    values: dict[str, Any]  # its decisions by name ("layer0.filters": 32, ...)
    reward: float  # what the controller was told (a failure's: the lowest reward so far, or the space's)
    metrics: Metrics = field(default_factory=Metrics)
    hash: str | None = None  # the architecture's key
    error: str | None = None  # a failed trial's one-line reason
    traceback: str | None = None
    seconds: float | None = None  # from suggestion to result, start-up included
    node: str | None = None  # the Ray node and process that trained it
    pid: int | None = None
    finished: str | None = None  # ISO time, UTC

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @classmethod
    def from_json(cls, data: Any) -> TrialRecord:
        """A saved line's record, checked; RecordError names what is wrong."""
        if not isinstance(data, dict):
            raise RecordError(f"got {type(data).__name__}, not a JSON object")
        trial = data.get("trial")
        if not is_int(trial) or trial < 1:
            raise RecordError(f"trial: got {trial!r}, expected a positive integer")
        status = data.get("status")
        if status not in STATUSES:
            raise RecordError(f"status: got {status!r}, expected {', '.join(map(repr, STATUSES))}")
        if not is_number(data.get("reward")):
            raise RecordError(f"reward: got {data.get('reward')!r}, expected a number")
        arch = data.get("arch")
        if (
            not isinstance(arch, dict)
            or not isinstance(arch.get("choices"), list)
            or not all(is_int(c) for c in arch["choices"])
        ):
            raise RecordError(f"arch: got {_short(arch)}, expected an object with a list of integer choices")
        if not isinstance(data.get("values"), dict):
            raise RecordError(f"values: got {_short(data.get('values'))}, expected an object of decisions")
        metrics = data.get("metrics", {})
        if not isinstance(metrics, dict):
            raise RecordError(f"metrics: got {_short(metrics)}, expected an object")
        metrics = Metrics.from_result(metrics)
        for name in {"completed": ("val_accuracy", "params"), "stopped": ("val_accuracy",)}.get(status, ()):
            if getattr(metrics, name) is None:
                raise RecordError(f"metrics.{name}: missing, expected a number for a {status} trial")
        text = {}
        for name in ("hash", "error", "traceback", "node", "finished"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise RecordError(f"{name}: got {_short(value)}, expected text")
            text[name] = value
        seconds, pid = data.get("seconds"), data.get("pid")
        if seconds is not None and not is_number(seconds):
            raise RecordError(f"seconds: got {seconds!r}, expected a number")
        if pid is not None and not is_int(pid):
            raise RecordError(f"pid: got {pid!r}, expected an integer")
        return cls(
            trial=trial,
            status=status,
            arch=arch,
            values=data["values"],
            reward=float(data["reward"]),
            metrics=metrics,
            seconds=seconds,
            pid=pid,
            **text,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = self.metrics.to_json()
        return data


def top_trials(records: Iterable[TrialRecord], n: int = 5) -> list[TrialRecord]:
    """The best completed trials by reward, the earliest of equals first (as the search picks its winner)."""
    return sorted((r for r in records if r.completed), key=lambda r: (-r.reward, r.trial))[:n]


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_real(value: Any) -> bool:
    """A number, NaN and infinities included (JSON's NaN reads as one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
