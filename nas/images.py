"""Image files: a folder with a sub-folder per class or a CSV of path,label listed, and images decoded
as training decodes them (resized bilinearly, raw 0-255 pixels). `nas.data` loads data with them,
`nas.records` prepares it, `nas.model_dir` labels images with them.
"""

from __future__ import annotations

import csv
import io
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from nas.errors import InputError
from nas.limits import TooManyPixels, check_image_pixels, check_path_kind, max_image_pixels, physical_memory

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # those image_dataset_from_directory reads
DEFAULT_IMAGE_SIZE = (32, 32)


def image_size(size: Sequence[int] | None) -> tuple[int, int]:
    if size is None:
        return DEFAULT_IMAGE_SIZE
    size = tuple(size) if len(size) == 2 else (size[0], size[0])
    if len(size) != 2 or min(size) < 1:
        raise InputError(f"image_size: got {' '.join(map(str, size))}, expected one or two positive integers")
    return size


def list_folder(root: Path) -> tuple[list[Path], list[str]]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise InputError(
            f"data: {root}: found {len(classes)} class folder(s), expected one sub-folder per class "
            "and at least 2 classes"
        )
    paths, labels = [], []
    for folder in classes:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise InputError(
                f"data: {folder}: class folder has no images, expected {', '.join(IMAGE_EXTENSIONS)} files"
            )
        paths += files
        labels += [folder.name] * len(files)
    return paths, labels


def list_csv(path: Path) -> tuple[list[Path], list[str]]:
    check_path_kind(path, "data", folder_ok=False)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: spreadsheets often start the file with a BOM
    except UnicodeDecodeError as e:
        raise InputError(f"data: {path}: byte {e.start}: not UTF-8 text, expected a CSV of path,label rows") from None
    paths, labels, rows = [], [], {}
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for n, row in enumerate(reader, start=1):
            if not row or (n == 1 and [c.strip().lower() for c in row] == ["path", "label"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise InputError(f"data: {path}: row {n}: got {row!r}, expected path,label")
            name = row[0].strip()
            file = path.parent / name
            check_path_kind(file, f"data: {path}: row {n}", folder_ok=False)
            if not file.is_file():
                if n == 1 and Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    raise InputError(
                        f"data: {path}: row 1: got header {row!r}, expected the header path,label "
                        "or a first row naming an image file"
                    )
                where = "an existing image file" if Path(name).is_absolute() else f"a path relative to {path.parent}"
                raise InputError(f"data: {path}: row {n}: image file {name} not found, expected {where}")
            first = rows.setdefault(file.resolve(), (n, row[1].strip()))
            if first[0] != n:
                again = "under two labels" if first[1] != row[1].strip() else "twice"
                raise InputError(
                    f"data: {path}: row {n}: image {name} is listed {again} (first on row {first[0]}), "
                    "expected each image once (a copy would land in more than one split)"
                )
            paths.append(file)
            labels.append(row[1].strip())
    except csv.Error as e:
        raise InputError(f"data: {path}: line {reader.line_num}: {e}, expected rows of path,label") from None
    if not paths:
        raise InputError(f"data: {path}: no rows, expected lines of path,label")
    return paths, labels


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def decode_each(paths: list[Path], size: tuple[int, int], color_mode: str) -> Iterator[tuple[np.ndarray, str]]:
    """(pixels, "") for each path in order, decoded by parallel tf.data calls; (zeros, why) for an
    unreadable file (or one of too many pixels). PIL releases the GIL while it decodes and resizes:
    on idle cores the calls overlap. (`nas.ray_decode` gives the same on a Ray cluster.)"""
    import tensorflow as tf

    limit = max_image_pixels(size)  # a bad NAS_MAX_IMAGE_PIXELS is the user's error, not every image's

    def decode(path: bytes):
        image, reason = decode_or_reason(Path(path.decode()), size, color_mode, limit)
        return image, reason.encode()

    pipeline = tf.data.Dataset.from_tensor_slices([str(p) for p in paths]).map(
        lambda path: tf.numpy_function(decode, [path], (tf.uint8, tf.string)), num_parallel_calls=tf.data.AUTOTUNE
    )
    for image, reason in pipeline.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        yield image, reason.decode()


def decode_or_reason(path: Path, size: tuple[int, int], color_mode: str, limit: int) -> tuple[np.ndarray, str]:
    """One file's (pixels, "") or, unreadable, (zeros of the same shape, why): what every route of
    `decode_each` yields for it. `limit`: the pixels an image may have (`max_image_pixels`)."""
    try:
        return read_pixels(path, size, color_mode, limit), ""
    except TooManyPixels as e:
        reason = str(e)
    except Exception as e:  # noqa: BLE001 - PIL raises several types for unreadable files
        reason = f"not a readable image ({type(e).__name__})"
    return np.zeros((*size, 1 if color_mode == "grayscale" else 3), np.uint8), reason


def decode_all(
    paths: list[Path], size: tuple[int, int], color_mode: str, warn: Callable[[str], None] = stderr_line
) -> tuple[np.ndarray, list[int], list[dict[str, str]]]:
    """Decodes and resizes every readable image (`decode_each`); an unreadable one is skipped and
    named through `warn`, as `nas data prepare` skips it. Returns (images, the indices of the paths
    kept, the skipped files as [{"file", "reason"}])."""
    channels = 1 if color_mode == "grayscale" else 3
    need, memory = len(paths) * size[0] * size[1] * channels, physical_memory()
    if memory and need > memory // 2:  # a typo such as --image-size 6400 must not take the machine down
        raise InputError(
            f"image_size: {len(paths)} images of {size[0]}x{size[1]}x{channels} would take "
            f"{need / 2**30:,.1f} GiB, expected at most half of this machine's {memory / 2**30:.0f} GiB"
        )
    from nas.quiet import import_tensorflow

    import_tensorflow()
    images = np.empty((len(paths), *size, channels), np.uint8)
    kept, skipped = [], []
    for i, (pixels, reason) in enumerate(decode_each(paths, size, color_mode)):
        if reason:
            skipped.append({"file": str(paths[i]), "reason": reason})
            warn(f"nas: skipped {paths[i]}: {reason}")
            continue
        images[len(kept)] = pixels
        kept.append(i)
    return images[: len(kept)], kept, skipped


def decode_image(
    source: Path | io.BytesIO, size: Sequence[int], color_mode: str, name: str | None = None
) -> np.ndarray:
    """One image file (or its bytes) as training saw it: resized bilinearly to `size`, raw 0-255
    pixels, shape (height, width, channels). Raises InputError naming `name` (or the path)."""
    try:
        return read_pixels(source, size, color_mode)
    except TooManyPixels as e:
        raise InputError(f"{name or source}: {e}") from None
    except InputError:  # a bad NAS_MAX_IMAGE_PIXELS
        raise
    except Exception as e:  # PIL raises several types for unreadable files
        raise InputError(
            f"{name or source}: not a readable image ({type(e).__name__}), expected {', '.join(IMAGE_EXTENSIONS)}"
        ) from None


def read_pixels(
    source: Path | io.BytesIO, size: Sequence[int], color_mode: str, limit: int | None = None
) -> np.ndarray:
    """decode_image's pixels; an unreadable file raises PIL's own exception, one of more than `limit`
    pixels (default: max_image_pixels(size)) TooManyPixels."""
    from PIL import Image

    with warnings.catch_warnings():  # PIL's DecompressionBombWarning: the cap below is the check
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            header = Image.open(source)  # reads the header only: pixels are counted before they are decoded
        except Image.DecompressionBombError:  # over twice PIL's own limit, which ours is below by default
            raise TooManyPixels(
                f"more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels (refused by PIL as a decompression bomb), "
                f"expected at most {limit or max_image_pixels(size):,} for a model taking {size[0]}x{size[1]}"
            ) from None
        with header:
            check_image_pixels(*header.size, size, limit)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        from nas.quiet import import_tensorflow

        import_tensorflow()  # Keras decodes (with PIL) only files whose header passed: a bad one fails in a blink
        from keras.utils import img_to_array, load_img

        image = load_img(source, color_mode=color_mode, target_size=tuple(size), interpolation="bilinear")
    return np.clip(np.round(img_to_array(image)), 0, 255).astype(np.uint8)


def encode_labels(labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Class names in a stable order (numerically when all labels are integers) and label indices."""
    unique = set(labels)
    names = sorted(unique, key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s))
    index = {name: i for i, name in enumerate(names)}
    return names, np.array([index[label] for label in labels], np.int32)
