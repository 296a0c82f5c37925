"""A classifier's evaluation on labelled images, as AutoML Vision's evaluation page shows it: per-class
precision, recall, F1 and support, the confusion matrix, top-k and balanced accuracy, and the pairs
of classes most often confused.

    probabilities, labels = predictions(model, x_test, y_test)      # arrays, or a Stream and None
    evaluation = evaluate(probabilities, labels, class_names)        # plain data: summary.json, metadata.json
    print(text(evaluation))                                          # what `nas show` and `nas evaluate` print
    evaluate_model_dir("export/", "photos/")                         # `nas evaluate`: any labelled data

The metrics are scikit-learn's; the confusion matrix's rows are the true classes and its columns
the predicted ones, in the order of `class_names`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BATCH_SIZE = 256
TOP_K = 5  # reported when there are more than this many classes (top-k of every class is 1)
MOST_CONFUSED = 5


def predictions(model, x, y=None) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, classes) and the true labels (N,) of a split: arrays x and y, or a
    streamed split (`nas.records.Stream`, y None) whose batches carry their labels."""
    # The model is called on each batch as it is, not through model.predict: a predict function is
    # traced anew for every model, and a process that evaluates several (a worker's children, a
    # notebook's searches) would get TensorFlow's retracing warnings.
    if y is not None:
        batches = ((x[i : i + BATCH_SIZE], y[i : i + BATCH_SIZE]) for i in range(0, len(x), BATCH_SIZE))
    else:
        batches = x.dataset(BATCH_SIZE)
    probabilities, labels = [], []
    for images, batch_labels in batches:
        probabilities.append(np.asarray(model(images, training=False)))
        labels.append(np.asarray(batch_labels).reshape(-1))
    if not probabilities:
        return np.empty((0, model.output_shape[-1]), np.float32), np.empty(0, np.int64)
    return np.concatenate(probabilities), np.concatenate(labels)


def evaluate_model_dir(model_dir, data: str, split: str = "all", seed: int = 0) -> dict[str, Any]:
    """A model directory's evaluation on labelled data, loaded as `nas train` loads it (folders and
    CSVs decoded with the model's image size and colour mode): every image (`split` "all") or only
    the test split nas's seeded split holds out ("test"). The data's labels must be among the model's."""
    from nas.model_dir import open_model_dir
    from nas.retrain import label_index, load_for_model

    md = open_model_dir(model_dir)
    dataset = load_for_model(md, data, seed)
    index = label_index(md, dataset, remedy="")
    if split == "test":
        x, y = dataset.x_test, dataset.y_test
    else:
        x = np.concatenate([dataset.x_train, dataset.x_val, dataset.x_test])
        y = np.concatenate([dataset.y_train, dataset.y_val, dataset.y_test])
    from nas.quiet import import_tensorflow

    import_tensorflow()
    probabilities, _ = predictions(md.load_model(), x, y)
    return evaluate(probabilities, index[np.asarray(y, np.int64)], md.class_names)


def evaluate(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """The evaluation of class probabilities (N, classes) against true labels (N,), as plain data."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    names = [str(n) for n in class_names]
    classes = list(range(len(names)))
    labels = np.asarray(labels, np.int64).reshape(-1)
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=classes, zero_division=0)
    matrix = confusion_matrix(labels, predicted, labels=classes)
    per_class = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support)
    ]
    present = support > 0  # a class absent from the data has no recall to average
    result = {
        "images": len(labels),
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else 0.0,
        # the mean recall over the classes the data has (scikit-learn's balanced_accuracy_score)
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": per_class,
        "class_names": names,
        "confusion_matrix": matrix.tolist(),
        "most_confused": most_confused(matrix, names),
    }
    if len(names) > TOP_K:
        top = np.argsort(-probabilities, axis=1)[:, :TOP_K]
        result[f"top{TOP_K}_accuracy"] = float(np.mean((top == labels[:, None]).any(axis=1)))
    return result


def most_confused(matrix: np.ndarray, names: Sequence[str], n: int = MOST_CONFUSED) -> list[dict[str, Any]]:
    """The `n` largest off-diagonal cells: images of class `true` predicted as `predicted`."""
    off = np.array(matrix, dtype=np.int64)
    np.fill_diagonal(off, 0)
    cells = sorted(((int(off[i, j]), i, j) for i, j in zip(*np.nonzero(off))), key=lambda c: (-c[0], c[1], c[2]))
    return [{"true": names[i], "predicted": names[j], "images": count} for count, i, j in cells[:n]]


def problem(value: Any) -> str | None:
    """What is wrong with an evaluation read back from a file (summary.json), or None: the report
    and `nas show` read its fields as `evaluate` writes them."""

    def number(v):
        return isinstance(v, int | float) and not isinstance(v, bool)

    if not isinstance(value, dict):
        return f"got {type(value).__name__}, expected a mapping"
    names = value.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return "class_names: expected a list of class names"
    missing = [k for k in ("images", "accuracy", "balanced_accuracy", "macro_f1") if not number(value.get(k))]
    if missing:
        return f"{missing[0]}: expected a number"
    matrix = value.get("confusion_matrix")
    if not (
        isinstance(matrix, list)
        and len(matrix) == len(names)
        and all(isinstance(row, list) and len(row) == len(names) and all(number(v) for v in row) for row in matrix)
    ):
        return f"confusion_matrix: expected {len(names)} rows of {len(names)} counts, one per class"
    rows = value.get("per_class")
    keys = ("precision", "recall", "f1", "support")
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and isinstance(r.get("class"), str) and all(number(r.get(k)) for k in keys) for r in rows
    ):
        return "per_class: expected a list of {class, precision, recall, f1, support}"
    pairs = value.get("most_confused")
    if not isinstance(pairs, list) or not all(
        isinstance(p, dict)
        and isinstance(p.get("true"), str)
        and isinstance(p.get("predicted"), str)
        and number(p.get("images"))
        for p in pairs
    ):
        return "most_confused: expected a list of {true, predicted, images}"
    return None


def text(evaluation: dict[str, Any], width: int = 20) -> str:
    """The evaluation as plain text: headline metrics, the per-class table, the most confused pairs
    and the confusion matrix (omitted past 20 classes, where it no longer reads as text)."""
    names = evaluation["class_names"]
    label = max(5, min(width, max(len(n) for n in names)))
    headline = [f"accuracy {evaluation['accuracy']:.4f}", f"balanced accuracy {evaluation['balanced_accuracy']:.4f}"]
    headline += [f"macro F1 {evaluation['macro_f1']:.4f}"]
    if f"top{TOP_K}_accuracy" in evaluation:
        headline.append(f"top-{TOP_K} accuracy {evaluation[f'top{TOP_K}_accuracy']:.4f}")
    lines = [f"{evaluation['images']} images: " + ", ".join(headline), ""]
    lines.append(f"{'class':<{label}}  precision  recall      f1  support")
    for row in evaluation["per_class"]:
        lines.append(
            f"{row['class'][:label]:<{label}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}"
            f"  {row['support']:7d}"
        )
    if evaluation["most_confused"]:
        lines += ["", "most confused (true -> predicted: images):"]
        lines += [f"  {c['true']} -> {c['predicted']}: {c['images']}" for c in evaluation["most_confused"]]
    if len(names) <= 20:
        matrix = evaluation["confusion_matrix"]
        cell = max(4, *(len(str(v)) for row in matrix for v in row), *(min(len(n), 6) for n in names))
        lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
        lines.append(" " * label + "".join(f" {n[:cell]:>{cell}}" for n in names))
        for name, row in zip(names, matrix):
            lines.append(f"{name[:label]:<{label}}" + "".join(f" {v:>{cell}}" for v in row))
    return "\n".join(lines)
