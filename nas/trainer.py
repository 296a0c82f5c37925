"""Trains children: build, fit on train, validate; and the winner's final training and test.

    metrics = train_child(spec, data.search_arrays(), input_shape=(28, 28, 1), num_classes=10, epochs=4)
    model, metrics = train_final(spec, data.final_arrays(), input_shape=..., num_classes=..., epochs=30)

The splits are arrays (x_train, y_train, ...), or for a prepared directory streamed from its
TFRecord files (nas.records) `Stream`s under "train", "val" and "test", which tf.data reads here.
No search logic and no Ray here: the caller decides where this runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from nas import accelerators
from nas.dataset import balanced_class_weights

# Zoph & Le reward a child with its best validation accuracy over its last 5 epochs.
REWARD_EPOCHS = 5
LATENCY_CALLS = 20  # batch-of-1 predictions timed per child (MnasNet-style latency)


class ChildFailed(RuntimeError):
    """A child could not be trained (its loss diverged, say); the trial is recorded as failed."""


class TrialTimeout(ChildFailed):
    pass


def deadline(when: float, message: str):
    """A Keras callback that stops training with TrialTimeout once `time.perf_counter()` passes `when`."""
    import keras

    class _Deadline(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if time.perf_counter() > when:
                raise TrialTimeout(message)

    return _Deadline()


def epoch_reporter(report):
    """A Keras callback that calls `report({"epoch": n, "loss": ..., "val_accuracy": ..., "params": ...,
    "fit_seconds": ...})` after every epoch (Ray Tune's per-epoch results: the dashboard's curves,
    TensorBoard, early stopping, which records a stopped child from its last report)."""
    import keras

    class _EpochReporter(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            report(
                {
                    "epoch": epoch + 1,
                    **{k: float(v) for k, v in (logs or {}).items()},
                    "params": int(self.model.count_params()),
                    "fit_seconds": time.perf_counter() - self.start,
                }
            )

    return _EpochReporter()


def validation_class_metrics(x_val, y_val):
    """A Keras callback that adds the validation split's balanced accuracy and macro F1
    (nas.evaluation) to each epoch's logs, where the callbacks after it (Tune's epoch reports, ASHA)
    and the history read them. One more pass over the validation images an epoch."""
    import keras

    from nas import evaluation

    class _ClassMetrics(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is None:
                return
            probabilities, labels = evaluation.predictions(self.model, x_val, y_val)
            names = [str(i) for i in range(probabilities.shape[1])]
            result = evaluation.evaluate(probabilities, labels, names)
            logs["val_balanced_accuracy"] = result["balanced_accuracy"]
            logs["val_macro_f1"] = result["macro_f1"]

    return _ClassMetrics()


def configure_threads(cpus: int) -> None:
    """Gives TensorFlow as many threads as the trial has CPUs. Must run before TensorFlow's first op;
    a reused worker that already ran a trial with the same resources keeps its setting. Imports
    TensorFlow without its C++ start-up messages, which a Ray that sends workers' logs to the driver
    (the caller's `ray.init()`, or --verbose) would print on the user's terminal or notebook."""
    from nas.quiet import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    cpus = max(1, int(cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(min(cpus, 2))
    except RuntimeError:  # already initialised in this process
        pass


def make_optimizer(training: dict[str, Any], total_steps: int):
    import keras

    lr = training["learning_rate"]
    if training["schedule"] == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, total_steps))
    options: dict[str, Any] = {}
    if training.get("weight_decay"):
        options["weight_decay"] = training["weight_decay"]
    if training.get("ema"):
        options.update(use_ema=True, ema_momentum=training["ema"])
    name = training["optimizer"]
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, **options)
    optimizers = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "rmsprop": keras.optimizers.RMSprop}
    return optimizers[name](lr, **options)


def _fit(
    spec,
    x,
    y,
    *,
    input_shape,
    num_classes,
    epochs,
    seed,
    validation=None,
    callbacks: Sequence = (),
    plan: accelerators.Plan = accelerators.CPU,
    class_weight: str | None = None,
    class_counts: Sequence[int] | None = None,
):
    """Builds and fits a fresh model under the plan's strategy and dtype policy; returns it with its
    history and the seconds spent in `fit`. `x`, `y` are arrays, or `x` is a `Stream` and `y` None
    (and `validation` likewise). The loss weighs classes as `class_weight` says (none or balanced;
    None: as the spec's training.class_weight), from `class_counts` (counted in `y` if not given)."""
    import keras

    from nas.builder import build_model

    # Drop the previous child's graph state: a worker trains many. Without the forced garbage
    # collection, which takes 0.5-0.8 s in a worker that has trained a few children and frees
    # little (Python's own collector runs when it needs to).
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(seed)
    training = spec["training"]
    with accelerators.training_scope(plan) as strategy:
        model = build_model(spec, input_shape, num_classes)
        batch = accelerators.batch_size(training["batch_size"], plan, strategy.num_replicas_in_sync)
        steps = math.ceil(len(x if y is None else y) / batch) * epochs
        model.compile(
            optimizer=make_optimizer(training, steps),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=plan.steps_per_execution,
        )
        weights = _class_weights(class_weight or training.get("class_weight", "none"), y, class_counts, num_classes)
        start = time.perf_counter()
        if y is None:  # streamed: tf.data reads the batches from the shards, shuffled with the child's seed
            history = model.fit(
                x.dataset(batch, shuffle=True, seed=seed),
                epochs=epochs,
                shuffle=False,
                validation_data=validation[0].dataset(batch) if validation else None,
                class_weight=weights,
                verbose=0,
                callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks],
            )
        else:
            history = model.fit(
                x,
                y,
                batch_size=batch,
                epochs=epochs,
                validation_data=validation,
                class_weight=weights,
                verbose=0,
                callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks],
            )
        seconds = time.perf_counter() - start
    losses = history.history.get("loss", [])
    if not losses or not all(math.isfinite(v) for v in losses):
        raise ChildFailed(f"training loss became {losses[-1] if losses else 'undefined'} in epoch {len(losses)}")
    return model, history.history, seconds


def _class_weights(setting: str, y, counts: Sequence[int] | None, num_classes: int) -> dict[int, float] | None:
    """Keras's class_weight for a setting: None for "none"; for "balanced" each class's inverse frequency."""
    if setting != "balanced":
        return None
    if counts is None:
        if y is None:
            raise ValueError("class_weight balanced: a streamed split's class counts must be given")
        counts = np.bincount(np.asarray(y, np.int64).reshape(-1), minlength=num_classes)
    return dict(enumerate(balanced_class_weights(counts)))


def _split(arrays: dict[str, Any], name: str) -> tuple[Any, Any]:
    """(x, y) arrays of a split ("train", "val", "test"), or (its Stream, None) when streamed."""
    return (arrays[name], None) if name in arrays else (arrays[f"x_{name}"], arrays[f"y_{name}"])


def train_child(
    spec: dict[str, Any],
    arrays: dict[str, Any],
    *,
    input_shape: Sequence[int],
    num_classes: int,
    epochs: int,
    seed: int = 0,
    callbacks: Sequence = (),
    test: tuple[np.ndarray, np.ndarray] | None = None,
    plan: accelerators.Plan = accelerators.CPU,
    per_class: bool = False,
    class_weight: str | None = None,
    class_counts: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Trains one child on the training split and returns its validation metrics; given `test`
    images and labels (tabular benchmarks), also the same trained model's `test_accuracy`. With
    `per_class`, also the validation balanced accuracy and macro F1 (each epoch's reports too), for
    the objectives that reward them (nas.objective)."""
    x_val, y_val = _split(arrays, "val")
    if per_class:  # first, so that the epoch reports after it carry the metrics
        callbacks = [validation_class_metrics(x_val, y_val), *callbacks]
    model, history, seconds = _fit(
        spec,
        *_split(arrays, "train"),
        input_shape=input_shape,
        num_classes=num_classes,
        epochs=epochs,
        seed=seed,
        validation=(x_val, y_val),
        callbacks=callbacks,
        plan=plan,
        class_weight=class_weight,
        class_counts=class_counts,
    )
    val = [float(v) for v in history["val_accuracy"]]
    extra = {  # as val_accuracy: the best of the last REWARD_EPOCHS epochs
        key: max(float(v) for v in history[key][-REWARD_EPOCHS:])
        for key in ("val_balanced_accuracy", "val_macro_f1")
        if key in history
    }
    if test is not None:
        extra["test_accuracy"] = float(model.evaluate(test[0], test[1], batch_size=256, verbose=0)[1])
    return {
        **extra,
        "val_accuracy": max(val[-REWARD_EPOCHS:]),
        "val_accuracy_last": val[-1],
        "val_accuracy_per_epoch": val,
        "val_loss": float(history["val_loss"][-1]),
        "train_accuracy": float(history["accuracy"][-1]),
        "params": int(model.count_params()),
        "latency_ms": latency_ms(model, x_val[:1] if y_val is not None else x_val.head(1)),
        "epochs": len(val),
        "fit_seconds": seconds,
    }


def latency_ms(model, image: np.ndarray, calls: int = LATENCY_CALLS) -> float:
    """Milliseconds to classify one image on this worker: the median of `calls` batch-of-1 calls
    after a few warm-up calls (the first traces the prediction graph)."""
    for _ in range(3):
        model.predict_on_batch(image)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        model.predict_on_batch(image)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def train_final(
    spec: dict[str, Any],
    arrays: dict[str, Any],
    *,
    input_shape: Sequence[int],
    num_classes: int,
    epochs: int,
    seed: int = 0,
    plan: accelerators.Plan = accelerators.CPU,
    class_names: Sequence[str] = (),
    class_weight: str | None = None,
    class_counts: Sequence[int] | None = None,
    callbacks: Sequence = (),
):
    """Retrains an architecture from scratch on train + validation and tests it once. The model
    returned (and tested) is float32 whatever precision it trained in, as exports must be. Its
    metrics include the test split's `evaluation` (nas.evaluation), with `class_names` (or the
    classes' indices). `callbacks`: Keras callbacks for the fit."""
    from nas import evaluation
    from nas.builder import build_model

    model, history, seconds = _fit(
        spec,
        *_split(arrays, "train"),
        input_shape=input_shape,
        num_classes=num_classes,
        epochs=epochs,
        seed=seed,
        plan=plan,
        class_weight=class_weight,
        class_counts=class_counts,
        callbacks=callbacks,
    )
    trained = model
    model = accelerators.float32_copy(trained, lambda: build_model(spec, input_shape, num_classes))
    if model is not trained:  # with the optimizer it trained with and that optimizer's state (no loss scaling)
        trained_optimizer = getattr(trained.optimizer, "inner_optimizer", trained.optimizer)
        optimizer = type(trained_optimizer).from_config(trained_optimizer.get_config())
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        optimizer.build(model.trainable_variables)
        for variable, value in zip(optimizer.variables, trained_optimizer.variables, strict=True):
            variable.assign(value)
    x_test, y_test = _split(arrays, "test")
    if y_test is None:
        loss, accuracy = model.evaluate(x_test.dataset(256), verbose=0)
    else:
        loss, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    metrics = {
        "test_accuracy": float(accuracy),
        "test_loss": float(loss),
        "train_accuracy": float(history["accuracy"][-1]),
        "params": int(model.count_params()),
        "epochs": epochs,
        "fit_seconds": seconds,
    }
    names = list(class_names) or [str(i) for i in range(num_classes)]
    metrics["evaluation"] = evaluation.evaluate(*evaluation.predictions(model, x_test, y_test), names)
    return model, metrics
