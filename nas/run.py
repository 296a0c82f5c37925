"""A run directory read back and checked: the one reader behind `--resume`, `nas export`, `nas runs`,
`nas show`, the report and `nas.open_run`. Writing is `nas.rundir`'s.

    run = open_run("cnn10-1", runs_dir="runs")   # a run's directory, or its name under runs_dir
    run.status, run.best.trial, run.best.metrics.val_accuracy, run.test_accuracy
    run.trials                                   # TrialRecords, in the order they finished
    run.space()                                  # the run's copy of its space file, parsed
    run.to_dataframe()                           # one row per trial (pandas)

Every file is checked as it is read, and what is wrong is an InputError naming the file, the line
or field, and what was expected. A run's status: `running` while a process holds the flock on its
`.lock` (the lock dies with its process), else the status its summary.json gives (finished,
stopped, interrupted, failed), else `killed`: a driver that died without writing a summary (kill
-9, a reboot). Nothing here imports TensorFlow or Ray.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nas.config import SearchConfig
from nas.errors import InputError
from nas.rundir import RunDir
from nas.trial_record import RecordError, TrialRecord, is_int, is_number, top_trials
from search_spaces import SearchSpace, SpaceError, parse_space

CONFIG, SPACE, TRIALS, STATE, SUMMARY = "config.json", "space.yaml", "trials.jsonl", "state.json", "summary.json"
BASE_FILE = "base.keras"  # a transfer search's copy of its --base model
DATA_FILE = "data.npz"  # a search on in-memory arrays (nas.search(data=(x, y))): the arrays


@dataclass
class Run:
    """A run directory's files, read and checked."""

    rundir: RunDir
    config: dict[str, Any]  # config.json: every resolved setting (SearchConfig's fields checked)
    trials: list[TrialRecord]  # in the order they finished
    state: dict[str, Any] | None  # state.json, or None before the first trial was asked
    summary: dict[str, Any] | None  # summary.json, or None while running or after a crash
    status: str  # running, finished, stopped, interrupted, failed, killed
    started: datetime | None
    checked_space: SearchSpace | None = field(default=None, repr=False, compare=False)  # read_run's, if it read it

    @property
    def path(self) -> Path:
        return self.rundir.path

    @property
    def name(self) -> str:
        return self.rundir.name

    @property
    def completed(self) -> list[TrialRecord]:
        return [r for r in self.trials if r.completed]

    @property
    def failed(self) -> list[TrialRecord]:
        return [r for r in self.trials if r.failed]

    @property
    def best(self) -> TrialRecord | None:
        """The best completed trial by reward (the earliest of equals), as the search picks it."""
        top = top_trials(self.trials, 1)
        return top[0] if top else None

    @property
    def test_accuracy(self) -> float | None:
        """The retrained winner's test accuracy, when the summary has one for today's best trial (a
        search resumed with a larger budget may have found a better one since)."""
        summary = self.summary or {}
        value, tested = summary.get("test_accuracy"), (summary.get("best") or {}).get("trial")
        best = self.best
        if not is_number(value) or best is None or tested != best.trial:
            return None
        return value

    @property
    def ensemble(self) -> list[int]:
        """The trials whose retrained models best/model.keras averages, best first (nas.ensemble), or
        [] when it is the winner alone; under the same condition as `test_accuracy`."""
        if self.test_accuracy is None:
            return []
        final = (self.summary or {}).get("final")
        members = final.get("members") if isinstance(final, dict) else None
        if members is None:
            return []
        completed = {r.trial for r in self.completed}
        trials = [m.get("trial") if isinstance(m, dict) else None for m in members] if isinstance(members, list) else []
        if len(trials) < 2 or not all(is_int(t) and t in completed for t in trials) or trials[0] != self.best.trial:
            raise InputError(
                f"{self.rundir.file(SUMMARY)}: final: members: got {members!r:.80}, expected the ensemble's "
                'completed trials ({"trial": N, ...}, the best first), as nas search writes them'
            )
        return trials

    @property
    def evaluation(self) -> dict[str, Any] | None:
        """The retrained winner's evaluation on the test split (nas.evaluation: per-class precision,
        recall and F1, the confusion matrix, ...), under the same condition as `test_accuracy`."""
        if self.test_accuracy is None:
            return None
        value = (self.summary or {}).get("evaluation")
        if value is None:
            return None  # a run of an earlier nas
        from nas.evaluation import problem

        wrong = problem(value)
        if wrong:
            raise InputError(f"{self.rundir.file(SUMMARY)}: evaluation: {wrong}, as nas search writes it")
        return value

    @property
    def space_name(self) -> str:
        return str((self.summary or {}).get("space") or Path(str(self.config.get("space", "?"))).stem)

    def space(self) -> SearchSpace:
        """The run's own copy of its space file, checked against the fingerprint config.json holds."""
        if self.checked_space is None:
            self.checked_space = read_space(self.rundir, self.config)
        return self.checked_space

    @property
    def class_names(self) -> list[str] | None:
        """The labels the model's outputs stand for, in order (config.json keeps them since nas 0.1)."""
        names = self.config.get("class_names")
        return [str(n) for n in names] if isinstance(names, list) else None

    def best_model(self):
        """The winner retrained on train + validation, or the ensemble of the best children the
        search returned (`ensemble`; nas.ensemble): best/model.keras, a keras.Model that takes raw
        0-255 pixels and gives class probabilities. InputError when the search has not retrained it."""
        path = self.rundir.file("best/model.keras")
        if not path.is_file():
            raise InputError(
                f"{path}: missing; the winner is retrained when the search finishes (run "
                f"{self.name!r} is {self.status}), or `nas export` retrains any trial"
            )
        if self.test_accuracy is None:
            raise InputError(
                f"{path}: from a session before the run's last, which did not retrain its winner (run "
                f"{self.name!r} is {self.status}); expected a finished search, or `nas export` retrains it"
            )
        from nas.quiet import import_tensorflow

        import_tensorflow()
        import keras

        return keras.models.load_model(path, compile=False)

    def to_dataframe(self):
        """One row per trial, in trial-number order (the record is in finishing order): its number,
        status, reward, metrics and decisions (pandas)."""
        import pandas as pd

        rows = [
            {
                "trial": r.trial,
                "status": r.status,
                "reward": r.reward,
                **r.metrics.to_json(),
                "error": r.error,
                **r.values,
            }
            for r in sorted(self.trials, key=lambda r: r.trial)
        ]
        return pd.DataFrame(rows).set_index("trial") if rows else pd.DataFrame()


def open_run(run: str | Path, runs_dir: str | Path = "runs") -> Run:
    """A run given as its directory or as its name under `runs_dir`, read and checked."""
    return read_run(find_run(run, runs_dir))


def find_run(run: str | Path, runs_dir: str | Path = "runs") -> RunDir:
    """A run given as its directory or as its name under `runs_dir`; InputError if there is none."""
    run = str(run)
    candidates = [Path(run)] + ([Path(runs_dir) / run] if not Path(run).is_absolute() else [])
    for path in candidates:
        if (path / CONFIG).is_file():
            return RunDir(path)
    folder = next((p for p in candidates if p.is_dir()), None)
    if folder is not None:
        raise InputError(f"{folder}: no config.json, expected a run directory written by nas search")
    raise InputError(
        f"{run}: no such run (neither a folder nor a run in {runs_dir}), expected a run directory "
        "written by nas search or its name"
    )


def read_run(rundir: RunDir, required: Iterable[str] = ("space", "budget"), architectures: bool = False) -> Run:
    """Reads and checks a run's files: config.json with the `required` settings, and with
    `architectures` its space file too, every trial's architecture checked against it."""
    config = read_config(rundir, required)
    space = read_space(rundir, config) if architectures else None
    trials = read_trials(rundir, space=space)
    state = rundir.read_saved(STATE) if rundir.file(STATE).exists() else None
    if state is not None and not isinstance(state, dict):
        raise InputError(f"{rundir.file(STATE)}: got {type(state).__name__}, expected a JSON object")
    summary = read_summary(rundir)
    return Run(
        rundir,
        config,
        trials,
        state,
        summary,
        status=run_status(rundir, summary, len(trials)),
        started=started(rundir),
        checked_space=space,
    )


def read_config(rundir: RunDir, required: Iterable[str] = ("space", "budget")) -> dict[str, Any]:
    """config.json, with the `required` keys, and each of SearchConfig's settings it holds of the
    type the setting takes."""
    config = rundir.read_saved(CONFIG, required=required)
    try:
        SearchConfig.from_json(config)
    except ValueError as e:
        raise InputError(f"{rundir.file(CONFIG)}: {e}") from None
    if "budget" in required and not is_int(config["budget"]):  # a run's config.json holds the resolved budget
        raise InputError(f"{rundir.file(CONFIG)}: budget: got {config['budget']!r}, expected an integer")
    return config


def read_summary(rundir: RunDir) -> dict[str, Any] | None:
    """summary.json, or None before a session has ended."""
    if not rundir.file(SUMMARY).exists():
        return None
    return rundir.read_saved(SUMMARY, required=("status",))


def read_space(rundir: RunDir, config: dict[str, Any]) -> SearchSpace:
    """The run's copy of its space file (what a resumed search searches), unchanged since it started."""
    path = rundir.file(SPACE)
    if not path.is_file():
        raise InputError(f"{path}: missing; expected the run's copy of its space file")
    try:
        space = parse_space(path.read_text(errors="replace"), source=str(path))
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror}); expected the run's copy of its space file") from None
    if config.get("space_fingerprint") not in (None, space.fingerprint()):
        raise InputError(f"{path}: changed since the search started; expected the run's own copy of its space file")
    return space


def read_trials(rundir: RunDir, repair: bool = False, space: SearchSpace | None = None) -> list[TrialRecord]:
    """trials.jsonl's records, each checked (a torn last line, left by a crash, is dropped, and with
    `repair` removed from the file). Given the run's space, each architecture is checked against it."""
    path = rundir.file(TRIALS)
    try:
        lines = rundir.trials(repair=repair)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; expected one JSON trial per line") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror}); expected the run's trials") from None
    records, seen = [], set()
    for number, line in enumerate(lines, 1):
        try:
            record = TrialRecord.from_json(line)
            if space is not None:
                space.from_json(record.arch)
        except (RecordError, SpaceError) as e:
            what = f"arch: {e}" if isinstance(e, SpaceError) else str(e)
            raise InputError(f"{path}: line {number}: {what}; expected a trial as nas search writes it") from None
        if record.trial in seen:
            raise InputError(
                f"{path}: line {number}: trial {record.trial} is recorded twice; expected one line per trial"
            )
        seen.add(record.trial)
        records.append(record)
    return records


def is_locked(path: str | Path) -> bool:
    """Whether a live process holds the run's `.lock` (a running search). A shared, non-blocking
    flock is tried and dropped at once: it fails only against the search's exclusive lock."""
    try:
        fd = os.open(Path(path) / ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def lock_holder(path: str | Path) -> str | None:
    """What the `.lock` file says of its holder ("process 123 on host since ..."), if anything."""
    try:
        return (Path(path) / ".lock").read_text(errors="replace").strip() or None
    except OSError:
        return None


def run_status(rundir: RunDir, summary: dict[str, Any] | None, trials: int) -> str:
    """running (locked), else the summary's status, else killed. A summary that counts fewer
    trials than trials.jsonl holds is an earlier session's: the session after it was killed."""
    if is_locked(rundir.path):
        return "running"
    if summary is None:
        return "killed"
    counted = [summary.get("trials_completed"), summary.get("trials_failed")]
    if all(is_int(c) for c in counted) and sum(counted) < trials:
        return "killed"
    return str(summary.get("status"))


def started(rundir: RunDir) -> datetime | None:
    """When the run began: config.json's `started`, or for runs written before nas kept it, the
    time its space.yaml and config.json were written (only config.json is rewritten, on resume)."""
    try:
        return datetime.fromisoformat(rundir.read_saved(CONFIG)["started"])
    except (InputError, ValueError, KeyError, TypeError):
        pass
    times = [p.stat().st_mtime for p in (rundir.file(SPACE), rundir.file(CONFIG)) if p.exists()]
    return datetime.fromtimestamp(min(times)) if times else None
