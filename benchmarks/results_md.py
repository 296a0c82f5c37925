"""What the benchmark scripts share: writing one benchmark's section of benchmarks/RESULTS.md
(machine, date, command and figures), its tables, and running `nas search` in a subprocess.

    write_section("Course ladder", command="python benchmarks/course_ladder.py", body=table(header, rows))

A section is replaced when its benchmark runs again; the others are kept.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
PROJECT = RESULTS.parent.parent
RAY_RETRY_SECONDS = 60  # wait before the one retry of a search that could not start Ray on a busy machine
HEADER = (
    "# Benchmark results\n\n"
    "Each section is written by its script (see README.md here); rerun the script to refresh it.\n"
)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}"


def write_section(title: str, command: str, body: str, date: str | None = None) -> None:
    """Writes the section `title`, dated `date` (when its figures were measured; default now)."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    section = (
        f"## {title}\n\n- **Date:** {date or f'{datetime.now():%Y-%m-%d %H:%M}'}\n- **Machine:** {machine()}\n"
        f"- **Command:** `{command}`\n\n{body.strip()}\n"
    )
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n")  # the last section, replaced, leaves no blank line behind


def command_line() -> str:
    return " ".join(["python", *sys.argv])


def finish(out: Path, result: dict, title: str, report, measured: bool) -> None:
    """Ends a benchmark that keeps its results in `out` (JSON): saves them, with the command after a
    measuring run (a --report-only run keeps the command of the run that measured, and saves only a
    new --note), then renders the RESULTS.md section `title` with `report(result)`, dated when its
    figures were measured, and prints it."""
    if measured:
        result["command"] = command_line()
        result["date"] = f"{datetime.now():%Y-%m-%d %H:%M}"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    body = report(result)
    write_section(title, result.get("command", command_line()), body, result.get("date"))
    print(body)


def run_in_processes(result: dict, out: Path, jobs: dict[str, tuple[Callable, tuple]], workers: int) -> None:
    """Runs each of `jobs` (its key in result["runs"] -> a function and its arguments), in their
    order, in `workers` spawned processes; saves each return value in result["runs"], and `result`
    in `out`, as it ends, so that a killed benchmark keeps what finished."""
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(function, *arguments): name for name, (function, arguments) in jobs.items()}
        for future in as_completed(futures):
            name = futures[future]
            result["runs"][name] = future.result()
            print(name, result["runs"][name], flush=True)
            out.write_text(json.dumps(result, indent=1))


def returned_ensemble(final: dict) -> bool:
    """Whether a search's final model averaged several children: `final` is its summary.json's
    "final", or the entry hand_network.py saved for it (each lists the members of an ensemble)."""
    return len(final.get("members") or []) > 1


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    return "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows)]
    )


def nas_search(runs: Path, name: str, *args: str) -> tuple[Path, float]:
    """Runs `python -m nas.cli search ARGS --no-dashboard --runs-dir RUNS --name NAME` from the project;
    returns the run directory and the process's wall seconds (Ray's start-up and the final training
    included). A search that could not start Ray is tried once more, in NAME-retry; any other failure
    ends the benchmark with the search's output. The tests' fault-injection variable is not passed on,
    so a shell left with it set cannot skew a measurement."""
    command = [sys.executable, "-m", "nas.cli", "search", *args, "--no-dashboard", "--runs-dir", str(runs)]
    env = {k: v for k, v in os.environ.items() if k != "NAS_TEST_FAULTS"}
    for attempt in (name, f"{name}-retry"):
        start = time.perf_counter()
        done = subprocess.run([*command, "--name", attempt], capture_output=True, text=True, cwd=PROJECT, env=env)
        if done.returncode == 0:
            return runs / attempt, time.perf_counter() - start
        if attempt == name and "could not start Ray" in done.stderr + done.stdout:
            time.sleep(RAY_RETRY_SECONDS)
            continue
        break
    raise SystemExit(f"{' '.join(command)} --name {attempt} failed:\n{done.stderr[-3000:]}{done.stdout[-2000:]}")


def read_summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def space_fingerprint(space: str) -> str:
    """The fingerprint of the built-in space `space` as it is today."""
    from search_spaces import load_space

    return load_space(space).fingerprint()


def finished_run(run: Path, space: str) -> dict | None:
    """The summary of a finished search of today's `space` in `run`, or None when there is none to
    reuse; a finished search of another version of the space ends the benchmark with one line (its
    numbers would stand beside today's as if comparable)."""
    if not (run / "summary.json").is_file() or read_summary(run).get("status") != "finished":
        return None
    saved = json.loads((run / "config.json").read_text())["space_fingerprint"]
    if saved != space_fingerprint(space):
        raise SystemExit(
            f"{run}: a search of another {space} (space fingerprint {saved}); expected today's, or another --runs-dir"
        )
    return read_summary(run)


def default_controller_settings(space: str, budget: int) -> dict:
    """The settings today's default controller (REINFORCE) resolves for `space` at `budget`, as a
    search's config.json records them."""
    import dataclasses

    from controllers import controller_settings
    from search_spaces import load_space

    settings = controller_settings("reinforce", load_space(space), budget=budget)
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def measured_today(entry: dict | None, space: str, budget: int) -> bool:
    """Whether a default search saved in a benchmark's JSON (`entry`) was of today's `space` at
    `budget`, with the settings today's REINFORCE resolves: the space's fingerprint leaves out the
    controller's own defaults, so a search saved before they changed is not today's."""
    return (
        bool(entry)
        and entry.get("budget") == budget
        and entry.get("space_fingerprint") == space_fingerprint(space)
        and entry.get("controller_settings") == default_controller_settings(space, budget)
    )


def wall_seconds(run: Path) -> float:
    """From the search's start (config.json, once Ray is up) to its summary, the final training
    included: a resumed run's sessions and the pause between them too, where summary.json's
    wall_seconds counts only its last session."""
    started = datetime.fromisoformat(json.loads((run / "config.json").read_text())["started"])
    return (datetime.fromtimestamp((run / "summary.json").stat().st_mtime) - started).total_seconds()


def read_trials(run: Path) -> list[dict]:
    """trials.jsonl's records, read and checked as nas reads them, as the JSON of each line."""
    from nas.run import read_trials as read_checked
    from nas.rundir import RunDir

    return [record.to_json() for record in read_checked(RunDir(run))]
