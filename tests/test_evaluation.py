"""The winner's evaluation (nas.evaluation): per-class metrics checked against scikit-learn's own
functions, and `nas evaluate` on a real model directory against the model's own predictions."""

import json

import numpy as np
import pytest
from nas_commands import run_nas
from sklearn.metrics import balanced_accuracy_score, classification_report, top_k_accuracy_score

from nas.evaluation import evaluate, problem, text


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # scikit-learn's, on the absent class
def test_the_metrics_are_scikit_learns_with_an_absent_class_left_out_of_the_averages():
    rng = np.random.default_rng(0)
    names = ["cat", "dog", "bird", "fish", "frog", "horse", "ship"]
    labels = rng.choice([0, 1, 2, 3, 4, 6], size=300, p=[0.4, 0.2, 0.2, 0.1, 0.05, 0.05])  # no horse
    probabilities = rng.dirichlet(np.ones(7), size=300)
    probabilities[np.arange(300), labels] += rng.random(300) * 0.8  # better than chance, not perfect
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    result = evaluate(probabilities, labels, names)

    predicted = probabilities.argmax(axis=1)
    present = [0, 1, 2, 3, 4, 6]
    report = classification_report(labels, predicted, labels=present, output_dict=True, zero_division=0)
    for i in present:
        row = result["per_class"][i]
        assert row["class"] == names[i]
        assert row["precision"] == pytest.approx(report[str(i)]["precision"])
        assert row["recall"] == pytest.approx(report[str(i)]["recall"])
        assert row["f1"] == pytest.approx(report[str(i)]["f1-score"])
        assert row["support"] == report[str(i)]["support"]
    assert result["per_class"][5]["support"] == 0  # horse: listed, not averaged
    assert result["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
    assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert result["top5_accuracy"] == pytest.approx(top_k_accuracy_score(labels, probabilities, k=5, labels=range(7)))
    matrix = np.array(result["confusion_matrix"])
    assert matrix.sum() == result["images"] == 300 and np.trace(matrix) == round(result["accuracy"] * 300)
    # the most confused pairs: the largest off-diagonal cells, largest first
    off = matrix - np.diag(np.diag(matrix))
    top = result["most_confused"][0]
    assert top["images"] == off.max() == off[names.index(top["true"]), names.index(top["predicted"])]
    assert [c["images"] for c in result["most_confused"]] == sorted(off.ravel(), reverse=True)[:5]
    assert problem(json.loads(json.dumps(result))) is None

    printed = text(result)
    assert "balanced accuracy" in printed and "top-5 accuracy" in printed
    assert f"{'horse':<5}     0.0000  0.0000  0.0000        0" in printed
    assert f"{top['true']} -> {top['predicted']}: {top['images']}" in printed


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda e: e.update(confusion_matrix=[[1, 2]]), "confusion_matrix: expected 3 rows of 3 counts"),
        (lambda e: e["per_class"][0].update(recall="high"), "per_class: expected a list of"),
        (lambda e: e.update(class_names="abc"), "class_names: expected a list of class names"),
        (lambda e: e.update(accuracy=None), "accuracy: expected a number"),
        (lambda e: e.update(most_confused=[{"true": "a"}]), "most_confused: expected a list of"),
    ],
)
def test_an_evaluation_read_back_is_checked_field_by_field(change, expected):
    evaluation = evaluate(np.eye(3)[[0, 1, 2, 1]], np.array([0, 1, 2, 2]), ["a", "b", "c"])
    change(evaluation)
    assert problem(evaluation).startswith(expected)


def test_nas_evaluate_a_model_directory(digits_model_dir, tmp_path):
    """`nas evaluate` on every digit and on the test split alone, against the model's own predictions."""
    import keras

    from nas.data import load_data

    data = load_data("digits", seed=0)
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    model = keras.models.load_model(digits_model_dir / "model.keras", compile=False)
    predicted = model.predict(x, verbose=0).argmax(axis=1)

    result = run_nas("evaluate", str(digits_model_dir), "--data", "digits", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    evaluation = json.loads(result.stdout)
    assert evaluation["images"] == len(y) == 1797
    assert evaluation["accuracy"] == pytest.approx(np.mean(predicted == y)) and evaluation["accuracy"] > 0.8
    assert evaluation["per_class"][7]["support"] == int(np.sum(y == 7))
    assert evaluation["confusion_matrix"][7][1] == int(np.sum((y == 7) & (predicted == 1)))

    result = run_nas("evaluate", str(digits_model_dir), "--data", "digits", "--split", "test", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    test_accuracy = np.mean(predicted[-len(data.y_test) :] == data.y_test)
    assert result.stdout.startswith(f"360 images: accuracy {test_accuracy:.4f}, balanced accuracy")
    assert "confusion matrix (rows: true class, columns: predicted)" in result.stdout
