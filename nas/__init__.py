"""nas: neural architecture search for image classification, on Keras and Ray Tune.

    import nas
    run = nas.search(data=(x, y), space="cnn10", budget=20, seed=0)   # a nas.Run
    run.best_model(), run.trials, run.to_dataframe(), run.export("out/")
    clf = nas.ImageClassifier(space="cnn10", max_trials=20).fit(x, y)
    labels, probabilities = nas.load("out/").predict(images)
    run = nas.open_run("runs/cnn10-20261204-101500")

Importing nas is light: TensorFlow and Ray load when a search, a model or a prediction needs them.
"""

import logging

from nas.errors import InputError, SearchInterrupted, SearchStopped
from nas.run import Run
from nas.trial_record import Metrics, TrialRecord
from search_spaces import SpaceError

# Importing Ray in Jupyter without ipywidgets logs an INFO line to stderr, into the cell's output,
# advising to install it for Ray's own widgets (which nas never shows).
logging.getLogger("ray.widgets.util").setLevel(logging.WARNING)

_API = ("search", "ImageClassifier", "load", "open_run", "SearchResult")


def __getattr__(name: str):
    if name in _API:  # nas.api imports numpy and the engine's settings: only when asked for
        from nas import api

        return getattr(api, name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


__all__ = [
    "ImageClassifier",
    "InputError",
    "Metrics",
    "Run",
    "SearchInterrupted",
    "SearchResult",
    "SearchStopped",
    "SpaceError",
    "TrialRecord",
    "load",
    "open_run",
    "search",
]
