"""`nas train` (nas/retrain.py): real Keras models trained on scikit-learn's digits, real files.

The command runs in a subprocess where what the user sees matters (the output, the one-line
refusal, the exit code); otherwise nas.retrain runs in-process (a subprocess costs ~8 s of imports).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import train_digits_model_dir
from nas_commands import run_nas

from nas.errors import InputError


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def digits_npz(path: Path, keep, digits=range(10)) -> Path:
    """Digits as an .npz of x, y (labels 0-9) whose x_test, y_test are digits' own held-out split
    (of the `digits` given), so that every file written here is tested on the same images."""
    from nas.data import load_data

    data = load_data("digits", seed=0)
    x, y = np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val])
    test = np.isin(data.y_test, list(digits))
    np.savez(path, x=x[keep], y=y[keep], x_test=data.x_test[test], y_test=data.y_test[test])
    return path


def metadata(folder: Path) -> dict:
    return json.loads((folder / "metadata.json").read_text())


def labels(folder: Path) -> list[str]:
    return json.loads((folder / "labels.json").read_text())


def test_training_further_on_new_images_keeps_or_improves_accuracy_and_writes_versions(tmp_path):
    import keras

    from nas.retrain import retrain

    order = np.random.default_rng(0).permutation(1437)  # digits' training + validation images
    digits_npz(tmp_path / "first.npz", order[:718])
    digits_npz(tmp_path / "second.npz", order[718:])
    model, _ = train_digits_model_dir(tmp_path / "model", data=str(tmp_path / "first.npz"))
    original = snapshot(model)
    trained_on_first = metadata(model)["metrics"]["test_accuracy"]

    result = run_nas("train", "model", "--data", "second.npz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    v2 = model / "v2"
    run = metadata(v2)["training_run"]
    before, after = run["test_accuracy_before"], run["test_accuracy_after"]
    print(f"incremental: test accuracy {before:.4f} -> {after:.4f} (first model: {trained_on_first:.4f})")
    assert before == pytest.approx(trained_on_first, abs=1e-6), "tested on other images than the first model"
    assert after >= before
    assert f"test accuracy before: {before:.4f}" in result.stdout and f"{before:.4f} -> {after:.4f}" in result.stdout
    assert run["mode"] == "incremental" and run["data"]["source"] == "second.npz" and run["epochs"] == {"train": 10}
    assert run["learning_rates"]["train"] == pytest.approx(0.0005)  # a tenth of cnn10's 0.005
    assert metadata(v2)["parent"]["version"] == 1 and metadata(v2)["version"] == 2
    assert labels(v2) == labels(model) == [str(d) for d in range(10)]
    assert {k: v for k, v in snapshot(model).items() if not k.startswith("v2")} == original
    assert sorted(p.name for p in model.iterdir() if p.is_dir()) == ["v2"], "a temporary folder was left behind"

    # A folder of images is decoded as the model's input (8x8 grayscale here, from 16x16 RGB files),
    # and a subset of the model's classes maps onto its outputs by name.
    from PIL import Image

    from nas.model_dir import open_model_dir
    from nas.retrain import label_index, load_for_model

    for digit in ("3", "7"):
        (tmp_path / "photos" / digit).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (40 * i, 200, int(digit) * 30)).save(tmp_path / "photos" / digit / f"{i}.png")
    md = open_model_dir(model)
    photos = load_for_model(md, str(tmp_path / "photos"))
    assert photos.input_shape == (8, 8, 1) and photos.class_names == ["3", "7"]
    assert label_index(md, photos).tolist() == [3, 7]

    # Given a version, the next free one is written beside it and nothing existing changes. Here a
    # head-only transfer (--new-labels --freeze-base; the same labels are fine): every body weight,
    # BatchNormalization's moving statistics included (a frozen BN runs in inference mode), stays v2's.
    written = snapshot(model)
    again = retrain(v2, str(tmp_path / "second.npz"), new_labels=True, freeze_base=True, epochs=1)
    assert again.path == model / "v3" and again.version == 3 and [p["phase"] for p in again.phases] == ["head"]
    assert metadata(model / "v3")["parent"] == {"version": 2, "path": "v2", "metrics": metadata(v2)["metrics"]}
    assert {k: v for k, v in snapshot(model).items() if not k.startswith("v3")} == written
    parent, child = (keras.saving.load_model(folder / "model.keras") for folder in (v2, model / "v3"))
    assert [layer.name for layer in child.layers] == [layer.name for layer in parent.layers]
    for layer in parent.layers:
        if layer.name != "predictions":
            for a, b in zip(layer.get_weights(), child.get_layer(layer.name).get_weights(), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=layer.name)


def test_new_labels_transfer_a_model_of_digits_0_to_4_to_digits_5_to_9(tmp_path):
    from nas.data import load_data
    from nas.model_dir import open_model_dir

    model, _ = train_digits_model_dir(tmp_path / "model", classes=range(5))
    digits = load_data("digits", seed=0)
    upper = np.flatnonzero(np.concatenate([digits.y_train, digits.y_val]) >= 5)
    digits_npz(tmp_path / "upper.npz", upper, digits=range(5, 10))
    original = snapshot(model)

    refused = run_nas("train", "model", "--data", "upper.npz", cwd=tmp_path)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert lines[0].startswith("nas: error: --data: upper.npz: label(s) '5', '6', '7', '8', '9' not among")
    assert "use --new-labels" in lines[0]
    assert snapshot(model) == original, "a refused command must not create a version"

    result = run_nas("train", "model", "--data", "upper.npz", "--new-labels", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    v2 = model / "v2"
    assert labels(v2) == ["5", "6", "7", "8", "9"] and labels(model) == ["0", "1", "2", "3", "4"]
    run = metadata(v2)["training_run"]
    assert run["mode"] == "new-labels" and run["epochs"] == {"head": 3, "fine_tune": 7}
    assert run["learning_rates"] == pytest.approx({"head": 0.005, "fine_tune": 0.0015})
    for phase in ("head (body frozen)", "fine-tuning"):
        assert f"test accuracy after {phase}: " in result.stdout
    assert {k: v for k, v in snapshot(model).items() if not k.startswith("v2")} == original
    transferred = run["test_accuracy_after"]
    print(f"transfer 0-4 -> 5-9: {transferred:.4f} (head only: {run['phases'][0]['test_accuracy']:.4f})")
    if transferred < 0.90:  # the other way to pass; only then worth training the comparison
        scratch_dir, _ = train_digits_model_dir(tmp_path / "scratch", data=str(tmp_path / "upper.npz"), epochs=10)
        scratch = metadata(scratch_dir)["metrics"]["test_accuracy"]
        assert transferred > scratch, f"transfer {transferred:.4f}, below 0.90 and below from scratch {scratch:.4f}"

    # The new head is built as the builder builds one: the same layer names, 5 outputs; and the saved
    # model loads without complaint (e.g. about optimizer variables that do not match its weights).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old, new = open_model_dir(model).load_model(), open_model_dir(v2).load_model()
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]
    assert [layer.name for layer in new.layers] == [layer.name for layer in old.layers]
    assert new.output_shape == (None, 5) and all(layer.trainable for layer in new.layers)


def test_an_ensemble_trains_further_and_takes_new_labels_member_by_member(tmp_path):
    """An ensemble (as cnn10's search returns): training further updates every member; new labels
    give each member a head of its own, the bodies frozen first, and it stays an ensemble."""
    import keras

    from nas.data import load_data
    from nas.ensemble import build_ensemble, members
    from nas.model_dir import open_model_dir, write_model_dir
    from nas.retrain import retrain

    singles = [train_digits_model_dir(tmp_path / f"m{seed}", range(5), epochs=3, seed=seed)[0] for seed in (0, 1)]
    loaded = [open_model_dir(path).load_model() for path in singles]
    ensemble = build_ensemble(loaded, "digits_ensemble")
    ensemble.compile(
        optimizer=keras.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    ensemble.optimizer.build(ensemble.trainable_variables)  # as nas.ensemble.combine saves it
    write_model_dir(tmp_path / "ensemble", ensemble, [str(d) for d in range(5)], {"source": "test"})
    digits = load_data("digits", seed=0)
    y = np.concatenate([digits.y_train, digits.y_val])
    digits_npz(tmp_path / "lower.npz", np.flatnonzero(y < 5), digits=range(5))
    digits_npz(tmp_path / "upper.npz", np.flatnonzero(y >= 5), digits=range(5, 10))

    further = retrain(tmp_path / "ensemble", str(tmp_path / "lower.npz"), epochs=1)
    before = [m.get_weights() for m in members(ensemble)]
    after = [m.get_weights() for m in members(open_model_dir(further.path).load_model())]
    for old, new in zip(before, after, strict=True):  # every member trained on
        assert any(not np.array_equal(a, b) for a, b in zip(old, new, strict=True))

    transferred = retrain(further.path, str(tmp_path / "upper.npz"), epochs=3, new_labels=True)
    model = open_model_dir(transferred.path).load_model()
    assert [m.name for m in members(model)] == ["member_1", "member_2"] and model.output_shape == (None, 5)
    assert all(m.get_layer("predictions").units == 5 for m in members(model))
    assert transferred.class_names == ["5", "6", "7", "8", "9"] and transferred.test_accuracy_after > 0.6  # chance 0.2
    assert transferred.phases[0]["phase"] == "head"


def test_a_model_saved_uncompiled_trains_further(tmp_path):
    """A model directory whose model.keras was saved without compiling (a user's own Keras model):
    training takes the default recipe and measures accuracy from predictions, not a compiled metric."""
    import keras

    from nas.model_dir import open_model_dir, write_model_dir
    from nas.retrain import retrain

    trained, _ = train_digits_model_dir(tmp_path / "trained", epochs=3)
    model = open_model_dir(trained).load_model()
    bare = keras.Model.from_config(model.get_config())  # as a user's model, never compiled
    bare.set_weights(model.get_weights())
    assert not bare.compiled
    write_model_dir(tmp_path / "bare", bare, [str(d) for d in range(10)], {"source": "test"})
    digits = np.load(digits_npz(tmp_path / "all.npz", np.arange(1437)))
    further = retrain(tmp_path / "bare", str(tmp_path / "all.npz"), epochs=1)
    predicted = bare.predict(digits["x_test"], verbose=0).argmax(axis=1)
    assert further.test_accuracy_before == pytest.approx(float(np.mean(predicted == digits["y_test"])))
    assert further.test_accuracy_after > 0.5  # chance 0.1


def test_a_failure_while_writing_leaves_no_version(tmp_path):
    import keras

    from nas.model_dir import versions, write_version

    root = tmp_path / "model"
    root.mkdir()
    (root / ".incomplete-killed").mkdir()  # what a process killed while writing leaves: not a version
    (root / ".incomplete-killed" / "model.keras").write_bytes(b"half")
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")]
    )
    with pytest.raises(TypeError):  # a set is not JSON: write_model_dir fails after saving the model
        write_version(root, model, ["a", "b"], {"oops": {1, 2}})
    assert sorted(p.name for p in root.iterdir()) == [".incomplete-killed"] and versions(root) == [1]
    path, version = write_version(root, model, ["a", "b"], {})
    assert (path, version) == (root / "v2", 2) and versions(root) == [1, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"freeze_base": True}, "freeze_base: applies only with --new-labels"),
        ({"epochs": 0}, "epochs: got 0, expected an integer >= 1"),
        ({"learning_rate": float("nan")}, "learning_rate: got nan, expected a positive number"),
    ],
)
def test_bad_options_are_refused_before_anything_loads(tmp_path, kwargs, message):
    from nas.retrain import retrain

    with pytest.raises(InputError, match=message):
        retrain(tmp_path / "no-such-model", "digits", **kwargs)
