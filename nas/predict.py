"""Labels images with a model directory: what `nas predict` and `nas serve` share.

    predictor = Predictor("export/")                      # reads labels.json and metadata.json
    files, missing = image_files(["cat.png", "pics/"])    # folders walked for image files
    for result in predictor.label_files(files, k=3):      # errors come back as {"image", "error"}
        print(result)   # {"image": "cat.png", "labels": [{"label": "cat", "probability": 0.93}, ...]}
    images = [predictor.decode(image_bytes, name="upload")]  # InputError naming it if unreadable
    predictor.model_dir.top_k(predictor.probabilities(np.stack(images)), k=3)

Images are decoded as training decoded them (ModelDir.load_image, from metadata.json) and the
model is called on batches of up to BATCH_SIZE images, never one call per image. The model is
loaded once, on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import InputError
from nas.images import IMAGE_EXTENSIONS
from nas.limits import file_kind
from nas.model_dir import ModelDir, open_model_dir

BATCH_SIZE = 256  # images decoded and predicted at a time: bounds memory for large folders


def image_files(inputs: Iterable[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files to label: a file named is kept whatever its extension; a folder gives its image files
    (IMAGE_EXTENSIONS, recursively, sorted). Returns (files, errors as (path, one-line message))."""
    files, errors = [], []
    for path in map(Path, inputs):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not found:
                errors.append((path, f"{path}: folder has no image files, expected {', '.join(IMAGE_EXTENSIONS)}"))
            files += found
        elif path.is_file():
            files.append(path)
        elif path.exists():  # a FIFO, socket or device: reading it could block for ever
            errors.append((path, f"{path}: is a {file_kind(path.stat().st_mode)}, expected an image file or a folder"))
        else:
            errors.append((path, f"{path}: no such file or folder, expected an image file or a folder of them"))
    return files, errors


class Predictor:
    """A model directory ready to label images: its Keras model is loaded once, on first use."""

    def __init__(self, model_dir: str | Path | ModelDir):
        self.model_dir = model_dir if isinstance(model_dir, ModelDir) else open_model_dir(model_dir)
        self._model = None

    @property
    def model(self):
        if self._model is None:
            self._model = self.model_dir.load_model()
        return self._model

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) of decoded images (N, H, W, C), BATCH_SIZE at a time."""
        if len(images) == 0:
            return np.empty((0, len(self.model_dir.class_names)), np.float32)
        # predict_on_batch runs the model as one traced function, traced for a variable batch size
        # after two sizes: about 2 ms for a few images where an eager call takes 100 ms (measured
        # here on the digits CNN), and without model.predict's tf.data pipeline per call.
        return np.concatenate(
            [
                np.asarray(self.model.predict_on_batch(images[i : i + BATCH_SIZE]))
                for i in range(0, len(images), BATCH_SIZE)
            ]
        )

    def predict(self, images: np.ndarray | Sequence[str | Path]) -> tuple[list[str], np.ndarray]:
        """The most probable label of each image and the class probabilities (N, classes). Images are
        raw 0-255 pixels (N, H, W) or (N, H, W, C) of the model's size, or image files' paths, decoded
        as training decoded them; InputError names what does not fit."""
        if isinstance(images, np.ndarray):
            x = images[..., None] if images.ndim == 3 else images
            if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_shape):
                raise InputError(
                    f"images: got shape {images.shape}, expected (N, {', '.join(map(str, self.input_shape))})"
                    " raw pixels, as the model was trained on"
                )
        else:
            x, errors, _ = self.model_dir.load_images(list(images))
            if errors:
                raise InputError(errors[0][1])
        probabilities = self.probabilities(x)
        return [self.model_dir.class_names[i] for i in probabilities.argmax(axis=1)], probabilities

    def warm_up(self) -> None:
        """Loads the model and traces its prediction function for any batch size (two sizes do it)."""
        for n in (1, 2):
            self.probabilities(np.zeros((n, *self.input_shape), np.uint8))

    def decode(self, source: str | Path | bytes, name: str | None = None) -> np.ndarray:
        """One image (a path or its bytes) as the model's input; InputError naming `name` if unreadable."""
        return self.model_dir.load_image(source, name=name)

    def label_files(self, files: Sequence[str | Path], k: int = 3) -> Iterator[dict[str, Any]]:
        """Per file, in order: {"image": path, "labels": [...]} or {"image": path, "error": message}."""
        for start in range(0, len(files), BATCH_SIZE):
            chunk = [Path(f) for f in files[start : start + BATCH_SIZE]]
            images, errors, decoded = self.model_dir.load_images(chunk)
            results = {path: {"image": str(path), "error": message} for path, message in errors}
            for path, labels in zip(decoded, self.model_dir.top_k(self.probabilities(images), k)):
                results[path] = {"image": str(path), "labels": labels}
            yield from (results[path] for path in chunk)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.model_dir.image_size, self.model_dir.channels)


def check_top_k(value: Any, name: str = "top_k") -> int:
    """`value` as a k for top-k labels: an integer >= 1 (a larger k than classes gives every class)."""
    try:
        k = int(str(value))
    except ValueError:
        k = 0
    if k < 1:
        raise InputError(f"{name}: got {value!r}, expected an integer >= 1")
    return k
