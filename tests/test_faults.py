"""Children that fail for real inside Ray workers: an exception, a diverging loss, a worker process
that dies, a child past --trial-timeout (slow, or hung). Each is recorded with its reason, the
controller is told, and the search goes on; failures in a row stop it with exit code 3, and it
resumes once the limit is raised; a failed final training stops it too, and a resume retrains."""

import json

from nas_commands import run_nas

FAST = [
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
]


def trials(run):
    return [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]


def test_each_kind_of_child_fault_is_recorded_and_the_search_goes_on(tmp_path):
    result = run_nas(
        "search",
        *FAST,
        "--name",
        "faults",
        "--budget",
        "7",
        "--controller",
        "random",
        "--trial-timeout",
        "20",
        "--max-failures",
        "10",
        cwd=tmp_path,
        timeout=900,
        faults="2:raise,3:nan,4:exit,5:slow,6:hang",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # the reasons are in trials.jsonl, not tracebacks on stderr
    in_order = trials(tmp_path / "runs" / "faults")
    records = {r["trial"]: r for r in in_order}
    assert sorted(records) == list(range(1, 8))
    reasons = {n: r["error"] for n, r in records.items() if r["status"] == "failed"}
    assert sorted(reasons) == [2, 3, 4, 5, 6], reasons
    assert reasons[2].startswith("InjectedFault: fault injected into trial 2")
    assert reasons[3].startswith("ChildFailed: training loss became nan")
    assert reasons[4].startswith("WorkerDied: the worker process (") and "died: Worker unexpectedly exits" in reasons[4]
    assert reasons[5] == "TrialTimeout: ran past --trial-timeout 20s"  # stopped at a training step
    assert reasons[6].startswith("TrialTimeout: ran past --trial-timeout 20s; its worker was stopped")
    assert records[6]["pid"] is not None  # reported by the watchdog itself before it ended the worker
    for i, r in enumerate(in_order):  # a failure's reward: the lowest reward so far (0 before any)
        if r["status"] == "failed":
            assert r["reward"] == min((p["reward"] for p in in_order[:i] if p["status"] == "completed"), default=0)
    summary = json.loads((tmp_path / "runs" / "faults" / "summary.json").read_text())
    assert (summary["status"], summary["trials_completed"], summary["trials_failed"]) == ("finished", 2, 5)
    assert summary["test_accuracy"] > 0.2  # above chance (0.1): the retrained winner was tested


def test_failures_in_a_row_stop_the_search_and_it_resumes_with_a_higher_limit(tmp_path):
    stopped = run_nas(
        "search",
        *FAST,
        "--name",
        "run",
        "--budget",
        "4",
        "--workers",
        "1",
        "--max-failures",
        "2",
        cwd=tmp_path,
        timeout=900,
        faults="1:raise,2:raise",
    )
    assert stopped.returncode == 3, stopped.stderr
    (line,) = stopped.stderr.strip().splitlines()
    assert line.startswith("nas: error: search stopped: 2 trials failed in a row (--max-failures 2)")
    assert "--resume" in line and "Traceback" not in stopped.stderr
    run = tmp_path / "runs" / "run"
    assert [(r["trial"], r["status"]) for r in trials(run)] == [(1, "failed"), (2, "failed")]
    assert json.loads((run / "summary.json").read_text())["status"] == "stopped"

    refused = run_nas("search", "--name", "run", "--runs-dir", "runs", "--resume", "--space", "dnn", cwd=tmp_path)
    assert refused.returncode == 2 and "--space: run 'run' was started with 'linear', got 'dnn'" in refused.stderr

    # As if the run had been started on a Ray cluster that has gone since: `--address local` forgets it.
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "address": "127.0.0.1:1"}))
    gone = run_nas("search", "--name", "run", "--runs-dir", "runs", "--resume", cwd=tmp_path)
    assert gone.returncode == 2 and "--address: cannot reach a Ray cluster at '127.0.0.1:1'" in gone.stderr

    resume = ["search", "--name", "run", "--runs-dir", "runs", "--resume", "--no-dashboard"]
    resumed = run_nas(*resume, "--max-failures", "5", "--address", "local", cwd=tmp_path, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    records = trials(run)
    assert [r["trial"] for r in records] == [1, 2, 3, 4]
    assert [r["status"] for r in records[2:]] == ["completed", "completed"]
    assert len({r["hash"] for r in records}) == 4
    config = json.loads((run / "config.json").read_text())
    assert config["max_failures"] == 5 and config["space"] == "linear" and len(config["resumes"]) == 1
    assert config["address"] is None
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["trials_completed"], summary["trials_failed"]) == ("finished", 2, 2)
    assert "members" not in summary["final"] and (run / "best" / "model.keras").is_file()

    # The finished run resumed with another --ensemble retrains its final model and searches nothing:
    # here the ensemble of the best two, whose second member's final training fails, so the search
    # stops in one line naming the member, the other cancelled, every trial kept; the winner alone
    # that best/ held is no longer the run's model (its summary has no final model now).
    ensemble = run_nas(*resume, "--ensemble", "2", cwd=tmp_path, timeout=900, faults="final2:raise")
    assert ensemble.returncode == 3, ensemble.stderr
    (line,) = ensemble.stderr.strip().splitlines()
    assert line.startswith("nas: error: search stopped: retraining the best 2 children (trials ")
    assert ") failed: member 2: " in line and "Traceback" not in ensemble.stderr
    assert "InjectedFault: fault injected into final training 2" in line and line.endswith("tries again")
    assert [r["trial"] for r in trials(run)] == [1, 2, 3, 4]
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["final"], summary["test_accuracy"]) == ("stopped", None, None)
    assert json.loads((run / "config.json").read_text())["ensemble"] == 2
