"""Resuming a search killed at any write: nothing finished is lost, nothing is repeated, and the
controller asks what an uninterrupted search would have asked.

The kill is simulated at every write the search makes (a run directory that dies just before its
n-th write), then the search resumes from what is on disk with a fresh controller, as a new process
would. The end-to-end kill test with SIGKILL and real Ray is in test_kill.py.
"""

import json

import pytest

from controllers import make_controller
from nas.rundir import RunDir
from nas.search_state import Search, SearchExhausted
from search_spaces import parse_space

SPACE = parse_space(
    "family: dense\nlayers: [1, 2]\nlayer: {units: [8, 16, 32, 64], dropout: [0.0, 0.5]}\n"
    "controller: {batch_size: 2, learning_rate: 0.05}\n",
    source="small.yaml",
)
BUDGET = 7


class Killed(Exception):
    pass


class DyingRunDir(RunDir):
    """A run directory whose process is killed just before its n-th write."""

    def __init__(self, path, writes_left):
        super().__init__(path)
        self.writes_left = writes_left

    def _tick(self):
        if self.writes_left is not None:
            if self.writes_left == 0:
                raise Killed
            self.writes_left -= 1

    def write_json(self, name, data):
        self._tick()
        super().write_json(name, data)

    def append_trial(self, record):
        self._tick()
        super().append_trial(record)


def reward(arch):
    """A deterministic result per architecture, as if every child trained the same way again."""
    return 0.5 + 0.05 * sum(arch.choices) / len(arch.choices)


def drive(search):
    """Two workers: keep two trials running, finish the oldest first, until the budget is spent."""
    running = []
    while True:
        while len(running) < 2:
            try:
                trial = search.next_trial()
            except SearchExhausted:
                break
            if trial is None:
                break
            running.append(trial)
        if not running:
            return
        trial = running.pop(0)
        search.record(
            trial, {"status": "completed", "val_accuracy": reward(trial.arch), "params": 1, "fit_seconds": 1.0}
        )


def new_search(rundir, resume, controller="reinforce"):
    controller = make_controller(controller, SPACE, seed=3)
    if resume:
        return Search.resume(SPACE, controller, rundir, BUDGET)
    rundir.create()
    return Search(SPACE, controller, rundir, BUDGET)


def outcome(path):
    trials = [json.loads(line) for line in (path / "trials.jsonl").read_text().splitlines()]
    state = json.loads((path / "state.json").read_text())
    return [(t["trial"], t["hash"], t["reward"]) for t in trials], state


# Per trial the search writes the state after its ask, its line, and the state after its tell: the
# random controller is killed before each of its writes; REINFORCE (slower to start) before one of
# each kind, with a policy update pending (batch_size 2) or just made.
@pytest.mark.parametrize("controller, kill_points", [("random", range(3 * BUDGET)), ("reinforce", [3, 7, 11, 14])])
def test_a_search_killed_at_any_write_resumes_to_the_same_result(tmp_path, controller, kill_points):
    reference = RunDir(tmp_path / "reference")
    drive(new_search(reference, resume=False, controller=controller))
    expected_trials, expected_state = outcome(reference.path)
    assert [t for t, _, _ in expected_trials] == list(range(1, BUDGET + 1))
    for kill_at in kill_points:
        rundir = DyingRunDir(tmp_path / f"killed-at-{kill_at}", writes_left=kill_at)
        with pytest.raises(Killed):
            drive(new_search(rundir, resume=False, controller=controller))
        resumed = DyingRunDir(rundir.path, writes_left=None)
        drive(new_search(resumed, resume=True, controller=controller))
        trials, state = outcome(rundir.path)
        assert trials == expected_trials, f"killed before write {kill_at}"
        assert state == expected_state, f"killed before write {kill_at}"


def test_a_search_killed_twice_in_a_row_still_resumes(tmp_path):
    reference = RunDir(tmp_path / "reference")
    drive(new_search(reference, resume=False))
    rundir = DyingRunDir(tmp_path / "run", writes_left=5)
    with pytest.raises(Killed):
        drive(new_search(rundir, resume=False))
    again = DyingRunDir(rundir.path, writes_left=4)
    with pytest.raises(Killed):
        drive(new_search(again, resume=True))
    drive(new_search(RunDir(rundir.path), resume=True))
    assert outcome(rundir.path) == outcome(reference.path)


def test_trials_running_at_the_kill_run_again_under_their_numbers(tmp_path):
    rundir = RunDir(tmp_path / "run")
    search = new_search(rundir, resume=False)
    first, second = search.next_trial(), search.next_trial()
    search.record(second, {"status": "completed", "val_accuracy": 0.9, "params": 1, "fit_seconds": 1.0})
    third = search.next_trial()
    resumed = new_search(rundir, resume=True)  # the driver died with trials 1 and 3 running
    assert [(t.number, t.arch) for t in resumed.rerun] == [(1, first.arch), (3, third.arch)]
    assert resumed.next_trial().number == 1 and resumed.next_trial().number == 3
    assert resumed.next_trial().number == 4
    assert [r.trial for r in resumed.records] == [2]
