"""The run directory: created whole, locked by one process at a time, repaired after a torn write."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from nas.errors import InputError
from nas.rundir import RunDir


def test_a_run_directory_appears_with_its_first_files_or_not_at_all(tmp_path):
    run = RunDir(tmp_path / "runs" / "one")
    run.create({"config.json": '{"space": "cnn10"}\n'})
    assert json.loads(run.file("config.json").read_text()) == {"space": "cnn10"}
    with pytest.raises(InputError, match="already exists, expected a new name"):
        RunDir(tmp_path / "runs" / "one").create({"config.json": "{}"})
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["one"]  # no staging left behind


def test_a_second_search_on_a_locked_run_is_refused_naming_the_holder(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create()
    run.lock()
    try:
        with pytest.raises(InputError, match=rf"in use by process {os.getpid()} on {socket.gethostname()} since"):
            RunDir(tmp_path / "run").lock()
    finally:
        run.unlock()
    RunDir(tmp_path / "run").lock()  # free again once released


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from nas.rundir import RunDir; "
            f"RunDir({str(run.path)!r}).lock(); print('locked', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(InputError, match=f"in use by process {holder.pid}"):
        RunDir(run.path).lock()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    taker = RunDir(run.path)
    taker.lock()
    assert f"process {os.getpid()}" in run.file(".lock").read_text()
    taker.unlock()


def test_a_torn_last_line_is_removed_before_the_next_append(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create()
    run.append_trial({"trial": 1})
    with open(run.file("trials.jsonl"), "a") as f:
        f.write('{"trial": 2, "sta')
    assert run.trials() == [{"trial": 1}]  # reading alone leaves the file as it is
    assert run.trials(repair=True) == [{"trial": 1}]
    run.append_trial({"trial": 2})
    assert run.trials() == [{"trial": 1}, {"trial": 2}]
    with open(run.file("trials.jsonl"), "w") as f:
        f.write('{"trial": 1}\nnot json\n{"trial": 3}\n')
    with pytest.raises(InputError, match=r"trials.jsonl: line 2: not a JSON record"):
        run.trials()
