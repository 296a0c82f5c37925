"""The runs under a runs folder, and one run read back from its directory: `nas runs` and `nas show`.

    for info in list_runs("runs"):          # one RunInfo per run directory, oldest first
        print(info.name, info.status, info.best_val_accuracy)
    print_runs("runs")                      # the table `nas runs` prints
    show_run("cnn10-1", runs_dir="runs")    # `nas show`: the summary and the top 5
    run = load_run(find_run("cnn10-1"))     # config, trials, state and summary, checked

A run's status: `running` while a process holds the flock on its `.lock` (the lock dies with its
process), else the status its summary.json gives (finished, stopped, interrupted, failed), else
`killed`: a driver that died without writing a summary (kill -9, a reboot). A directory whose files
cannot be read as nas wrote them is `damaged`. Nothing here imports TensorFlow or Ray.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nas.errors import InputError
from nas.rundir import RunDir, top_trials

# A directory holding any of these is a run (maybe a damaged one); others are skipped.
RUN_FILES = ("config.json", "space.yaml", "trials.jsonl", "state.json", "summary.json")


@dataclass
class Run:
    """A run directory's files, read and checked."""

    rundir: RunDir
    config: dict[str, Any]
    trials: list[dict[str, Any]]  # in the order they finished
    state: dict[str, Any] | None  # state.json, or None before the first trial was asked
    summary: dict[str, Any] | None  # summary.json, or None while running or after a crash
    status: str  # running, finished, stopped, interrupted, failed, killed
    started: datetime | None

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [r for r in self.trials if r["status"] == "completed"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.trials if r["status"] == "failed"]

    @property
    def best(self) -> dict[str, Any] | None:
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
        if not _is_number(value) or best is None or tested != best["trial"]:
            return None
        return value

    @property
    def space_name(self) -> str:
        return str((self.summary or {}).get("space") or Path(str(self.config.get("space", "?"))).stem)


@dataclass
class RunInfo:
    """One row of `nas runs`."""

    name: str
    path: Path
    status: str
    space: str = "-"
    done: int | None = None
    budget: int | None = None
    failed: int | None = None
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    started: datetime | None = None
    problem: str | None = None  # why a damaged run is damaged


def find_run(run: str | Path, runs_dir: str | Path = "runs") -> RunDir:
    """A run given as its directory or as its name under `runs_dir`; InputError if there is none."""
    run = str(run)
    candidates = [Path(run)] + ([Path(runs_dir) / run] if not Path(run).is_absolute() else [])
    for path in candidates:
        if (path / "config.json").is_file():
            return RunDir(path)
    folder = next((p for p in candidates if p.is_dir()), None)
    if folder is not None:
        raise InputError(f"{folder}: no config.json, expected a run directory written by nas search")
    raise InputError(f"{run}: no such run (neither a folder nor a run in {runs_dir}), expected a run directory "
                     "written by nas search or its name")


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


def load_run(rundir: RunDir) -> Run:
    """Reads and checks a run's files; an InputError names the file, the line or field, and what
    was expected."""
    config = rundir.read_saved("config.json", required=("space", "budget"))
    if not isinstance(config.get("budget"), int) or isinstance(config["budget"], bool):
        raise InputError(f"{rundir.file('config.json')}: budget: got {config.get('budget')!r}, expected an integer")
    trials = read_trials(rundir)
    state = rundir.read_saved("state.json") if rundir.file("state.json").exists() else None
    if state is not None and not isinstance(state, dict):
        raise InputError(f"{rundir.file('state.json')}: got {type(state).__name__}, expected a JSON object")
    summary = rundir.read_saved("summary.json", required=("status",)) if rundir.file("summary.json").exists() else None
    return Run(rundir, config, trials, state, summary, status=run_status(rundir, summary, len(trials)),
               started=started(rundir))


def read_trials(rundir: RunDir) -> list[dict[str, Any]]:
    """trials.jsonl's records, each checked for the fields a report reads (a torn last line, left
    by a crash, is dropped)."""
    path = rundir.file("trials.jsonl")
    try:
        records = rundir.trials()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; expected one JSON trial per line") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror}); expected the run's trials") from None
    for line, r in enumerate(records, 1):
        problem = _record_problem(r)
        if problem:
            raise InputError(f"{path}: line {line}: {problem}; expected a trial as nas search writes it")
    return records


def _record_problem(r: Any) -> str | None:
    if not isinstance(r, dict):
        return f"got {type(r).__name__}, not a JSON object"
    if not _is_int(r.get("trial")):
        return f"trial: got {r.get('trial')!r}, expected an integer"
    if r.get("status") not in ("completed", "stopped", "failed"):
        return f"status: got {r.get('status')!r}, expected 'completed', 'stopped' or 'failed'"
    if not _is_number(r.get("reward")):
        return f"reward: got {r.get('reward')!r}, expected a number"
    if not isinstance(r.get("values"), dict):
        return f"values: got {r.get('values')!r}, expected an object of decisions"
    if r["status"] == "completed":
        metrics = r.get("metrics")
        if not isinstance(metrics, dict):
            return f"metrics: got {metrics!r}, expected an object"
        for key in ("val_accuracy", "params"):
            if not _is_number(metrics.get(key)):
                return f"metrics.{key}: got {metrics.get(key)!r}, expected a number"
        metrics.setdefault("fit_seconds", 0.0)
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def run_status(rundir: RunDir, summary: dict[str, Any] | None, trials: int) -> str:
    """running (locked), else the summary's status, else killed. A summary that counts fewer
    trials than trials.jsonl holds is an earlier session's: the session after it was killed."""
    if is_locked(rundir.path):
        return "running"
    if summary is None:
        return "killed"
    counted = [summary.get("trials_completed"), summary.get("trials_failed")]
    if all(_is_int(c) for c in counted) and sum(counted) < trials:
        return "killed"
    return str(summary.get("status"))


def started(rundir: RunDir) -> datetime | None:
    """When the run began: config.json's `started`, or for runs written before nas kept it, the
    time its space.yaml and config.json were written (only config.json is rewritten, on resume)."""
    try:
        return datetime.fromisoformat(json.loads(rundir.file("config.json").read_text())["started"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    times = [p.stat().st_mtime for p in (rundir.file("space.yaml"), rundir.file("config.json")) if p.exists()]
    return datetime.fromtimestamp(min(times)) if times else None


def run_info(path: Path) -> RunInfo:
    """One run's row; a run whose files cannot be read is `damaged` (never an exception)."""
    rundir = RunDir(path)
    try:
        run = load_run(rundir)
    except (InputError, OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        status = "running" if is_locked(path) else "damaged"
        return RunInfo(path.name, rundir.path, status, started=started(rundir), problem=str(e))
    best = run.best
    return RunInfo(path.name, rundir.path, run.status, space=run.space_name, done=len(run.trials),
                   budget=run.config["budget"], failed=len(run.failed),
                   best_val_accuracy=best and best["metrics"]["val_accuracy"], test_accuracy=run.test_accuracy,
                   started=run.started)


def list_runs(runs_dir: str | Path = "runs") -> list[RunInfo]:
    """Every run directory under `runs_dir`, oldest first. Folders holding none of a run's files
    (and hidden ones, such as a run being created) are skipped."""
    folder = Path(runs_dir)
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such folder"
        raise InputError(f"--runs-dir: {runs_dir}: {what}, expected the folder nas search writes its runs into")
    try:
        runs = [run_info(p) for p in sorted(folder.iterdir())
                if not p.name.startswith(".") and p.is_dir() and any((p / f).exists() for f in RUN_FILES)]
    except OSError as e:
        raise InputError(f"--runs-dir: {e.filename or runs_dir}: cannot read it ({e.strerror}); expected a folder "
                         "you can read") from None
    return sorted(runs, key=lambda r: (r.started or datetime.max, r.name))


def print_runs(runs_dir: str | Path = "runs") -> None:
    """Prints the table of `nas runs`, and a line per damaged run saying what is wrong."""
    from rich.markup import escape
    from rich.table import Table

    from nas.progress import console

    runs = list_runs(runs_dir)
    if not runs:
        console.print(f"No runs in {escape(str(runs_dir))}")
        return
    colors = {"running": "cyan", "finished": "green", "interrupted": "yellow", "stopped": "yellow",
              "killed": "red", "failed": "red", "damaged": "red"}
    table = Table(title=f"Runs in {escape(str(runs_dir))}", title_justify="left")
    for column in ("run", "space", "trials", "failed", "best val", "test", "status", "started"):
        table.add_column(column, justify="right" if column in ("trials", "failed", "best val", "test") else "left")
    for r in runs:
        trials = f"{r.done}/{r.budget}" if r.done is not None else "-"
        color = colors.get(r.status, "white")
        table.add_row(escape(r.name), escape(r.space), trials, "-" if r.failed is None else str(r.failed),
                      _fmt(r.best_val_accuracy), _fmt(r.test_accuracy), f"[{color}]{escape(r.status)}[/{color}]",
                      f"{r.started:%Y-%m-%d %H:%M}" if r.started else "-")
    console.print(table)
    for r in runs:
        if r.problem:
            console.print(f"{escape(r.name)}: {r.status}: {escape(r.problem)}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def show_run(run: str | Path, runs_dir: str | Path = "runs") -> None:
    """Prints `nas show`: a run's status, counts, best trial, test accuracy and top 5."""
    from rich.markup import escape

    from nas.progress import console, duration, print_top

    data = load_run(find_run(run, runs_dir))
    rundir, summary, best = data.rundir, data.summary or {}, data.best
    lines = [("run", f"{rundir.name} ({rundir.path})"), ("status", data.status)]
    if data.status == "running":
        holder = lock_holder(rundir.path)
        lines[-1] = ("status", f"running{f' ({holder})' if holder else ''}")
    reward = data.config.get("reward", data.config.get("objective", "accuracy"))
    reward = reward if isinstance(reward, str) else json.dumps(reward)
    lines += [("space", f"{data.space_name}, controller {data.config.get('controller', '?')}, reward {reward}"),
              ("started", f"{data.started:%Y-%m-%d %H:%M:%S}" if data.started else "-"),
              ("trials", f"{len(data.trials)} of {data.config['budget']} finished: {len(data.completed)} completed, "
                         f"{len(data.failed)} failed"
                         + (f", {summary['duplicates_skipped']} duplicates skipped"
                            if _is_int(summary.get("duplicates_skipped")) else ""))]
    if best:
        m = best["metrics"]
        lines.append(("best", f"trial {best['trial']}: reward {best['reward']:.4f}, val accuracy "
                              f"{m['val_accuracy']:.4f}, {int(m['params']):,} params"))
    else:
        lines.append(("best", "none: no trial completed"))
    test = data.test_accuracy
    epochs = data.config.get("final_epochs")
    retrained = f"the winner retrained on train + validation{f' for {epochs} epochs' if epochs else ''}"
    lines.append(("test accuracy", f"{test:.4f} ({retrained})" if test is not None
                  else "none: the winner was not retrained"))
    if _is_number(summary.get("wall_seconds")):
        lines.append(("time", f"{duration(summary['wall_seconds'])} (the latest session)"))
    report = rundir.file("report.html")
    lines.append(("report", str(report) if report.exists() else f"none yet (nas report {rundir.path})"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        console.print(f"{key:<{width}}  {escape(value)}")
    # Decisions are user text: escaped, so that rich prints "[x]" in a value as it is.
    safe = [{**r, "values": {escape(str(k)): escape(v) if isinstance(v, str) else v for k, v in r["values"].items()}}
            for r in data.trials]
    print_top(safe, test if data.completed else None)
