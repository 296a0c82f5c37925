"""An ensemble of a search's best children as one Keras model: the image goes to every member, and
the model answers with the average of their class probabilities.

    model = build_ensemble([winner, runner_up])      # trained members, each a builder model
    members(model)                                   # -> [winner, runner_up] (an empty list for one model)
    networks(model)                                  # -> the members, or [model] for one model

Each member is a nested model named `member_1`, `member_2`, ... (best first) inside a functional
model whose output layer is `ensemble`, a Keras `Average`. So the ensemble saves, loads, exports and
serves as any model does, and `model.py` rebuilds it layer for layer (`nas.codegen`). Training it
further trains every member on the averaged prediction's loss; `members` reaches them one by one.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

OUTPUT = "ensemble"


def member_name(rank: int) -> str:
    """The nested model's name of the `rank`-th member, 1 the best."""
    return f"member_{rank}"


def build_ensemble(models: Sequence, name: str):
    """One model averaging the probabilities of `models` (all of one input shape and class count),
    which it shares: their weights are its weights. Each is renamed `member_N` in the given order."""
    import keras

    if len(models) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(models)}")
    inputs = keras.Input(shape=tuple(models[0].input_shape[1:]), name="image")
    outputs = []
    for rank, model in enumerate(models, 1):
        model.name = member_name(rank)
        outputs.append(model(inputs))
    return keras.Model(inputs, keras.layers.Average(name=OUTPUT)(outputs), name=name)


def combine(
    saved: Sequence[bytes], member_metrics: Sequence[dict[str, Any]], name: str, x_test, y_test, class_names
) -> tuple[bytes, dict[str, Any]]:
    """The members' saved models (each `nas.worker.train_final_here`'s bytes, best first) as one
    ensemble, saved, and its test metrics: accuracy, loss and evaluation (nas.evaluation) of the
    averaged probabilities, the parameters of all members, and each member's own metrics under
    `members`. It is compiled with its first member's optimizer, fresh and built for every weight,
    which `nas train` reads its recipe from."""
    import keras

    from nas import evaluation

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for rank, data in enumerate(saved, 1):
            paths.append(Path(tmp) / f"{member_name(rank)}.keras")
            paths[-1].write_bytes(data)
        # Without their own optimizers, which the ensemble would save beside its own.
        models = [keras.saving.load_model(path, safe_mode=True, compile=False) for path in paths]
        model = build_ensemble(models, name)
        optimizer = saved_optimizer(saved[0])
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        optimizer.build(model.trainable_variables)
        probabilities, labels = evaluation.predictions(model, x_test, y_test)
        path = Path(tmp) / "ensemble.keras"
        model.save(path)
        data = path.read_bytes()
    picked = probabilities[np.arange(len(labels)), labels]
    metrics = {
        "test_accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "test_loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
        "params": int(model.count_params()),
        "epochs": member_metrics[0]["epochs"],
        "fit_seconds": max(m["fit_seconds"] for m in member_metrics),  # they train at the same time
        "evaluation": evaluation.evaluate(probabilities, labels, class_names),
        "members": [{k: v for k, v in m.items() if k != "evaluation"} for m in member_metrics],
    }
    return data, metrics


def saved_optimizer(saved: bytes):
    """A fresh optimizer configured as the one a saved model (`.keras` bytes) was compiled with, read
    from the archive's compile config rather than by loading the model a second time."""
    import keras

    with zipfile.ZipFile(io.BytesIO(saved)) as archive:
        config = json.loads(archive.read("config.json"))["compile_config"]["optimizer"]
    return keras.optimizers.deserialize(config)


def is_ensemble(model) -> bool:
    return bool(model.layers) and model.layers[-1].name == OUTPUT and isinstance(model.layers[-1], _average())


def networks(model) -> list:
    """The networks a model is made of: an ensemble's members, best first, or the model itself."""
    return members(model) or [model]


def members(model) -> list:
    """The member models of an ensemble, best first; [] for a single model."""
    if not is_ensemble(model):
        return []
    return [model.get_layer(layer.name) for layer in model.layers if layer.name.startswith("member_")]


def _average():
    import keras

    return keras.layers.Average
