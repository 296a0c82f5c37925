"""A model directory: what `nas export` writes and `nas train`, `nas predict` and `nas serve` read.

    MODEL_DIR/
      model.keras        the Keras model: raw 0-255 pixels in, class probabilities out
      model.weights.h5   its weights alone (for `python model.py --weights model.weights.h5`)
      labels.json        the class names, in the order of the model's outputs
      metadata.json      where it came from (run, trial, space, architecture, metrics) and
                         `preprocessing`: how an image file becomes the model's input
      model.py, saved_model/, model.tflite   written by `nas export` when asked for
      v2/, v3/, ...      later versions written by `nas train`, each a model directory (version 1
                         is MODEL_DIR itself); metadata.json has `version` and `parent`

    out = write_model_dir("export/", model, class_names, metadata)
    md = open_model_dir("export/")
    images, errors = md.load_images(["cat.png", "notes.txt"])   # errors: [(path, message)]
    probabilities = md.load_model().predict(images)
    path, n = write_version("export/", model, class_names, metadata)  # export/v2/, then v3/ ... (nas train)

Images are decoded exactly as the search decoded folder and CSV images: resized bilinearly to the
model's input size, in the colour mode its channels imply, kept as raw pixels (the model rescales).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import InputError
from nas.rundir import fsync_path

COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}  # channels -> keras.utils.load_img's color_mode
REQUIRED = ("model.keras", "labels.json", "metadata.json")
MAX_IMAGE_SIDE = 8192  # pixels: an image_size in metadata.json beyond it is a damaged file
VERSION_NAME = re.compile(r"v([0-9]+)")  # `nas train` writes versions 2, 3, ... as MODEL_DIR/v2/, v3/, ...


def preprocessing_for(input_shape: Sequence[int]) -> dict[str, Any]:
    """The `preprocessing` entry of metadata.json for a model taking images of `input_shape` (H, W, C)."""
    height, width, channels = (int(d) for d in input_shape)
    return {
        "image_size": [height, width],
        "color_mode": COLOR_MODES[channels],
        "resize": "bilinear",
        "pixels": "raw 0-255; the model rescales them itself",
    }


@dataclass
class ModelDir:
    path: Path
    class_names: list[str]
    metadata: dict[str, Any]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.metadata["preprocessing"]["image_size"])

    @property
    def color_mode(self) -> str:
        return self.metadata["preprocessing"]["color_mode"]

    @property
    def channels(self) -> int:
        return next(c for c, mode in COLOR_MODES.items() if mode == self.color_mode)

    def load_model(self):
        """The Keras model, loaded with safe_mode (no arbitrary code from the file runs)."""
        from nas.quiet import import_tensorflow

        import_tensorflow()
        import keras

        file = self.path / "model.keras"
        try:
            model = keras.saving.load_model(file, safe_mode=True)
        except Exception as e:
            raise InputError(
                f"{file}: not a loadable Keras model ({type(e).__name__}), expected one written by nas export"
            ) from None
        self.check_model(model)
        return model

    def check_model(self, model) -> None:
        """InputError unless the model takes the images metadata.json describes and gives one
        probability per class of labels.json: a hand-edited directory is caught here, not by Keras."""
        expected = (*self.image_size, self.channels)
        try:
            got = tuple(int(d) for d in model.input_shape[1:])
            outputs = int(model.output_shape[-1])
        except (AttributeError, TypeError, ValueError):
            raise InputError(
                f"{self.path / 'model.keras'}: a model without one fixed input and output, "
                "expected one written by nas export"
            ) from None
        if got != expected:
            raise InputError(
                f"{self.path / 'metadata.json'}: preprocessing: image_size {list(self.image_size)} and color_mode "
                f"{self.color_mode} make {expected}, but model.keras takes {got}; expected them to agree"
            )
        if outputs != len(self.class_names):
            raise InputError(
                f"{self.path / 'labels.json'}: {len(self.class_names)} class names, but model.keras gives "
                f"{outputs} probabilities; expected one name per output"
            )

    def load_image(self, source: str | Path | bytes, name: str | None = None) -> np.ndarray:
        """One image (a path or its bytes) as the model's input, shape (H, W, C) uint8."""
        from nas.images import decode_image

        if isinstance(source, (bytes, bytearray)):
            return decode_image(io.BytesIO(source), self.image_size, self.color_mode, name=name or "image")
        return decode_image(Path(source), self.image_size, self.color_mode, name=name)

    def load_images(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, list[tuple[Path, str]], list[Path]]:
        """Decodes every readable image: (images, errors as (path, one-line message), paths decoded)."""
        images, errors, decoded = [], [], []
        for path in map(Path, paths):
            try:
                images.append(self.load_image(path))
                decoded.append(path)
            except InputError as e:
                errors.append((path, str(e)))
        stacked = np.stack(images) if images else np.empty((0, *self.image_size, self.channels), np.uint8)
        return stacked, errors, decoded

    def top_k(self, probabilities: np.ndarray, k: int = 3) -> list[list[dict[str, Any]]]:
        """Per image, the k most probable classes as [{"label": name, "probability": p}], best first."""
        k = min(k, len(self.class_names))
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [
            [{"label": self.class_names[i], "probability": float(row[i])} for i in idx]
            for row, idx in zip(probabilities, order)
        ]


def open_model_dir(path: str | Path) -> ModelDir:
    """Reads a model directory's labels and metadata; one-line InputError for anything missing or bad."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such model directory, expected one written by nas export")
    for name in REQUIRED:
        if not (path / name).is_file():
            raise InputError(
                f"{path / name}: missing, expected a model directory written by nas export ({', '.join(REQUIRED)})"
            )
    labels = _read_json(path / "labels.json")
    metadata = _read_json(path / "metadata.json")
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(n, str) for n in labels):
        raise InputError(f"{path / 'labels.json'}: expected a list of at least 2 class names")
    if len(set(labels)) != len(labels):
        raise InputError(f"{path / 'labels.json'}: a class name is given twice, expected distinct class names")
    prep = metadata.get("preprocessing") if isinstance(metadata, dict) else None
    where = f"{path / 'metadata.json'}: preprocessing"
    if not isinstance(prep, dict):
        raise InputError(f"{where}: missing, expected a mapping with image_size and color_mode")
    if prep.get("color_mode") not in COLOR_MODES.values():
        raise InputError(
            f"{where}.color_mode: got {prep.get('color_mode')!r}, expected one of {', '.join(COLOR_MODES.values())}"
        )
    size = prep.get("image_size")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE for v in size)
    ):
        raise InputError(
            f"{where}.image_size: got {size!r}, expected [height, width] of integers from 1 to {MAX_IMAGE_SIDE}"
        )
    return ModelDir(path, labels, metadata)


def write_model_dir(out: str | Path, model, class_names: Sequence[str], metadata: dict[str, Any]) -> Path:
    """Writes model.keras, model.weights.h5, labels.json and metadata.json into `out` (created);
    metadata gets `preprocessing` from the model's input shape unless it has one."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metadata = {**metadata, "input_shape": [int(d) for d in model.input_shape[1:]], "classes": len(class_names)}
    metadata.setdefault("preprocessing", preprocessing_for(model.input_shape[1:]))
    model.save(out / "model.keras")
    model.save_weights(out / "model.weights.h5")
    (out / "labels.json").write_text(json.dumps(list(class_names), indent=1) + "\n")
    (out / "metadata.json").write_text(json.dumps(metadata, indent=1) + "\n")
    return out


def version_of(path: str | Path) -> tuple[Path, int]:
    """(the exported directory, the version number) of a model directory: `out/` is version 1 of
    `out/`, and `out/vN/` (a `vN` folder inside a model directory) is version N of `out/`."""
    path = Path(path)
    match = VERSION_NAME.fullmatch(path.name)
    if match and all((path.parent / name).is_file() for name in REQUIRED):
        return path.parent, int(match[1])
    return path, 1


def versions(root: str | Path) -> list[int]:
    """The version numbers of an exported directory, in order: 1 (the directory itself), then each `vN/`."""
    root = Path(root)
    found = [int(m[1]) for p in root.iterdir() if (m := VERSION_NAME.fullmatch(p.name))]  # a file too: taken
    return [1, *sorted(found)]


def write_version(root: str | Path, model, class_names: Sequence[str], metadata: dict[str, Any]) -> tuple[Path, int]:
    """Writes a model directory as the next free version `root/vN/` and returns (its path, N).

    Never overwrites, and never leaves a half-written version that looks complete: everything is
    written and fsynced under a hidden temporary name (`.incomplete-*`, removed on an error; a killed
    process may leave one behind, which nothing reads) and renamed to `vN` when complete. The
    rename fails rather than replace a version another process wrote meanwhile; the next N is tried.
    metadata.json gets `version: N`."""
    root = Path(root)
    if not os.access(root, os.W_OK | os.X_OK):
        raise InputError(f"{root}: cannot write a new version here, expected a model directory you can write to")
    temporary = root / f".incomplete-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        temporary.mkdir()  # not mkdtemp: a version is as readable as the umask makes its parent, not private
        version = max(versions(root)) + 1
        write_model_dir(temporary, model, class_names, {**metadata, "version": version})
        while True:
            _fsync_tree(temporary)
            try:
                os.rename(temporary, root / f"v{version}")
                break
            except OSError:
                if not (root / f"v{version}").exists():
                    raise
                version = max(versions(root)) + 1  # another process took this number meanwhile
                file = temporary / "metadata.json"
                file.write_text(json.dumps({**json.loads(file.read_text()), "version": version}, indent=1) + "\n")
        fsync_path(root)
    except OSError as e:
        shutil.rmtree(temporary, ignore_errors=True)
        raise InputError(
            f"{root}: could not write a new version ({e.strerror or type(e).__name__}), expected a "
            "model directory you can write to"
        ) from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return root / f"v{version}", version


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):  # files before the folders holding them
        fsync_path(path)
    fsync_path(folder)


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(
            f"{file}: not readable JSON ({type(e).__name__}), expected a file written by nas export"
        ) from None
