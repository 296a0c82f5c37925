"""--scheduler asha: Ray Tune's ASHAScheduler stops poor children early; the search records them."""

import json

from nas_commands import run_nas


def test_asha_stops_trailing_children_and_the_controller_learns_from_their_last_epoch(tmp_path):
    done = run_nas(
        "search",
        "--space",
        "linear",
        "--data",
        "digits",
        "--controller",
        "random",
        "--budget",
        "8",
        "--epochs",
        "3",
        "--final-epochs",
        "2",
        "--workers",
        "2",
        "--scheduler",
        "asha",
        "--grace-period",
        "1",
        "--reduction-factor",
        "2",
        "--no-dashboard",
        "--runs-dir",
        "runs",
        "--name",
        "a",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "a"
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert sorted(t["trial"] for t in trials) == list(range(1, 9))
    stopped = [t for t in trials if t["status"] == "stopped"]
    completed = [t for t in trials if t["status"] == "completed"]
    assert stopped and completed and len(stopped) + len(completed) == 8, [t["status"] for t in trials]
    for t in stopped:  # stopped at a rung (epoch 1 or 2), rewarded with that epoch's validation accuracy
        assert t["metrics"]["epochs"] in (1, 2) and t["reward"] == t["metrics"]["val_accuracy"] > 0
        assert t["metrics"]["params"] > 0 and t["metrics"]["fit_seconds"] > 0
    assert all(t["metrics"]["epochs"] == 3 for t in completed)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trials_stopped_early"] == len(stopped) and summary["trials_completed"] == len(completed)
    assert summary["best"]["trial"] in {t["trial"] for t in completed}
    assert "stopped early after" in done.stdout


def test_a_grace_period_asha_cannot_use_is_refused(tmp_path):
    done = run_nas(
        "search",
        "--space",
        "linear",
        "--data",
        "digits",
        "--epochs",
        "2",
        "--scheduler",
        "asha",
        "--grace-period",
        "2",
        "--runs-dir",
        "runs",
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2 and "--grace-period: got 2, expected fewer than the 2 epochs" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_a_space_may_choose_asha_and_gives_way_to_fifo_where_asha_cannot_work(tmp_path):
    """cnn10's recipe says `scheduler: asha`; --scheduler overrides it, and with children of one epoch
    (nothing for ASHA to stop) or an objective that needs every child's latency the space's ASHA
    gives way to fifo, where --scheduler asha would be refused."""
    from nas.config import SearchConfig
    from nas.engine import _new

    def scheduler(space="cnn10", **given):
        _, config, _, _ = _new(SearchConfig(space=space, runs_dir=str(tmp_path), **given))
        return config.scheduler

    assert scheduler() == "asha"
    assert scheduler(scheduler="fifo") == "fifo"
    assert scheduler(epochs=1) == "fifo"
    assert scheduler(epochs=2, grace_period=2) == "fifo"
    assert scheduler(objective="accuracy-latency") == "fifo"
    assert scheduler(space="dnn") == "fifo"  # a space that says nothing: fifo
    assert scheduler(strategy="enas") == "fifo"  # its finalists all train to the end
    assert not any(tmp_path.iterdir())  # resolving the settings writes nothing
