"""What a search prints while it runs: one line per trial, and a live status line in a terminal."""

import io
import time

from rich.console import Console

from nas import progress
from nas.trial_record import Metrics, TrialRecord


def record(trial, reward, status="completed"):
    metrics = Metrics(val_accuracy=reward, params=1234, fit_seconds=2.0) if status == "completed" else Metrics()
    return TrialRecord(
        trial=trial,
        status=status,
        arch={"space": "s", "choices": [0]},
        values={},
        reward=reward,
        metrics=metrics,
        error=None if status == "completed" else "InjectedFault: boom",
    )


def printed(terminal: bool, running=None):
    out = io.StringIO()
    reporter = progress.Reporter()
    reporter.console = Console(file=out, force_terminal=terminal, width=160, color_system=None, highlight=False)
    printer = progress.TrialPrinter(3, running=running)
    with progress.reporting(reporter), printer.live():
        printer(record(1, 0.5))
        printer(record(2, 0.0, status="failed"))
        time.sleep(0.3)  # the live line refreshes several times a second
        printer(record(3, 0.75))
    return out.getvalue(), printer


def test_without_a_terminal_one_plain_line_per_trial():
    text, _ = printed(terminal=False)
    lines = text.strip().splitlines()
    assert len(lines) == 3 and "\x1b" not in text
    assert lines[0].startswith("[1/3] trial 1") and "val 0.5000" in lines[0]
    assert "failed: InjectedFault: boom" in lines[1]
    assert "best 0.7500 (#3)" in lines[2] and "failed 1" in lines[2]


def test_in_a_terminal_a_live_status_line_shows_running_failed_and_best():
    text, printer = printed(terminal=True, running=lambda: 2)
    assert "trials" in text and "running 2  failed 1  best 0.5000 (#1)" in text
    assert "[3/3] trial 3" in text  # the per-trial lines still print, above the live line
    assert printer.status() == "running 2  failed 1  best 0.7500 (#3)"


def test_the_eta_is_this_sessions_pace_counted_down_from_its_last_trial():
    printer = progress.TrialPrinter(4)
    printer.resume([record(1, 0.5)])  # an earlier session's trial sets no pace
    assert printer.eta() is None
    printer.start -= 10  # this session began 10 s ago
    with progress.reporting(progress.Recorder()) as recorder:
        printer(record(2, 0.75))
    assert "[2/4] trial 2" in recorder.lines[0] and recorder.lines[0].endswith("eta 20s")  # 10 s a trial, 2 left
    time.sleep(0.3)
    assert printer.eta() < 19.75  # counted down since
