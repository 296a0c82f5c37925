"""A whole search through real Ray Tune, real Keras and real files, as a user starts it."""

import json

import numpy as np

from nas.data import load_data

SUMMARY_KEYS = {
    "space",
    "budget",
    "trials_completed",
    "trials_failed",
    "best",
    "test_accuracy",
    "wall_seconds",
    "child_fit_seconds",
}


def test_search_cnn10_on_digits_through_ray(cnn10_search):
    result, url, status, run = cnn10_search.result, cnn10_search.url, cnn10_search.status, cnn10_search.run
    assert result.stderr == "", result.stderr  # no start-up noise from TensorFlow or Ray
    assert url and status == 200, result.stdout  # the Ray dashboard's URL was printed, and it served
    for name in ("config.json", "space.yaml", "trials.jsonl", "state.json", "summary.json", "best/model.keras"):
        assert (run / name).is_file(), name

    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert sorted(t["trial"] for t in trials) == [1, 2, 3, 4]
    assert all(t["status"] == "completed" for t in trials)
    assert len({t["hash"] for t in trials}) == 4  # four distinct architectures
    assert all(0 <= t["reward"] <= 1 and t["metrics"]["epochs"] == 1 and t["values"] for t in trials)
    assert len({t["pid"] for t in trials}) <= 2  # two workers, each reused for several children

    summary = json.loads((run / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["trials_completed"] == 4 and summary["trials_failed"] == 0 and summary["budget"] == 4
    best = max(trials, key=lambda t: (t["reward"], -t["trial"]))
    assert summary["best"]["trial"] == best["trial"] and summary["best"]["val_accuracy"] == best["reward"]
    assert summary["best"]["arch"] == best["arch"]
    assert summary["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert summary["child_fit_seconds"] == sum(t["metrics"]["fit_seconds"] for t in trials)
    assert summary["status"] == "finished" and 0 <= summary["engine_overhead"] < 1

    config = json.loads((run / "config.json").read_text())
    assert config["space"] == "cnn10" and config["epochs"] == 1 and config["workers"] == 2
    assert config["dashboard_url"] == url
    assert "trial" in result.stdout and "test accuracy" in result.stdout and "Top 4 architectures" in result.stdout

    # Every child reported each epoch through Ray Tune; the driver logged it for TensorBoard.
    from test_tensorboard import events, scalars

    for t in trials:
        folder = events(run / "tensorboard" / f"trial_{t['trial']:04d}")
        ((step, value),) = scalars(folder, "epoch_val_accuracy")
        assert step == 1 and abs(value - t["metrics"]["val_accuracy"]) < 1e-6

    # The saved winner is the model that was tested: same accuracy on the held-out split.
    import keras

    model = keras.saving.load_model(run / "best" / "model.keras", safe_mode=True)
    data = load_data("digits")
    accuracy = float(np.mean(model.predict(data.x_test, verbose=0).argmax(1) == data.y_test))
    assert abs(accuracy - summary["test_accuracy"]) < 1e-6

    # cnn10 returns the ensemble of its best two children (training.ensemble), each retrained on train +
    # validation and tested alone too: the saved model averages the members' probabilities.
    from nas.ensemble import members

    top = sorted(trials, key=lambda t: (-t["reward"], t["trial"]))[:2]
    recorded = summary["final"]["members"]
    assert [m["trial"] for m in recorded] == [t["trial"] for t in top]
    assert summary["final"]["params"] == sum(m["params"] for m in recorded) == model.count_params()
    parts = members(model)
    assert [part.name for part in parts] == ["member_1", "member_2"]
    alone = [part.predict(data.x_test, verbose=0) for part in parts]
    assert np.abs(model.predict(data.x_test, verbose=0) - np.mean(alone, axis=0)).max() < 1e-6
    for probabilities, m in zip(alone, recorded):
        assert abs(float(np.mean(probabilities.argmax(1) == data.y_test)) - m["test_accuracy"]) < 1e-6
    assert f"Ensemble of trials {top[0]['trial']}, {top[1]['trial']}" in result.stdout
    # Compiled with its members' recipe (cnn10's Adam at 0.002), which `nas train` reads.
    rate = model.optimizer.get_config()["learning_rate"]
    initial = rate["config"]["initial_learning_rate"] if isinstance(rate, dict) else rate
    assert type(model.optimizer).__name__ == "Adam" and abs(initial - 0.002) < 1e-9
