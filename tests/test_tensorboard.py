"""The TensorBoard log of a search, read back with TensorBoard's own event reader."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from controllers import make_controller
from nas.rundir import RunDir
from nas.search_state import Search
from nas.tensorboard import TensorBoardLog
from search_spaces import load_space


def events(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator, tag):
    import tensorflow as tf

    return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]


def hparams_data(accumulator):
    contents = accumulator.PluginTagToContent("hparams")
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(content) for tag, content in contents.items()}


def test_per_epoch_scalars_hparams_and_controller_updates(tmp_path):
    space = load_space("dnn")
    controller = make_controller("reinforce", space, seed=0, overrides={"batch_size": 2, "warmup": 0})
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    search = Search(space, controller, rundir, budget=2)
    log = TensorBoardLog(rundir.file("tensorboard"), space, controller)
    trials = [search.next_trial(), search.next_trial()]
    for trial, accuracy in zip(trials, (0.5, 0.75)):
        for epoch in (1, 2):
            log.epoch(
                trial,
                {
                    "epoch": epoch,
                    "loss": 1.0 / epoch,
                    "accuracy": 0.3 * epoch,
                    "val_loss": 1.1 / epoch,
                    "val_accuracy": accuracy * epoch / 2,
                },
            )
        record = search.record(
            trial,
            {
                "status": "completed",
                "val_accuracy": accuracy,
                "params": 1000 * trial.number,
                "latency_ms": 0.5,
                "fit_seconds": 1.0,
                "epochs": 2,
            },
        )
        log.finished(record)
    log.close()

    root = rundir.file("tensorboard")
    experiment = hparams_data(events(root))
    (config,) = experiment.values()
    assert {h.name for h in config.experiment.hparam_infos} == {d.name for d in space.decisions}
    assert {m.name.tag for m in config.experiment.metric_infos} == {"val_accuracy", "reward", "params", "latency_ms"}

    for trial, accuracy in zip(trials, (0.5, 0.75)):
        folder = events(root / f"trial_{trial.number:04d}")
        assert scalars(folder, "epoch_val_accuracy") == [(1, pytest.approx(accuracy / 2)), (2, pytest.approx(accuracy))]
        assert [step for step, _ in scalars(folder, "epoch_loss")] == [1, 2]
        assert scalars(folder, "val_accuracy") == [(0, pytest.approx(accuracy))]
        (session,) = hparams_data(folder).values()
        values = {name: value for name, value in session.session_start_info.hparams.items()}
        decoded = search.records[trial.number - 1].values
        assert values["layers"].number_value == decoded["layers"]

    # Two children told with batch_size 2: one policy update, its statistics logged.
    controller_events = events(root / "controller")
    for key in ("mean_reward", "baseline", "entropy", "loss"):
        assert [step for step, _ in scalars(controller_events, f"controller/{key}")] == [1]
    assert scalars(controller_events, "controller/mean_reward")[0][1] == pytest.approx(0.625)
