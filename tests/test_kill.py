"""The driver of a real search is killed with SIGKILL at random moments and resumed each time: in
the end exactly the budget's trials are finished, numbered 1..N, no architecture trained twice,
and the summary agrees with trials.jsonl. (benchmarks/kill_resume.py repeats this many times.)"""

import json
import os
import random
import signal
import subprocess
import time

import pytest
from nas_commands import start_nas

ARGS = [
    "--space",
    "linear",
    "--data",
    "digits",
    "--epochs",
    "1",
    "--final-epochs",
    "10",
    "--no-dashboard",
    "--runs-dir",
    "runs",
    "--name",
    "killed",
    "--seed",
    "0",
]


def start(cwd, *extra):
    return start_nas("search", *ARGS, *extra, cwd=cwd, stdout=subprocess.DEVNULL)


def finished(run):
    path = run / "trials.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def kill_and_resume(cwd, budget, kills, rng, timeout=900):
    """Runs a search to its end, killing its driver up to `kills` times (never before its run
    directory exists: before that there is nothing to resume). Returns the run and the kills made."""
    run = cwd / "runs" / "killed"
    process = start(cwd, "--budget", str(budget))
    made = 0
    for _ in range(kills):
        # A random moment: once 0-2 more trials have finished, within 3 s (while Ray starts, while
        # children train, while the controller learns, while files are written).
        target = min(budget - 1, finished(run) + rng.randint(0, 2))
        while not (run / "config.json").exists() or finished(run) < target:
            if process.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 3))
        if process.poll() is not None:
            break
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        made += 1
        process = start(cwd, "--resume")
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr
    return run, made


@pytest.mark.parametrize("seed", [0])
def test_a_search_killed_twice_ends_with_every_trial_once(tmp_path, seed):
    """Two kills here; benchmarks/kill_resume.py repeats three kills ten times."""
    budget = 6
    run, kills = kill_and_resume(tmp_path, budget, kills=2, rng=random.Random(seed))
    assert kills == 2
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["trial"] for r in records) == list(range(1, budget + 1))
    assert all(r["status"] == "completed" for r in records)
    assert len({r["hash"] for r in records}) == budget  # no architecture trained twice
    summary = json.loads((run / "summary.json").read_text())
    best = max(records, key=lambda r: (r["reward"], -r["trial"]))
    assert summary["status"] == "finished" and summary["trials_completed"] == budget
    assert summary["best"]["trial"] == best["trial"] and summary["best"]["val_accuracy"] == best["reward"]
    assert summary["test_accuracy"] > 0.2  # above chance (0.1): the retrained winner was tested
    # Each resumed session notes itself in config.json once it runs; one killed before then does not.
    assert 1 <= len(json.loads((run / "config.json").read_text())["resumes"]) <= kills
