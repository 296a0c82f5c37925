"""`nas train`: train a model directory further on new images, or transfer it to new labels.

    result = retrain("out/", "more_photos/")                    # incremental: same labels -> out/v2/
    result = retrain("out/v2", "other.npz", new_labels=True)    # transfer: new head -> out/v3/
    print(result.path, result.test_accuracy_before, result.test_accuracy_after)

The data is loaded as `nas search --data` loads it (`nas.data.load_data`), with the model's own
preprocessing for folders and CSVs, and its test split is held out: the model trains on the
training and validation splits and is tested on the test split only.

- **Incremental** (default): the data's class names must be among the model's (`labels.json`; a
  subset is fine). The loaded model trains on, everything trainable, and is tested before and after.
- **New labels** (`new_labels=True`): the trained body is kept and the head (`head_dropout`, if the
  model has one, and `predictions`) is replaced by a fresh one of the same kind for the data's
  classes. Phase 1 trains the head with the body frozen (30 % of the epochs, at least 1; all of
  them with `freeze_base=True`); phase 2 fine-tunes everything but the BatchNormalization layers
  for the rest at 0.3x the learning rate.
  BatchNormalization stays frozen, which in Keras 3 also means it runs in inference mode with the
  statistics it learnt on the old data, as Keras's transfer-learning guide advises.

Versions: the exported directory is version 1; each run writes the next free `vN/` inside it
(`out/v2/`, `out/v3/`, ...), also when given a version (`out/v2` -> `out/v3/`), and never
overwrites anything (see `nas.model_dir.write_version`).
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.data import load_data
from nas.dataset import BUILTIN, Dataset
from nas.ensemble import build_ensemble, members, networks
from nas.errors import InputError
from nas.model_dir import ModelDir, open_model_dir, version_of, write_version
from nas.progress import reporter

DEFAULT_EPOCHS = 10
# --new-labels: the head trains for 30 % of the epochs (at least 1), then everything but BatchNormalization
# fine-tunes for the rest at 0.3x the head's learning rate. A linear head converges in a few epochs, while
# a small searched body, trained on few classes, needs real fine-tuning. Measured on digits 0-4 -> 5-9
# (10 epochs, seeds 0 and 1): 0.3x gave 0.97 and 0.96 test accuracy; a tenth gave 0.92 and 0.91 (0.87 and
# 0.83 with half the epochs on the head).
HEAD_SHARE = 0.3
FINE_TUNE_FACTOR = 0.3
# Incremental: a tenth of the model's own learning rate; its full rate, on digits halves, lost accuracy once
# in two seeds (0.967 -> 0.961), a tenth gained in both (0.967 -> 0.975, 0.953 -> 0.972).
INCREMENTAL_FACTOR = 0.1
DEFAULT_LEARNING_RATE = 1e-3  # when the model was saved without an optimizer
DEFAULT_BATCH_SIZE = 32
HEAD_LAYERS = ("head_dropout", "predictions")  # the builder's names for the classifier head
PHASES = {"train": "training", "head": "head (body frozen)", "fine_tune": "fine-tuning"}  # id -> what is printed


@dataclass
class Retrained:
    """What `retrain` wrote and measured."""

    path: Path  # the new version's directory
    version: int
    mode: str  # "incremental" or "new-labels"
    class_names: list[str]
    test_accuracy_before: float | None  # None for new labels: the old head cannot answer the new classes
    test_accuracy_after: float
    phases: list[dict[str, Any]] = field(default_factory=list)


def retrain(
    model_dir: str | Path,
    data: str,
    *,
    epochs: int | None = None,
    new_labels: bool = False,
    freeze_base: bool = False,
    learning_rate: float | None = None,
    seed: int = 0,
) -> Retrained:
    """Trains the model in `model_dir` on `data` and writes it as the next version; returns what it did.
    Raises InputError (one line) for bad options, a bad model directory, bad data or unknown labels."""
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs: got {epochs!r}, expected an integer >= 1")
    if freeze_base and not new_labels:
        raise InputError(
            "freeze_base: applies only with --new-labels (it keeps the trained body frozen while "
            "a new head learns the new labels)"
        )
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        raise InputError(f"learning_rate: got {learning_rate}, expected a positive number")
    md = open_model_dir(model_dir)
    root, parent_version = version_of(md.path)
    if not os.access(root, os.W_OK | os.X_OK):  # found out now, not after the training
        raise InputError(f"{root}: cannot write a new version here, expected a model directory you can write to")
    if not zipfile.is_zipfile(md.path / "model.keras"):  # found out before loading data and TensorFlow
        raise InputError(
            f"{md.path / 'model.keras'}: not a loadable Keras model (not a .keras zip archive), "
            "expected one written by nas export"
        )
    dataset = load_for_model(md, data, seed)
    index = None if new_labels else label_index(md, dataset)

    from nas.quiet import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    model = md.load_model()
    _check_model(md, model)
    base_lr, optimizer_class, optimizer_config = _optimizer_recipe(model)
    batch_size = _batch_size(md.metadata)
    arrays = dataset.final_arrays()  # train + validation; the test split only tests
    x, y, x_test, y_test = arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
    mode = "new-labels" if new_labels else "incremental"
    if new_labels:
        model = replace_heads(model, dataset.num_classes)
        y_fit, y_test_fit, class_names = y, y_test, list(dataset.class_names)
    else:  # the data's class indices -> the model's outputs of the same names
        y_fit, y_test_fit, class_names = index[y], index[y_test], list(md.class_names)
    reporter().text(
        f"nas train: {md.path} (version {parent_version}, {len(md.class_names)} classes) on {data}: "
        f"{dataset.num_classes} classes, {len(y)} training / {len(y_test)} test images (held out), {mode}"
    )

    def fit(phase: str, lr: float, phase_epochs: int) -> dict[str, Any]:
        label = PHASES[phase]
        steps = math.ceil(len(y_fit) / batch_size) * phase_epochs
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps))
        optimizer = optimizer_class.from_config({**optimizer_config, "learning_rate": schedule})
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        reporter().text(
            f"  {label}: {phase_epochs} epoch(s), learning rate {lr:g} (cosine decay), "
            f"{trainable:,} of {model.count_params():,} parameters trainable"
        )
        history = model.fit(
            x,
            y_fit,
            batch_size=batch_size,
            epochs=phase_epochs,
            verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN(), _epoch_log(phase_epochs)],
        )
        losses = history.history.get("loss", [])
        if len(losses) < phase_epochs or not all(math.isfinite(v) for v in losses):
            raise InputError(
                f"learning_rate: training diverged at {lr:g} (loss {losses[-1] if losses else 'nan'} "
                f"in epoch {len(losses)} of {label}), expected a lower learning rate; nothing written"
            )
        accuracy = evaluate()
        reporter().text(f"  test accuracy after {label}: {accuracy:.4f}")
        return {
            "phase": phase,
            "epochs": phase_epochs,
            "learning_rate": lr,
            "test_accuracy": accuracy,
            "train_accuracy": float(history.history["accuracy"][-1]),
        }

    def evaluate() -> float:
        """Test accuracy from the predictions, whatever (if anything) the model was compiled with."""
        predicted = model.predict(x_test, batch_size=256, verbose=0).argmax(axis=1)
        return float(np.mean(predicted == y_test_fit))

    phases = []
    if new_labels:
        before = None
        head_lr = learning_rate or base_lr
        head_epochs = epochs if freeze_base else max(1, round(epochs * HEAD_SHARE))
        for layer in networks_layers(model):
            layer.trainable = layer.name in HEAD_LAYERS
        phases.append(fit("head", head_lr, head_epochs))
        if epochs - head_epochs:
            for layer in networks_layers(model):  # BatchNormalization stays frozen: inference mode, old statistics
                layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
            phases.append(fit("fine_tune", head_lr * FINE_TUNE_FACTOR, epochs - head_epochs))
    else:
        before = evaluate()
        reporter().text(f"  test accuracy before: {before:.4f}")
        phases.append(fit("train", learning_rate or base_lr * INCREMENTAL_FACTOR, epochs))
    after = phases[-1]["test_accuracy"]
    for layer in networks_layers(model):  # saved as a fresh model is: a later `nas train` decides what to freeze
        layer.trainable = True
    # Saved with the parent's optimizer recipe, fresh and built for every weight: the next `nas train`
    # reads its learning rate from it (a phase's would compound: a tenth of a tenth ...), and loading
    # finds as many optimizer variables as weights (a phase's optimizer covered only what it trained).
    optimizer = optimizer_class.from_config(optimizer_config)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    optimizer.build(model.trainable_variables)

    metadata = {
        k: v
        for k, v in md.metadata.items()
        if k not in ("input_shape", "classes", "version", "parent", "training_run", "metrics")
    }
    metadata["parent"] = {
        "version": parent_version,
        "path": _relative(md.path, root),
        "metrics": md.metadata.get("metrics"),
    }
    metadata["metrics"] = {"test_accuracy": after, "test_images": int(len(y_test))}
    metadata["training_run"] = {
        "mode": mode,
        "data": {
            "source": data,
            "classes": list(dataset.class_names),
            "train_images": int(len(y)),
            "test_images": int(len(y_test)),
            "seed": seed,
            "split": "test held out first (stratified, seeded), trained on train + validation",
        },
        "epochs": {p["phase"]: p["epochs"] for p in phases},
        "learning_rates": {p["phase"]: p["learning_rate"] for p in phases},
        "schedule": "cosine decay per phase",
        "optimizer": optimizer_class.__name__,
        "batch_size": batch_size,
        "freeze_base": freeze_base,
        "test_accuracy_before": before,
        "test_accuracy_after": after,
        "phases": phases,
    }
    path, version = write_version(root, model, class_names, metadata)
    reporter().text(
        f"wrote {path} (version {version}): test accuracy "
        + (f"{before:.4f} -> {after:.4f}" if before is not None else f"{after:.4f} on the new labels")
    )
    return Retrained(path, version, mode, class_names, before, after, phases)


def load_for_model(md: ModelDir, source: str, seed: int = 0) -> Dataset:
    """Loads `source` as the model's input: folders and CSVs with its image size and colour mode;
    .npz files, built-in data and prepared directories (nas.records) as they are, refused when their
    image shape is not the model's."""
    expected = (*md.image_size, md.channels)
    if source in BUILTIN or Path(source).suffix.lower() == ".npz" or (Path(source) / "dataset.json").is_file():
        data = load_data(source, seed=seed, stream=False)
    else:
        if md.color_mode not in ("rgb", "grayscale") and Path(source).exists():
            raise InputError(
                f"data: {source}: the model in {md.path} takes {md.color_mode} images, which nas "
                "decodes from .npz files only, expected an .npz of (N, H, W, 4) images"
            )
        data = load_data(source, image_size=md.image_size, color_mode=md.color_mode, seed=seed)
    if data.input_shape != expected:
        raise InputError(
            f"data: {source}: images are {_shape(data.input_shape)}, but the model in {md.path} "
            f"takes {_shape(expected)}, expected images of the model's shape"
        )
    return data


NEW_HEAD = "; use --new-labels to train a new head for the data's labels"


def label_index(md: ModelDir, data: Dataset, remedy: str = NEW_HEAD) -> np.ndarray:
    """For each of the data's classes, the index of the model output with its name (labels.json);
    `remedy` ends the error for labels the model does not know."""
    unknown = [name for name in data.class_names if name not in md.class_names]
    if unknown:
        known = ", ".join(md.class_names[:12]) + (", ..." if len(md.class_names) > 12 else "")
        raise InputError(
            f"data: {data.name}: label(s) {', '.join(map(repr, unknown[:10]))}"
            f"{', ...' if len(unknown) > 10 else ''} not among the model's labels "
            f"({md.path / 'labels.json'}: {known}), expected those labels{remedy}"
        )
    return np.array([md.class_names.index(name) for name in data.class_names], np.int32)


def networks_layers(model) -> list:
    """The layers of the model's networks: its own, or an ensemble's members' (nas.ensemble)."""
    return [layer for network in networks(model) for layer in network.layers]


def replace_heads(model, num_classes: int):
    """`replace_head` of the model, or of each member of an ensemble, averaged again."""
    if not members(model):
        return replace_head(model, num_classes)
    return build_ensemble([replace_head(m, num_classes) for m in members(model)], model.name)


def replace_head(model, num_classes: int):
    """The model with its head replaced by a fresh one of the same kind (the builder's layer names,
    dropout rate, regulariser) for `num_classes` classes; the body's layers and weights are shared."""
    import keras

    old = model.get_layer("predictions")
    names = {layer.name for layer in model.layers}
    x = model.get_layer("head_dropout").input if "head_dropout" in names else old.input
    if "head_dropout" in names:
        x = keras.layers.Dropout.from_config(model.get_layer("head_dropout").get_config())(x)
    config = {**old.get_config(), "units": num_classes}
    outputs = keras.layers.Dense.from_config(config)(x)
    return keras.Model(model.inputs, outputs, name=model.name)


def _epoch_log(epochs: int):
    """A Keras callback logging one line per epoch."""
    import keras

    def line(epoch: int, logs: dict | None) -> None:
        logs = logs or {}
        reporter().text(
            f"    epoch {epoch + 1}/{epochs}: loss {logs.get('loss', math.nan):.4f}, "
            f"accuracy {logs.get('accuracy', math.nan):.4f}"
        )

    return keras.callbacks.LambdaCallback(on_epoch_end=line)


def _check_model(md: ModelDir, model) -> None:
    """What training further needs beyond what ModelDir.load_model checked (input and outputs)."""
    for network in networks(model):
        if "predictions" not in {layer.name for layer in network.layers}:
            where = f" in ensemble member {network.name!r}" if network is not model else ""
            raise InputError(
                f"{md.path / 'model.keras'}: no layer named 'predictions'{where}, expected a model built by nas"
            )


def _optimizer_recipe(model):
    """The model's own optimizer (class, config) and base learning rate, from its saved compile state."""
    import keras

    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        optimizer = keras.optimizers.Adam(DEFAULT_LEARNING_RATE)
    config = optimizer.get_config()
    lr = config.get("learning_rate")
    if isinstance(lr, dict):  # a serialised schedule, e.g. the search's CosineDecay
        lr = lr.get("config", {}).get("initial_learning_rate")
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        lr = DEFAULT_LEARNING_RATE
    return float(lr), type(optimizer), config


def _batch_size(metadata: dict[str, Any]) -> int:
    """The search's batch size when the metadata records its training recipe, else 32."""
    for recipe in (metadata.get("training"), (metadata.get("spec") or {}).get("training")):
        if isinstance(recipe, dict) and isinstance(recipe.get("batch_size"), int) and recipe["batch_size"] > 0:
            return recipe["batch_size"]
    return DEFAULT_BATCH_SIZE


def _relative(path: Path, root: Path) -> str:
    return "." if path.resolve() == root.resolve() else path.name


def _shape(shape) -> str:
    return "x".join(str(int(d)) for d in shape)
