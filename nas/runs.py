"""The runs under a runs folder, and one run's summary: `nas runs` and `nas show`.

    for info in list_runs("runs"):          # one RunInfo per run directory, oldest first
        print(info.name, info.status, info.best_val_accuracy)
    print_runs("runs")                      # the table `nas runs` prints
    show_run("cnn10-1", runs_dir="runs")    # `nas show`: the summary and the top 5

Runs are read by `nas.run`; a directory whose files cannot be read as nas wrote them is `damaged`
here. Nothing here imports TensorFlow or Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from nas.errors import InputError
from nas.run import CONFIG, SPACE, STATE, SUMMARY, TRIALS, find_run, is_locked, lock_holder, read_run, started
from nas.rundir import RunDir
from nas.trial_record import is_int, is_number

# A directory holding any of these is a run (maybe a damaged one); others are skipped.
RUN_FILES = (CONFIG, SPACE, TRIALS, STATE, SUMMARY)


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


def run_info(path: Path) -> RunInfo:
    """One run's row; a run whose files cannot be read is `damaged` (never an exception)."""
    rundir = RunDir(path)
    try:
        run = read_run(rundir)
    except (InputError, OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        status = "running" if is_locked(path) else "damaged"
        return RunInfo(path.name, rundir.path, status, started=started(rundir), problem=str(e))
    best = run.best
    return RunInfo(
        path.name,
        rundir.path,
        run.status,
        space=run.space_name,
        done=len(run.trials),
        budget=run.config["budget"],
        failed=len(run.failed),
        best_val_accuracy=best and best.metrics.val_accuracy,
        test_accuracy=run.test_accuracy,
        started=run.started,
    )


def list_runs(runs_dir: str | Path = "runs") -> list[RunInfo]:
    """Every run directory under `runs_dir`, oldest first. Folders holding none of a run's files
    (and hidden ones, such as a run being created) are skipped."""
    folder = Path(runs_dir)
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such folder"
        raise InputError(f"runs_dir: {runs_dir}: {what}, expected the folder nas search writes its runs into")
    try:
        runs = [
            run_info(p)
            for p in sorted(folder.iterdir())
            if not p.name.startswith(".") and p.is_dir() and any((p / f).exists() for f in RUN_FILES)
        ]
    except OSError as e:
        raise InputError(
            f"runs_dir: {e.filename or runs_dir}: cannot read it ({e.strerror}); expected a folder you can read"
        ) from None
    return sorted(runs, key=lambda r: (r.started or datetime.max, r.name))


def print_runs(runs_dir: str | Path = "runs") -> None:
    """Prints the table of `nas runs`, and a line per damaged run saying what is wrong."""
    from rich.markup import escape
    from rich.table import Table

    from nas.progress import reporter

    runs = list_runs(runs_dir)
    if not runs:
        reporter().line(f"No runs in {escape(str(runs_dir))}")
        return
    colors = {
        "running": "cyan",
        "finished": "green",
        "interrupted": "yellow",
        "stopped": "yellow",
        "killed": "red",
        "failed": "red",
        "damaged": "red",
    }
    table = Table(title=f"Runs in {escape(str(runs_dir))}", title_justify="left")
    for column in ("run", "space", "trials", "failed", "best val", "test", "status", "started"):
        table.add_column(column, justify="right" if column in ("trials", "failed", "best val", "test") else "left")
    for r in runs:
        trials = f"{r.done}/{r.budget}" if r.done is not None else "-"
        color = colors.get(r.status, "white")
        table.add_row(
            escape(r.name),
            escape(r.space),
            trials,
            "-" if r.failed is None else str(r.failed),
            _fmt(r.best_val_accuracy),
            _fmt(r.test_accuracy),
            f"[{color}]{escape(r.status)}[/{color}]",
            f"{r.started:%Y-%m-%d %H:%M}" if r.started else "-",
        )
    reporter().line(table)
    for r in runs:
        if r.problem:
            reporter().line(f"{escape(r.name)}: {r.status}: {escape(r.problem)}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def show_run(run: str | Path, runs_dir: str | Path = "runs") -> None:
    """Prints `nas show`: a run's status, counts, best trial, test accuracy and top 5."""
    from rich.markup import escape

    from nas.progress import duration, print_top, reporter

    data = read_run(find_run(run, runs_dir))
    rundir, summary, best = data.rundir, data.summary or {}, data.best
    lines = [("run", f"{rundir.name} ({rundir.path})"), ("status", data.status)]
    if data.status == "running":
        holder = lock_holder(rundir.path)
        lines[-1] = ("status", f"running{f' ({holder})' if holder else ''}")
    reward = data.config.get("reward", data.config.get("objective", "accuracy"))
    reward = reward if isinstance(reward, str) else json.dumps(reward)
    lines += [
        ("space", f"{data.space_name}, controller {data.config.get('controller', '?')}, reward {reward}"),
        ("started", f"{data.started:%Y-%m-%d %H:%M:%S}" if data.started else "-"),
        (
            "trials",
            f"{len(data.trials)} of {data.config['budget']} finished: {len(data.completed)} completed, "
            f"{len(data.failed)} failed"
            + (
                f", {summary['duplicates_skipped']} duplicates skipped"
                if is_int(summary.get("duplicates_skipped"))
                else ""
            ),
        ),
    ]
    if best:
        lines.append(
            (
                "best",
                f"trial {best.trial}: reward {best.reward:.4f}, val accuracy "
                f"{best.metrics.val_accuracy:.4f}, {best.metrics.params:,} params",
            )
        )
    else:
        lines.append(("best", "none: no trial completed"))
    test = data.test_accuracy
    epochs = data.config.get("final_epochs")
    ensemble = data.ensemble
    retrained = (
        f"the ensemble of trials {', '.join(map(str, ensemble))}" if ensemble else "the winner"
    ) + f" retrained on train + validation{f' for {epochs} epochs' if epochs else ''}"
    lines.append(
        ("test accuracy", f"{test:.4f} ({retrained})" if test is not None else "none: the winner was not retrained")
    )
    if is_number(summary.get("wall_seconds")):
        lines.append(("time", f"{duration(summary['wall_seconds'])} (the latest session)"))
    report = rundir.file("report.html")
    lines.append(("report", str(report) if report.exists() else f"none yet (nas report {rundir.path})"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        reporter().line(f"{key:<{width}}  {escape(value)}")
    # Decisions are user text: escaped, so that rich prints "[x]" in a value as it is.
    safe = [
        replace(r, values={escape(str(k)): escape(v) if isinstance(v, str) else v for k, v in r.values.items()})
        for r in data.trials
    ]
    print_top(safe, test if data.completed else None, ensemble=ensemble)
    evaluation = data.evaluation
    if evaluation is not None:
        from nas.evaluation import text

        which = "ensemble" if ensemble else "winner"
        reporter().line(f"\nThe {which} on the test split\n{escape(text(evaluation))}")
