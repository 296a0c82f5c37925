"""The weight-sharing search (nas.enas): the supernet phase, its checkpoint, and `nas search --strategy enas`."""

import json
import subprocess
import sys

import numpy as np
import pytest

from nas.data import load_data
from nas.enas import SupernetPhase, make_enas_controller, read_settings
from search_spaces import Architecture, SpaceError, parse_space

# Small enough for a unit test on 8x8 digits: skips, depth and dropout as decisions. (With random
# kernels, widths and batch-norm placements too, 100 shared steps on digits stay near chance.)
SPACE = """
name: tiny_enas
family: conv
layers: [2, 3]
reduce_after: [0]
layer:
  kernel_height: 3
  kernel_width: [1, 3]
  filters: 16
  inputs: any
  batch_norm: before_activation
head: {dropout: [0.0, 0.2]}
training: {batch_size: 32, learning_rate: 0.01}
weight_sharing: {supernet_epochs: 3, controller_steps: 2, samples_per_step: 5, candidates: 8, finalists: 3,
                 recalibration_batches: 2}
"""


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", seed=0)


def phase(space, data, controller="reinforce", seed=0):
    settings = read_settings(space)
    return SupernetPhase(
        space,
        data.search_arrays(),
        data.input_shape,
        data.num_classes,
        settings,
        make_enas_controller(controller, space, settings, seed=seed),
        seed=seed,
    )


class Recording:
    """Wraps a controller to record every architecture it is asked for."""

    def __init__(self, controller):
        self.controller, self.asked = controller, []

    def ask(self):
        arch = self.controller.ask()
        self.asked.append(arch.choices)
        return arch

    def __getattr__(self, name):
        return getattr(self.controller, name)


@pytest.fixture(scope="module")
def uninterrupted(digits):
    space = parse_space(SPACE)
    run = phase(space, digits)
    run.controller = Recording(run.controller)
    history = [run.train_epoch() for _ in range(3)]
    run.trained_on = list(run.controller.asked)  # before the finalists' candidates
    return run, history


def test_the_supernet_learns_and_the_controller_with_it(uninterrupted):
    run, history = uninterrupted
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["reward_mean"] > 0.3  # ten digits: chance is 0.1
    assert all(record["entropy"] is not None for record in history)  # REINFORCE updated its policy
    assert len(run.controller.updates()) == 3 * 2


def test_finalists_are_distinct_the_best_of_the_candidates_and_leave_the_supernet_as_it_was(uninterrupted):
    run, _ = uninterrupted
    before = run.net.state()
    finalists = run.finalists()
    assert len(finalists) == 3 and len({arch for arch, _ in finalists}) == 3
    accuracies = [accuracy for _, accuracy in finalists]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] > 0.3
    assert all(np.array_equal(a, b) for a, b in zip(before, run.net.state()))  # recalibration undone


def test_a_phase_restored_from_its_checkpoint_goes_on_as_the_uninterrupted_one(digits, uninterrupted):
    """The kill-and-resume contract at the level of the phase: the state after epoch 1, loaded into a
    fresh process's phase, asks the same architectures in epochs 2 and 3 and ends with the same weights."""
    space = parse_space(SPACE)
    first = phase(space, digits)
    first.train_epoch()
    saved = first.to_bytes()
    resumed = phase(space, digits)
    resumed.load_bytes(saved)
    resumed.controller = Recording(resumed.controller)
    resumed.train_epoch()
    resumed.train_epoch()
    run, history = uninterrupted
    per_epoch = len(run.trained_on) // 3
    assert resumed.controller.asked == run.trained_on[per_epoch:]
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in history], rel=1e-5)
    for a, b in zip(resumed.net.state(), run.net.state()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_random_paths_learn_nothing_but_train_the_supernet(digits):
    run = phase(parse_space(SPACE), digits, controller="random")
    records = [run.train_epoch() for _ in range(2)]
    assert run.controller.updates() == [] and records[-1]["entropy"] is None
    assert records[-1]["reward_mean"] > 0.2


def test_the_supernet_trains_with_its_own_batch_and_learning_rate(digits):
    """weight_sharing.batch_size and learning_rate, not the space's training ones (32 and 0.01 here),
    set the supernet's steps: their number an epoch and the schedule's starting rate."""
    space = parse_space(
        SPACE.replace("recalibration_batches: 2}", "recalibration_batches: 2, batch_size: 24, learning_rate: 0.005}")
    )
    run = phase(space, digits, controller="random")
    assert run.batch_size == 24 and run.steps_per_epoch == -(-len(run.y_train) // 24)
    assert float(run.learning_rate(0)) == pytest.approx(0.005)
    run.train_epoch()
    assert int(run.net.steps.numpy()) == run.steps_per_epoch


def test_each_step_also_trains_the_sampled_paths_widest_variant(digits):
    """weight_sharing.train_widest (the default): a step that samples a path with narrower filters
    also trains that path with every layer at its widest; off, only the sampled path trains."""
    wide = SPACE.replace("filters: 16", "filters: [8, 16]")
    for train_widest in (True, False):
        space = parse_space(
            wide
            if train_widest
            else wide.replace("recalibration_batches: 2}", "recalibration_batches: 2, train_widest: false}")
        )
        run = phase(space, digits, controller="random")
        run.controller = Recording(run.controller)
        run.train_epoch()
        trained = run.controller.asked[: run.steps_per_epoch]  # then the controller's samples
        narrower = sum(run.net.widest(a) != a for a in (Architecture(space.name, tuple(c)) for c in trained))
        assert 0 < narrower < run.steps_per_epoch
        assert int(run.net.steps.numpy()) == run.steps_per_epoch + (narrower if train_widest else 0)


@pytest.mark.parametrize(
    "section, message",
    [
        ("{finalists: 0}", "weight_sharing.finalists: got 0, expected an integer >= 1"),
        ("{candidates: 2, finalists: 3}", "weight_sharing.finalists: got 3, expected at most the 2 candidates"),
        ("{epochs: 3}", "weight_sharing.epochs: unknown setting, expected one of supernet_epochs"),
        ("{supernet_epochs: two}", "weight_sharing.supernet_epochs: got 'two', expected an integer"),
        ("{learning_rate: -0.1}", "weight_sharing.learning_rate: got -0.1, expected a number > 0"),
        ("{train_widest: 1}", "weight_sharing.train_widest: got 1, expected true or false"),
    ],
)
def test_bad_weight_sharing_settings_name_the_field(section, message):
    space = parse_space(SPACE.split("weight_sharing:")[0] + f"weight_sharing: {section}\n", source="mine.yaml")
    with pytest.raises(SpaceError, match=message):
        read_settings(space)


def test_nas_search_strategy_enas_killed_mid_supernet_resumes_and_leaves_a_usual_run(tmp_path):
    """A real `nas search --strategy enas` through Ray on digits, killed with SIGKILL once its first
    supernet epoch is checkpointed and resumed: the supernet goes on from that epoch, the finalists
    train as ordinary children, and the run directory is the usual one (summary, trials, best model)."""
    import os
    import signal
    import time

    from nas_commands import start_nas

    (tmp_path / "tiny.yaml").write_text(
        SPACE.replace("supernet_epochs: 3", "supernet_epochs: 2").replace("finalists: 3", "finalists: 2")
    )
    args = [
        "search",
        "--space",
        "tiny.yaml",
        "--data",
        "digits",
        "--strategy",
        "enas",
        "--epochs",
        "2",
        "--final-epochs",
        "3",
        "--workers",
        "1",  # the finalists one after another: one worker process importing TensorFlow, not two
        "--no-dashboard",
        "--runs-dir",
        "runs",
        "--name",
        "shared",
    ]
    run = tmp_path / "runs" / "shared"
    process = start_nas(*args, cwd=tmp_path, stdout=subprocess.DEVNULL)
    checkpoint = run / "supernet" / "checkpoint.npz"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[1][-2000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run / "supernet" / "finalists.json").exists() and not (run / "trials.jsonl").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "nas.cli", *args, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[supernet 1/2]" not in resumed.stdout and "[supernet 2/2]" in resumed.stdout  # epoch 1 not redone
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert sorted(t["trial"] for t in trials) == [1, 2] and all(t["status"] == "completed" for t in trials)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["strategy"] == "enas" and summary["status"] == "finished" and summary["budget"] == 2
    assert summary["test_accuracy"] > 0.2  # ten classes: chance is 0.1
    finalists = summary["supernet"]["finalists"]
    assert sorted(f["trial"] for f in finalists) == [1, 2]
    assert summary["supernet"]["node"] == trials[0]["node"]  # local Ray: the driver's node, the trials' too
    assert {json.dumps(t["arch"]) for t in trials} == {
        json.dumps(f["arch"]) for f in json.loads((run / "supernet" / "finalists.json").read_text())["finalists"]
    }
    assert (run / "best" / "model.keras").is_file()
    history = json.loads((run / "supernet" / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1, 2]
    from test_tensorboard import events, scalars

    # TensorBoard's supernet curves: epoch 2 from the resumed session (epoch 1 too, unless the kill
    # fell between its checkpoint and its log)
    logged = dict(scalars(events(run / "tensorboard" / "supernet"), "supernet/loss"))
    assert set(logged) <= {1, 2} and abs(logged[2] - history[1]["loss"]) < 1e-6
    page = (run / "report.html").read_text()
    assert (
        "Supernet (weight sharing)" in page and "2 of 2 epochs" in page and (run / "report" / "supernet.png").is_file()
    )
