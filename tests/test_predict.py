"""`nas predict` as a user runs it: a real model directory trained on digits, real PNG files written
from the digits test split (which the model never saw), the real command in a subprocess."""

import json
import subprocess

import numpy as np
import pytest
from nas_commands import start_nas  # started now: the tests run their commands side by side
from PIL import Image


def finish(process: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def write_digits(folder, x, y, count):
    """The first `count` test digits as 8x8 grayscale PNGs named <index>_<true label>.png, every other
    one in a sub-folder (folders are walked recursively)."""
    paths = []
    for i in range(count):
        where = folder / "more" if i % 2 else folder
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"{i:03d}_{y[i]}.png"
        Image.fromarray(x[i, :, :, 0]).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def digits_test():
    from nas.data import load_data

    data = load_data("digits", seed=0)  # the split the model directory was trained on (seed 0)
    return data.x_test, data.y_test


def test_predict_labels_images_like_the_model_and_names_the_bad_file(digits_model_dir, digits_test, tmp_path):
    x, y = digits_test
    count = 120
    paths = write_digits(tmp_path / "pics", x, y, count)
    (tmp_path / "pics" / "bad.png").write_text("this is not an image\n")
    explicit = tmp_path / "digit.data"  # a file named on the command line is tried whatever its extension
    Image.fromarray(x[count, :, :, 0]).save(explicit, format="PNG")
    index = {str(p.relative_to(tmp_path)): i for i, p in enumerate(paths)} | {"digit.data": count}
    good = [str(p.relative_to(tmp_path)) for p in paths[:4]]

    labelled = start_nas("predict", str(digits_model_dir), "pics", "digit.data", "--json", cwd=tmp_path)
    printed = start_nas("predict", str(digits_model_dir), *good, "--top-k", "2", cwd=tmp_path)
    result, human = finish(labelled), finish(printed)

    # --json: one document; the bad file named in one line on stderr; exit code 2.
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nas: error: ") and "bad.png: not a readable image" in lines[0], lines[0]
    answers = json.loads(result.stdout)
    assert sorted(a["image"] for a in answers) == sorted(index)  # every good image, once; not bad.png
    for answer in answers:
        probabilities = [label["probability"] for label in answer["labels"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert 0 <= probabilities[-1] and sum(probabilities) <= 1 + 1e-6
    top1 = np.array([int(a["labels"][0]["label"]) for a in answers])
    accuracy = np.mean(top1 == y[[index[a["image"]] for a in answers]])
    assert accuracy >= 0.8, accuracy  # chance is 0.1

    # The same top-1 as the Keras model on the test arrays: the files were decoded as in training.
    import keras

    model = keras.saving.load_model(digits_model_dir / "model.keras")
    expected = model.predict(x[: count + 1], verbose=0).argmax(axis=1)
    assert list(top1) == list(expected[[index[a["image"]] for a in answers]])

    # Human output, all inputs images: a line per image with its top 2, nothing on stderr, exit code 0.
    assert human.returncode == 0, human.stderr
    assert human.stderr == ""
    lines = human.stdout.strip().splitlines()
    assert len(lines) == len(good)
    for path, line in zip(good, lines):
        name, *labels = line.split("  ")
        assert name == path and len(labels) == 2 and all(label.endswith("%") for label in labels), line
        assert labels[0].split()[0] == str(top1[[a["image"] for a in answers].index(path)])
