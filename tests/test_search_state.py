"""The search's bookkeeping, driven by hand as Ray Tune's searcher tests drive a searcher."""

import json

import pytest

from controllers.base import Controller
from controllers.random_search import RandomController
from nas.rundir import RunDir
from nas.search_state import MAX_CONSECUTIVE_DUPLICATES, Search, SearchExhausted
from search_spaces import SpaceError, parse_space

SPACE = parse_space("family: dense\nlayers: 1\nlayer: {units: [8, 16, 32]}\n", source="small.yaml")


class Scripted(Controller):
    """Asks a fixed sequence of architectures and remembers what it was told."""

    name = "scripted"

    def __init__(self, space, choices):
        super().__init__(space)
        self.queue = [space.architecture([c]) for c in choices]
        self.told = []

    def ask(self):
        return self.queue.pop(0)

    def tell(self, arch, reward):
        self.told.append((arch.choices[0], reward))


def make_search(tmp_path, controller, budget=10):
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    return Search(SPACE, controller, rundir, budget), rundir


def completed(accuracy):
    return {"status": "completed", "val_accuracy": accuracy, "params": 10, "fit_seconds": 1.0, "seconds": 1.5}


def test_trials_are_numbered_recorded_on_disk_and_told(tmp_path):
    search, rundir = make_search(tmp_path, Scripted(SPACE, [0, 1]))
    first, second = search.next_trial(), search.next_trial()
    assert (first.number, second.number) == (1, 2)
    assert first.spec["layers"][0]["units"] == 8
    search.record(second, completed(0.9))  # finishing out of order is fine
    search.record(first, {"status": "failed", "error": "ValueError: boom", "seconds": 0.1})
    lines = [json.loads(line) for line in rundir.file("trials.jsonl").read_text().splitlines()]
    assert [(r["trial"], r["status"], r["reward"]) for r in lines] == [(2, "completed", 0.9), (1, "failed", 0.9)]
    assert lines[1]["error"] == "ValueError: boom" and lines[0]["values"] == {"layer0.units": 16}
    assert lines[0]["hash"] == second.arch.key and lines[0]["metrics"]["params"] == 10
    assert search.controller.told == [(1, 0.9), (0, 0.9)]  # a failure earns the lowest reward so far
    state = json.loads(rundir.file("state.json").read_text())
    assert state["controller"]["controller"] == "scripted" and state["asked"] == 2 and state["running"] == []
    assert search.best().trial == 2


def test_the_space_file_can_set_the_failure_reward(tmp_path):
    space = parse_space(SPACE.text + "controller: {failure_reward: -1}\n", source="small.yaml")
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    search = Search(space, Scripted(space, [0]), rundir, budget=3)
    search.record(search.next_trial(), {"status": "failed", "error": "boom"})
    assert search.controller.told == [(0, -1.0)]
    bad = parse_space(SPACE.text + "controller: {failure_reward: worst}\n", source="small.yaml")
    with pytest.raises(
        SpaceError, match="small.yaml: controller.failure_reward: got 'worst', expected a finite number"
    ):
        Search(bad, Scripted(bad, []), rundir, budget=3)


def test_consecutive_failures_stop_the_search(tmp_path):
    space = parse_space("family: dense\nlayers: 1\nlayer: {units: [8, 16, 32, 64]}\n", source="four.yaml")
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    search = Search(space, Scripted(space, [0, 1, 2, 3]), rundir, budget=10, max_failures=2)
    search.record(search.next_trial(), {"status": "failed", "error": "one"})
    search.record(search.next_trial(), completed(0.5))  # a success resets the count
    search.record(search.next_trial(), {"status": "failed", "error": "two"})
    assert search.stopped is None
    search.record(search.next_trial(), {"status": "failed", "error": "three"})
    assert search.stopped.startswith("2 trials failed in a row (--max-failures 2); the last: three")
    with pytest.raises(SearchExhausted):
        search.next_trial()


def test_a_finished_architecture_is_not_trained_twice(tmp_path):
    controller = Scripted(SPACE, [0, 0, 0, 1])
    search, _ = make_search(tmp_path, controller)
    search.record(search.next_trial(), completed(0.8))
    trial = search.next_trial()  # architecture 0 twice more: told its known reward, then 1 is new
    assert trial.number == 2 and trial.arch.choices == (1,)
    assert controller.told == [(0, 0.8), (0, 0.8), (0, 0.8)] and search.duplicates == 2


def test_an_architecture_being_trained_means_not_now_until_it_finishes(tmp_path):
    controller = Scripted(SPACE, [2, 2, 1])
    search, _ = make_search(tmp_path, controller)
    running = search.next_trial()
    assert search.next_trial() is None  # 2 is running: nothing new to hand out yet
    assert search.next_trial() is None and len(controller.queue) == 1  # and Ray's polling asks nothing more
    search.record(running, completed(0.6))
    assert search.next_trial().arch.choices == (1,) and running.number == 1
    assert controller.told == [(2, 0.6), (2, 0.6)] and search.duplicates == 1  # the second ask is taught too


def test_budget_and_exhaustion_end_the_search(tmp_path):
    search, _ = make_search(tmp_path, RandomController(SPACE, seed=0), budget=5)
    seen = set()
    with pytest.raises(SearchExhausted, match="already trained"):
        while True:  # only 3 architectures exist: the controller ends up asking known ones
            trial = search.next_trial()
            assert trial.arch not in seen
            seen.add(trial.arch)
            search.record(trial, completed(0.5))
    assert len(seen) == 3 and search.duplicates >= MAX_CONSECUTIVE_DUPLICATES
    search, _ = make_search(tmp_path / "b", RandomController(SPACE, seed=0), budget=1)
    search.next_trial()
    with pytest.raises(SearchExhausted, match="budget of 1 trials is spent"):
        search.next_trial()


def test_a_record_keeps_nas_metrics_only_and_reads_back_as_written(tmp_path):
    from nas.run import read_trials
    from nas.trial_record import TrialRecord

    search, rundir = make_search(tmp_path, Scripted(SPACE, [2, 0]))
    ray_result = {
        **completed(0.8),
        "val_loss": float("nan"),
        "epochs": 4,
        "hostname": "h",
        "node_ip": "10.0.0.1",
        "time_since_restore": 3.0,
        "config/spec/space": "small",
        "checkpoint_dir_name": None,
        "done": True,
    }
    record = search.record(search.next_trial(), ray_result)
    line = json.loads(rundir.file("trials.jsonl").read_text())
    assert line["metrics"] == {"val_accuracy": 0.8, "params": 10, "epochs": 4, "fit_seconds": 1.0}  # no NaN loss
    assert line["seconds"] == 1.5 and "hostname" not in line and "hostname" not in line["metrics"]
    assert read_trials(rundir, space=SPACE) == [record] == [TrialRecord.from_json(record.to_json())]


def test_a_time_budget_spent_before_any_child_finished_still_starts_the_first(tmp_path):
    """Ray may take longer to start than a short --time-budget: the first children start anyway,
    and once a child has finished, none starts that would end past the deadline."""
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    search = Search(SPACE, Scripted(SPACE, [0, 1, 2]), rundir, budget=3, time_budget=1e-6)
    first, second = search.next_trial(), search.next_trial()  # the deadline has passed already
    search.record(first, completed(0.5))  # took 1.5 s
    with pytest.raises(SearchExhausted, match="time budget"):
        search.next_trial()
    assert search.ended_by.startswith("the time budget of") and second.number == 2
