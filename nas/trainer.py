"""Trains children: build, fit on train, validate; and the winner's final training and test.

    metrics = train_child(spec, data.search_arrays(), input_shape=(28, 28, 1), num_classes=10, epochs=4)
    model, metrics = train_final(spec, data.final_arrays(), input_shape=..., num_classes=..., epochs=30)

No search logic and no Ray here: the caller decides where this runs.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

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
    """A Keras callback that calls `report({"epoch": n, "loss": ..., "val_accuracy": ...})` after
    every epoch (Ray Tune's per-epoch results: the dashboard's curves, TensorBoard, early stopping)."""
    import keras

    class _EpochReporter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            report({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})

    return _EpochReporter()


def configure_threads(cpus: int) -> None:
    """Gives TensorFlow as many threads as the trial has CPUs. Must run before TensorFlow's first op;
    a reused worker that already ran a trial with the same resources keeps its setting."""
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
    name = training["optimizer"]
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    return {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
            "rmsprop": keras.optimizers.RMSprop}[name](lr)


def _fit(spec, x, y, *, input_shape, num_classes, epochs, seed, validation=None, callbacks: Sequence = ()):
    """Builds and fits a fresh model; returns it with its history and the seconds spent in `fit`."""
    import keras

    from nas.builder import build_model

    # Drop the previous child's graph state: a worker trains many. Without the forced garbage
    # collection, which takes 0.5-0.8 s in a worker that has trained a few children and frees
    # little (Python's own collector runs when it needs to).
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(seed)
    training = spec["training"]
    model = build_model(spec, input_shape, num_classes)
    steps = math.ceil(len(y) / training["batch_size"]) * epochs
    model.compile(optimizer=make_optimizer(training, steps), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=training["batch_size"], epochs=epochs, validation_data=validation,
                        verbose=0, callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks])
    seconds = time.perf_counter() - start
    losses = history.history.get("loss", [])
    if not losses or not all(math.isfinite(v) for v in losses):
        raise ChildFailed(f"training loss became {losses[-1] if losses else 'undefined'} in epoch {len(losses)}")
    return model, history.history, seconds


def train_child(spec: dict[str, Any], arrays: dict[str, np.ndarray], *, input_shape: Sequence[int],
                num_classes: int, epochs: int, seed: int = 0, callbacks: Sequence = (),
                test: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Trains one child on the training split and returns its validation metrics; given `test`
    images and labels (tabular benchmarks), also the same trained model's `test_accuracy`."""
    model, history, seconds = _fit(spec, arrays["x_train"], arrays["y_train"], input_shape=input_shape,
                                   num_classes=num_classes, epochs=epochs, seed=seed,
                                   validation=(arrays["x_val"], arrays["y_val"]), callbacks=callbacks)
    val = [float(v) for v in history["val_accuracy"]]
    extra = {}
    if test is not None:
        extra["test_accuracy"] = float(model.evaluate(test[0], test[1], batch_size=256, verbose=0)[1])
    return {**extra,
        "val_accuracy": max(val[-REWARD_EPOCHS:]),
        "val_accuracy_last": val[-1],
        "val_accuracy_per_epoch": val,
        "val_loss": float(history["val_loss"][-1]),
        "train_accuracy": float(history["accuracy"][-1]),
        "params": int(model.count_params()),
        "latency_ms": latency_ms(model, arrays["x_val"][:1]),
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


def train_final(spec: dict[str, Any], arrays: dict[str, np.ndarray], *, input_shape: Sequence[int],
                num_classes: int, epochs: int, seed: int = 0):
    """Retrains an architecture from scratch on train + validation and tests it once."""
    model, history, seconds = _fit(spec, arrays["x_train"], arrays["y_train"], input_shape=input_shape,
                                   num_classes=num_classes, epochs=epochs, seed=seed)
    loss, accuracy = model.evaluate(arrays["x_test"], arrays["y_test"], batch_size=256, verbose=0)
    metrics = {"test_accuracy": float(accuracy), "test_loss": float(loss), "train_accuracy":
               float(history["accuracy"][-1]), "params": int(model.count_params()), "epochs": epochs,
               "fit_seconds": seconds}
    return model, metrics
