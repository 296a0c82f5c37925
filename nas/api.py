"""nas as a Python library: what `import nas` offers beside the `nas` command.

    run = nas.search(data=(x, y), space="cnn10", budget=20, controller="evolution", seed=0)
    run.best_model(); run.trials; run.to_dataframe(); run.summary; run.path
    run.export("out/", formats=("python", "keras"))
    clf = nas.ImageClassifier(space="cnn10", max_trials=20).fit(x_train, y_train)
    labels, probabilities = nas.load("out/").predict(images)

A search from Python writes the same run directory as `nas search` (`nas report`, `nas export` and
`nas show` read it), and in-memory images are kept in it as data.npz. A Ray session the caller
started (`ray.init()`) is used and left running; one that nas started is shut down at the end.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from nas.config import SearchConfig, check_settings, parse_duration
from nas.errors import InputError
from nas.run import Run, find_run, read_run

SETTINGS = tuple(f.name for f in fields(SearchConfig) if f.name != "data")


class SearchResult(Run):
    """A run directory read back (nas.Run: trials, summary, best, best_model, to_dataframe) that can
    also export its winner."""

    def export(
        self, out: str | Path | None = None, formats: Sequence[str] = ("python", "keras"), trial: int | None = None
    ) -> Path:
        """Exports the winner (or `trial`) as `nas export` does, in formats of python, keras, savedmodel
        and tflite, into `out` (default RUN/export). Returns the model directory, which `nas.load` reads."""
        from nas.export import export_run

        return export_run(str(self.path), trial=trial, formats=",".join(formats), out=out)


def open_run(run: str | Path, runs_dir: str | Path = "runs") -> SearchResult:
    """Any run directory (or a run's name under `runs_dir`), read and checked: its trials, summary and
    best architecture, as `nas show` reads it."""
    return SearchResult(**vars(read_run(find_run(run, runs_dir))))


def search(
    data: Any = None,
    *,
    validation_data: Any = None,
    test_data: Any = None,
    class_names: Sequence[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    **settings: Any,
) -> SearchResult:
    """Searches a space for the best image classifier, retrains and tests the winner, and returns the
    run as its directory holds it (a `SearchResult`: a `nas.Run` that can export its winner).

    data: what `nas search --data` takes (mnist5k, digits, an image folder, a CSV or an .npz path), an
        `(x, y)` pair of arrays (images N x H x W, N x H x W x 1 or x 3, uint8 0-255 or float 0-1; labels of
        any kind, or indices of `class_names`), or a `tf.data.Dataset` of (images, labels) batches such
        as `keras.utils.image_dataset_from_directory` returns (its class_names are kept). Default mnist5k.
    validation_data, test_data: the same kinds of pairs or datasets, for arrays only; otherwise drawn
        from `data` (stratified, seeded): 20 % held out for testing, then 20 % of the rest for validation.
    class_names: the names of the label indices of array data.
    resume: continue the run `name` where it stopped, as `nas search --resume` (its settings are the
        run's; only how it runs may change, such as budget or workers).
    progress: print the settings, a line per finished trial and the winner, as the command does (with
        rich: on the terminal, or as the cell's output in Jupyter); False prints nothing.
    **settings: every other setting of `nas search`, by its Python name (`nas.SearchConfig`): space,
        budget, strategy, controller, seed, name, runs_dir, epochs, final_epochs, ensemble, workers,
        cpus_per_trial, gpus_per_trial, tpu, mixed_precision, address, image_size, color_mode, base, scheduler,
        grace_period, reduction_factor, objective, target_params, target_latency_ms, objective_weight,
        class_weight, time_budget (seconds, or "30m" as the command takes it), max_failures, trial_timeout,
        worker_memory_growth, dashboard, verbose, mlflow (a tracking URI), mlflow_experiment, mlflow_register.

    Raises InputError (bad input, naming what is wrong), SearchStopped (the search could not go on;
    what finished is kept) or SearchInterrupted (a keyboard interrupt; resumable).
    """
    from nas.engine import run_search
    from search_spaces import load_space

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TypeError(
            f"search() got unexpected keyword argument(s) {', '.join(unknown)}; the settings are {', '.join(SETTINGS)}"
        )
    if "image_size" in settings and isinstance(settings["image_size"], int):
        settings["image_size"] = (settings["image_size"],) * 2
    if isinstance(settings.get("image_size"), list):
        settings["image_size"] = tuple(settings["image_size"])
    try:
        if isinstance(settings.get("time_budget"), str):  # "30m", as the command takes it
            try:
                settings["time_budget"] = parse_duration(settings["time_budget"])
            except ValueError as e:
                raise ValueError(f"time_budget: {e}") from None
        check_settings(settings)
    except ValueError as e:
        raise InputError(str(e)) from None
    arrays = None
    if data is None:
        if validation_data is not None or test_data is not None:
            raise InputError("validation_data: given without data, expected it beside data=(x, y)")
    elif isinstance(data, (str, os.PathLike)):
        if validation_data is not None or test_data is not None or class_names is not None:
            raise InputError(
                f"data: {data}: validation_data, test_data and class_names go with array data, not "
                "with a path (an .npz holds x_val, y_val, x_test, y_test and class_names)"
            )
        settings["data"] = os.fspath(data)
    else:
        arrays = data_arrays(data, validation_data, test_data, class_names)
    if resume:
        if not settings.get("name"):
            raise InputError("name: resume=True needs the name of the run to continue")
        given = set(settings) - {"name", "runs_dir"}
    else:
        given = set()
        if not settings.get("name"):
            space = load_space(settings.get("space", SearchConfig.space))
            settings["name"] = f"{space.name}-{datetime.now():%Y%m%d-%H%M%S}"
    config = SearchConfig(**settings)
    from nas import progress as reports

    with reports.reporting(reports.reporter() if progress else reports.SILENT):
        run_search(config, resume=resume, given=given, arrays=arrays)
    return open_run(Path(config.runs_dir) / config.name)


def data_arrays(
    data: Any, validation_data: Any = None, test_data: Any = None, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The arrays of nas.data.checked_arrays from the pairs or tf.data datasets `search` takes."""
    arrays: dict[str, Any] = {}
    for key, value in (("", data), ("_val", validation_data), ("_test", test_data)):
        if value is None:
            continue
        argument = {"": "data", "_val": "validation_data", "_test": "test_data"}[key]
        x, y, names = _pair(value, argument)
        arrays[f"x{key}"], arrays[f"y{key}"] = x, y
        if names is not None and class_names is None and key == "":
            class_names = names
    if class_names is not None:
        arrays["class_names"] = np.array([str(n) for n in class_names])
    return arrays


def _pair(value: Any, argument: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """(images, labels, class names or None) of an (x, y) pair or a tf.data.Dataset of batches."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return np.asarray(value[0]), np.asarray(value[1]), None
    if type(value).__module__.startswith("tensorflow") and hasattr(value, "as_numpy_iterator"):
        images, labels = [], []
        for element in value.as_numpy_iterator():
            if not isinstance(element, tuple) or len(element) != 2:
                raise InputError(
                    f"{argument}: a dataset of {type(element).__name__}, expected (images, labels) "
                    "batches, as keras.utils.image_dataset_from_directory gives"
                )
            x, y = np.asarray(element[0]), np.asarray(element[1])
            if x.ndim == 3:  # an unbatched dataset: one image and its label
                x, y = x[None], y[None]
            if y.ndim == 2:  # label_mode "categorical" (one-hot) or "binary" (one column)
                y = np.argmax(y, axis=-1) if y.shape[-1] > 1 else y[:, 0]
            if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
                y = y.astype(np.int64)
            images.append(x)
            labels.append(y.reshape(-1))
        if not images:
            raise InputError(f"{argument}: the dataset is empty, expected (images, labels) batches")
        names = getattr(value, "class_names", None)
        return np.concatenate(images), np.concatenate(labels), list(names) if names else None
    raise InputError(
        f"{argument}: got {type(value).__name__}, expected a path, an (x, y) pair of arrays or a "
        "tf.data.Dataset of (images, labels)"
    )


class ImageClassifier:
    """The AutoKeras convention over `nas.search`: fit, predict, evaluate, export_model.

        clf = nas.ImageClassifier(space="cnn10", max_trials=20, seed=0)
        clf.fit(x_train, y_train, validation_data=(x_val, y_val))
        clf.predict(x_test); clf.evaluate(x_test, y_test); model = clf.export_model()

    max_trials is the search's budget; other keywords are `nas.search`'s settings. The winner is
    retrained on train + validation and tested on a held-out part of x, y (or on test_data).
    """

    def __init__(self, space: str = "cnn10", max_trials: int | None = None, **settings: Any):
        self.settings = {"space": space, **({"budget": max_trials} if max_trials is not None else {}), **settings}
        self.run: SearchResult | None = None
        self._model = None
        self._indexed = False  # whether fit's labels were indices of given class names

    def fit(self, x: Any, y: Any = None, validation_data: Any = None, test_data: Any = None) -> ImageClassifier:
        """Searches on (x, y) (or x, a tf.data.Dataset) and keeps the retrained winner."""
        data = x if y is None else (x, y)
        self._indexed = "class_names" in self.settings or getattr(x, "class_names", None) is not None
        self.run = search(data, validation_data=validation_data, test_data=test_data, **self.settings)
        self._model = self.run.best_model()
        return self

    @property
    def class_names(self) -> list[str]:
        return self._fitted().class_names

    def _fitted(self) -> SearchResult:
        if self.run is None:
            raise RuntimeError("ImageClassifier: call fit() first")
        return self.run

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities (N, classes) of images shaped as the training images were."""
        self._fitted()
        return np.asarray(self._model.predict(_as_images(x), verbose=0))

    def predict(self, x: Any) -> np.ndarray:
        """The most probable class name of each image."""
        names = self.class_names
        return np.array([names[i] for i in self.predict_proba(x).argmax(axis=1)])

    def evaluate(self, x: Any, y: Any) -> dict[str, Any]:
        """The evaluation of labelled images (labels as given to fit): accuracy, balanced accuracy,
        per-class precision, recall and F1, the confusion matrix (`nas.evaluation`)."""
        from nas.evaluation import evaluate

        names = self.class_names
        index = {name: i for i, name in enumerate(names)}
        truth = [names[int(v)] if self._indexed else str(v) for v in np.asarray(y).reshape(-1).tolist()]
        unknown = sorted(set(truth) - set(index))
        if unknown:
            raise InputError(
                f"y: label(s) {', '.join(map(repr, unknown[:10]))} not among the classifier's labels, expected "
                "labels as given to fit"
            )
        return evaluate(self.predict_proba(x), np.array([index[t] for t in truth]), names)

    def export_model(self):
        """The retrained winner, a keras.Model (raw pixels in, class probabilities out)."""
        self._fitted()
        return self._model


def _as_images(x: Any) -> np.ndarray:
    """Images as the models take them: raw 0-255 pixels, N x H x W x C (float 0-1 scaled up)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if np.issubdtype(x.dtype, np.floating) and x.size and x.max() <= 1.0:
        x = x * 255.0
    return x.astype(np.float32)


def load(path: str | Path):
    """A model directory `nas export` (or `run.export`) wrote, ready to label images:
    `predictor.predict(images) -> (labels, probabilities)`."""
    from nas.predict import Predictor

    return Predictor(path)
