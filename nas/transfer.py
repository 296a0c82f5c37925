"""Transfer learning: a user's trained Keras model as the body of every child of a `transfer` space.

    base = read_base("digits04/export/model.keras", input_shape=(8, 8, 1))   # bytes, checked
    provide(base)                     # in each process that builds children (workers, export)
    model = build_model(spec, (8, 8, 1), 5)          # nas.builder: the base's body + a new head

The base is a local `.keras` file, never downloaded: a model of the user's own or the model.keras
of a nas export. It takes the images as `--data` gives them (raw 0-255 pixels, as nas's models do),
so it carries its own preprocessing. Its classifier is cut off (`features`): the last Dense layer
and the Dropout layers before it; what fed the classifier feeds the child's head. Every child
starts from the base's trained weights, loaded afresh, since fine-tuning changes them.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from pathlib import Path

from nas.errors import InputError

_BASE: dict[str, Path] = {}  # per process: the provided base's file, by "current"


def check_base_file(path: str | Path) -> Path:
    """The --base path, if it names a .keras file: checked at once, before the slow steps."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".keras":
        raise InputError(
            f"base: {path}: {'not a .keras file' if path.is_file() else 'no such file'}, expected "
            "a trained Keras model saved as .keras (such as a nas export's model.keras)"
        )
    return path


def read_base(path: str | Path, input_shape: Sequence[int]) -> bytes:
    """The base file's bytes, after checking that it loads, takes images of `input_shape` and has
    a classifier to cut off. Raises InputError naming the file and what was expected."""
    path = check_base_file(path)
    data = path.read_bytes()
    try:
        model = _load(path)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a file it cannot read
        raise InputError(
            f"base: {path}: cannot load it ({type(e).__name__}), expected a model saved by Keras 3 with model.save()"
        ) from None
    expected = tuple(int(d) for d in input_shape)
    got = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if got != expected:
        raise InputError(
            f"base: {path}: takes images of shape {got}, the data's are {expected}; expected a "
            "base trained on images of the same size and channels (see --image-size)"
        )
    try:
        features(model)
    except ValueError as e:
        raise InputError(f"base: {path}: {e}") from None
    return data


def provide(data: bytes | None) -> None:
    """Makes `data` (a .keras file's bytes) the base that transfer children are built on, in this
    process. A worker is given it once per search; the file is written once per content."""
    if data is None:
        return
    digest = hashlib.sha1(data).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"nas-base-{digest}.keras"
    if not path.is_file():
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".keras", delete=False) as f:
            f.write(data)
        Path(f.name).replace(path)
    _BASE["current"] = path


def base_model():
    """A fresh copy of the provided base, with its trained weights."""
    if "current" not in _BASE:
        raise ValueError("a transfer space needs a base model: give --base PATH")
    return _load(_BASE["current"])


def features(base):
    """The base without its classifier: a model from its input to what fed its last Dense layer
    (skipping the Dropout layers just before it); of an ensemble, its best member's. Mirrored in
    model.py by `nas.codegen`."""
    import keras

    from nas.ensemble import networks

    base = networks(base)[0]  # an ensemble's best member (nas.ensemble)
    layers = list(base.layers)
    if not layers or not isinstance(layers[-1], keras.layers.Dense):
        raise ValueError(
            "its last layer is not a Dense classifier, expected a classification model to cut the classifier off"
        )
    cut = layers.pop()
    while layers and isinstance(layers[-1], keras.layers.Dropout):
        cut = layers.pop()
    if not layers or isinstance(layers[-1], keras.layers.InputLayer):
        raise ValueError("nothing comes before its classifier, expected layers to transfer")
    # What fed the first layer cut off, in the base's own graph (a nested model's `output` would be
    # its inner graph's: a Keras Application inside nas.applications' base).
    return keras.Model(base.inputs, cut.input, name="base")


def freeze(body, fraction: float) -> int:
    """Freezes the first `fraction` of the body's layers that hold weights; returns how many.
    A frozen BatchNormalization layer also keeps its statistics (Keras runs it in inference mode)."""
    weighted = [layer for layer in body.layers if layer.weights]
    count = round(fraction * len(weighted))
    for layer in weighted[:count]:
        layer.trainable = False
    return count


def _load(path: Path):
    import keras

    return keras.saving.load_model(path, compile=False)
