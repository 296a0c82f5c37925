"""Image data prepared once into sharded TFRecord files, for data that outgrows memory.

    info = prepare("photos/", "photos-32/", image_size=(32, 32))   # nas data prepare photos/ --out photos-32/
    data = load_data("photos-32/")                                 # nas search --data photos-32/

Why: decoding and resizing every image is the slow part of reading an image folder, a search reads
it at every start, and a folder whose pixels do not fit in memory cannot be loaded at all. `prepare`
decodes each image once, in parallel (tf.data), resized as `nas.images.decode_image` resizes (so the
pixels are those the folder gives), and splits the images once, as `load_data` splits a folder
(stratified, seeded). Each split becomes TFRecord shards of raw uint8 pixels and an int64 label,
described by `dataset.json` (classes, image size, counts, the shards, the images skipped as
unreadable). It is all written into a hidden sibling directory that is renamed into place at the
end, so a killed prepare never leaves a directory that looks complete.

Reading (`load`, through `nas.data.load_data`): a prepared directory whose pixels fit comfortably in
memory becomes the usual in-memory `Dataset`. A larger one (or any, with NAS_STREAM_RECORDS=1)
becomes a `StreamingDataset`: its splits are `Stream`s, a list of shard paths that travels to the
Ray workers instead of arrays, and each worker reads them with tf.data (shards interleaved, a
shuffle buffer, batches, prefetching; a cache only when the split fits in the worker's memory).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from nas import images
from nas.dataset import BUILTIN, Dataset
from nas.errors import MAX_SEED, InputError
from nas.progress import reporter
from nas.rundir import fsync_path
from nas.splits import split_indices

INDEX = "dataset.json"
FORMAT, VERSION = "nas-records", 1
SPLITS = ("train", "validation", "test")
COLOR_MODES = {"rgb": 3, "grayscale": 1}
SHARD_BYTES = 100 * 2**20  # the default shard size: large enough to read fast, small enough to spread
SHUFFLE_BYTES = 64 * 2**20  # a streamed training split's shuffle buffer, per worker
STREAM_ENV = "NAS_STREAM_RECORDS"  # =1: stream every prepared directory (tests: their data always fits)


# -- preparing ---------------------------------------------------------------------------------------


def prepare(
    source: str | Path,
    out: str | Path,
    image_size: Sequence[int] | None = None,
    shards: int | None = None,
    color_mode: str = "rgb",
    seed: int = 0,
    warn: Callable[[str], None] = images.stderr_line,
    address: str | None = None,
) -> dict[str, Any]:
    """Decodes an image folder (a sub-folder per class) or a CSV of path,label into TFRecord shards
    in `out` (new, or an empty folder) and returns its dataset.json. `shards`: files per split
    [default: about 100 MB each]. Progress goes to the reporter (nas.progress); an unreadable image is
    skipped and named through `warn`. `address`: decode on the Ray cluster there (HOST:6379, or
    `local` for a Ray of this machine's) with Ray Data (`nas.ray_decode`) instead of tf.data here;
    the files written are the same."""
    source, out = Path(source), Path(out)
    if not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed: got {seed}, expected an integer from 0 to {MAX_SEED}")
    if color_mode not in COLOR_MODES:
        raise InputError(f"color_mode: got {color_mode!r}, expected one of {', '.join(COLOR_MODES)}")
    if shards is not None and shards < 1:
        raise InputError(f"shards: got {shards}, expected an integer >= 1")
    size, channels = images.image_size(image_size), COLOR_MODES[color_mode]
    _check_new(out)
    paths, labels = _listing(source)
    image_bytes, memory = size[0] * size[1] * channels, images.physical_memory()
    if memory and image_bytes > memory // 64:  # decoding holds dozens of images at once
        raise InputError(
            f"image_size: one {size[0]}x{size[1]}x{channels} image would take "
            f"{image_bytes / 2**30:,.1f} GiB, expected at most 1/64 of this machine's memory"
        )
    names, y = images.encode_labels(labels)
    try:
        parts = dict(zip(SPLITS, split_indices(str(source), y, names, seed)))
    except InputError as e:
        raise _about_source(e) from None
    images.max_image_pixels(size)  # a bad NAS_MAX_IMAGE_PIXELS is the user's error, before Ray starts
    if address not in (None, "local"):
        from nas import cluster

        cluster.check_reachable(address)  # a wrong address too, before TensorFlow loads (seconds)
    from nas.quiet import import_tensorflow

    import_tensorflow()  # quietly, before any TensorFlow import of its own
    with _decoder(address) as decode:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.incomplete-"))
        except OSError as e:
            raise InputError(
                f"out: {out}: cannot create it ({e.strerror}), expected a folder you can write to"
            ) from None
        try:
            root = source if source.is_dir() else source.parent
            skipped, splits = [], {}
            # One pass over every split's images, in split order (one Ray Data job on a cluster).
            decoded = decode([paths[i] for split in SPLITS for i in parts[split]], size, color_mode)
            for split in SPLITS:
                index = parts[split]
                count = max(1, min(shards or math.ceil(len(index) * image_bytes / SHARD_BYTES), len(index)))
                reporter().text(f"{split}: decoding {len(index):,} images into {count} file(s) ...")
                splits[split] = _write_split(
                    staging,
                    split,
                    [paths[i] for i in index],
                    y[index],
                    names,
                    count,
                    root,
                    skipped,
                    warn,
                    itertools.islice(decoded, len(index)),
                )
            for split, about in splits.items():
                missing = [name for name, n in about["class_counts"].items() if n == 0]
                if missing:
                    raise InputError(
                        f"{source}: after skipping {len(skipped)} unreadable image(s), the {split} split has "
                        f"no image of class {missing[0]!r}, expected every class in every split"
                    )
            info = {
                "format": FORMAT,
                "version": VERSION,
                "source": str(source.resolve()),
                "class_names": names,
                "image_size": list(size),
                "channels": channels,
                "color_mode": color_mode,
                "seed": seed,
                "splits": splits,
                "skipped": skipped,
                "created": datetime.now().isoformat(timespec="seconds"),
            }
            (staging / INDEX).write_text(json.dumps(info, indent=1) + "\n")
            staging.chmod(0o777 & ~_umask())  # mkdtemp makes the folder private; this is an ordinary result
            for path in [*staging.iterdir(), staging]:  # on disk before the rename makes them look complete
                fsync_path(path)
            if out.is_dir():
                out.rmdir()  # empty (checked); the rename needs the name free
            try:
                os.rename(staging, out)
            except OSError:  # another process wrote `out` meanwhile
                _check_new(out)
                raise
            fsync_path(out.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return info


@contextmanager
def _decoder(address: str | None):
    """images.decode_each, or (with an address, checked reachable by `prepare`) its Ray Data route on
    that cluster for the block."""
    if address is None:
        yield images.decode_each
        return
    from nas import cluster
    from nas.ray_decode import decode_each_on_ray

    session = cluster.connect(None if address == "local" else address, dashboard=False)
    try:
        yield decode_each_on_ray
    finally:
        cluster.disconnect(session)


def _check_new(out: Path) -> None:
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"out: {out}: exists and is not empty, expected a new or empty folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"out: {out}: exists and is not a folder, expected a new or empty folder")


def _listing(source: Path) -> tuple[list[Path], list[str]]:
    """The images and their labels, listed as `load_data` lists a folder or a CSV."""
    if str(source) in BUILTIN and not source.exists():
        raise InputError(
            f"{source}: built-in data, which needs no preparing; expected a folder with a sub-folder "
            "per class or a .csv"
        )
    if not source.exists():
        raise InputError(f"{source}: no such file or folder, expected a folder with a sub-folder per class or a .csv")
    if source.is_dir() and (source / INDEX).is_file():
        raise InputError(f"{source}: prepared already ({INDEX}), expected an image folder or a .csv")
    if not source.is_dir() and source.suffix.lower() != ".csv":
        raise InputError(
            f"{source}: unsupported file type {source.suffix!r}, expected a folder with a sub-folder "
            "per class or a .csv (built-in data and .npz files need no preparing)"
        )
    try:
        return images.list_folder(source) if source.is_dir() else images.list_csv(source)
    except InputError as e:
        raise _about_source(e) from None


def _about_source(error: InputError) -> InputError:
    """nas.data's message without its `--data: ` prefix: here the path is the SOURCE argument."""
    return InputError(str(error).removeprefix("data: "))


def _write_split(
    folder: Path,
    split: str,
    paths: list[Path],
    labels: np.ndarray,
    names: list[str],
    shards: int,
    root: Path,
    skipped: list,
    warn,
    decoded,
) -> dict[str, Any]:
    """Writes one split as `shards` files of consecutive images (reading them in order gives the
    split's order back) and returns its entry in dataset.json. `decoded` yields each path's
    (pixels, why unreadable) in order (images.decode_each)."""
    import tensorflow as tf

    files = [f"{split}-{j:05d}-of-{shards:05d}.tfrecord" for j in range(shards)]
    counts, examples = np.zeros(len(names), np.int64), [0] * shards
    writers = [tf.io.TFRecordWriter(str(folder / name)) for name in files]
    try:
        for i, (image, reason) in enumerate(decoded):
            if reason:
                skipped.append({"file": _relative(paths[i], root), "reason": reason})
                warn(f"nas: skipped {paths[i]}: {reason}")
                continue
            shard = i * shards // len(paths)
            writers[shard].write(_example(image, int(labels[i])))
            counts[labels[i]] += 1
            examples[shard] += 1
    finally:
        for writer in writers:
            writer.close()
    return {
        "count": int(counts.sum()),
        "class_counts": dict(zip(names, counts.tolist())),
        "files": [
            {"name": name, "examples": n, "bytes": (folder / name).stat().st_size, "sha1": _sha1(folder / name)}
            for name, n in zip(files, examples)
        ],
    }


def _example(image: np.ndarray, label: int) -> bytes:
    import tensorflow as tf

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
        )
    ).SerializeToString(deterministic=True)  # map fields in key order: the same bytes in every process


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:  # a CSV may name files anywhere
        return str(path)


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- reading -------------------------------------------------------------------------------------------


def read_index(directory: Path) -> dict[str, Any]:
    """dataset.json, validated: InputError naming the file and the field at fault."""
    path = directory / INDEX
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise InputError(
            f"data: {path}: not readable JSON ({type(e).__name__}{where}), expected the {INDEX} "
            "`nas data prepare` writes"
        ) from None

    def bad(field: str, expected: str):
        value = _get(info, field)
        got = "missing" if value is _MISSING else "got " + _short(value)
        return InputError(f"data: {path}: {field}: {got}, expected {expected}")

    if not isinstance(info, dict):
        raise InputError(f"data: {path}: not a JSON object, expected the {INDEX} `nas data prepare` writes")
    if info.get("format") != FORMAT or info.get("version") != VERSION:
        field = "format" if info.get("format") != FORMAT else "version"
        raise bad(field, f"{FORMAT!r} version {VERSION}")
    names = info.get("class_names")
    if (
        not isinstance(names, list)
        or len(names) < 2
        or not all(isinstance(n, str) for n in names)
        or len(set(names)) != len(names)
    ):
        raise bad("class_names", "a list of at least 2 distinct class names")
    size = info.get("image_size")
    if not isinstance(size, list) or len(size) != 2 or not all(_positive(v) for v in size):
        raise bad("image_size", "[height, width] in pixels")
    if info.get("channels") not in (1, 3):
        raise bad("channels", "1 or 3")
    splits = info.get("splits")
    if not isinstance(splits, dict):
        raise bad("splits", f"an object with {', '.join(SPLITS)}")
    for split in SPLITS:
        about = splits.get(split)
        if not isinstance(about, dict) or not isinstance(about.get("files"), list) or not about["files"]:
            raise bad(f"splits.{split}", "an object with its count and a list of files")
        for n, file in enumerate(about["files"]):
            name = file.get("name") if isinstance(file, dict) else None
            if not isinstance(name, str) or Path(name).name != name or not name:
                raise bad(f"splits.{split}.files.{n}.name", "a file name in the same folder")
            if not isinstance(file.get("examples"), int) or file["examples"] < 0:
                raise bad(f"splits.{split}.files.{n}.examples", "the number of images in the file")
            if not (directory / name).is_file():
                raise InputError(
                    f"data: {path}: splits.{split}.files.{n}: {directory / name} not found, "
                    "expected every shard the index lists"
                )
        if about.get("count") != sum(f["examples"] for f in about["files"]) or not about["count"]:
            raise bad(f"splits.{split}.count", "the sum of its files' examples, at least 1")
        counts = about.get("class_counts")
        if not (
            isinstance(counts, dict)
            and set(counts) == set(names)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values())
            and sum(counts.values()) == about["count"]
        ):
            raise bad(f"splits.{split}.class_counts", "the images of each class, summing to the split's count")
    return info


_MISSING = object()


def _get(info: dict, field: str) -> Any:
    """The value at a dotted path (splits.train.files.0.name), or _MISSING."""
    value = info
    for key in field.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
    return value


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def fingerprint(info: dict[str, Any]) -> str:
    """The prepared images' identity (classes, shape, shards and their checksums), wherever the
    directory has moved and whether it is read into memory or streamed."""
    kept = {k: info[k] for k in ("class_names", "image_size", "channels", "splits")}
    return hashlib.sha1(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def load(
    directory: Path, name: str, image_size: Sequence[int] | None = None, stream: bool | None = None
) -> Dataset | StreamingDataset:
    """A prepared directory as a `nas.data.Dataset` (in memory) or a `StreamingDataset`; `stream`
    None decides by size, or by NAS_STREAM_RECORDS=1."""
    info = read_index(directory)
    shape = (*info["image_size"], info["channels"])
    if image_size is not None and tuple(image_size) != tuple(info["image_size"]):
        raise InputError(
            f"image_size: {name} holds images prepared at {shape[0]}x{shape[1]}, got "
            f"{image_size[0]}x{image_size[1]}; expected no --image-size (or prepare it again at "
            "that size)"
        )
    counts = {split: info["splits"][split]["count"] for split in SPLITS}
    need, memory = sum(counts.values()) * math.prod(shape), images.physical_memory()
    if stream is None:
        stream = os.environ.get(STREAM_ENV) == "1" or bool(memory and need > memory // 4)
    preprocessing = {
        "source": name,
        "color_mode": info.get("color_mode"),
        "image_size": info["image_size"],
        "prepared_from": info.get("source"),
    }
    directory = directory.resolve()  # a worker's working directory is not ours
    streams = {
        split: Stream(tuple(str(directory / f["name"]) for f in info["splits"][split]["files"]), counts[split], shape)
        for split in SPLITS
    }
    if stream:
        counts = {split: [info["splits"][split]["class_counts"][c] for c in info["class_names"]] for split in SPLITS}
        return StreamingDataset(name, info["class_names"], streams, preprocessing, fingerprint(info), counts)
    if memory and need > memory // 2:
        raise InputError(
            f"data: {name}: {sum(counts.values())} images of {'x'.join(map(str, shape))} would take "
            f"{need / 2**30:,.1f} GiB, expected at most half of this machine's {memory / 2**30:.0f} GiB "
            "in memory (nas search streams it)"
        )
    arrays = [array for split in SPLITS for array in _read(streams[split], name, split)]
    return Dataset(name, info["class_names"], *arrays, preprocessing=preprocessing, fingerprint=fingerprint(info))


def _read(stream: Stream, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's images and labels, shard after shard (their order is the split's)."""
    from nas.quiet import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    x, y, n = np.empty((stream.count, *stream.shape), np.uint8), np.empty(stream.count, np.int32), 0
    miscounted = f"data: {name}: the {split} shards hold {{}} images, expected {stream.count} as {INDEX} counts"
    for file in stream.files:
        batches = tf.data.TFRecordDataset(file).batch(1024).map(lambda records: _parse(records, stream.shape))
        try:
            for images, labels in batches.as_numpy_iterator():
                if n + len(labels) > stream.count:
                    raise InputError(miscounted.format("more"))
                x[n : n + len(labels)], y[n : n + len(labels)] = images, labels
                n += len(labels)
        except tf.errors.OpError as e:  # a truncated or foreign file, an image of another size
            lines = (e.message or "").strip().splitlines()
            reason = lines[0][:120] if lines else ""
            raise InputError(
                f"data: {name}: {file}: not readable ({type(e).__name__}: {reason}), expected the "
                "shards `nas data prepare` wrote"
            ) from None
    if n != stream.count:
        raise InputError(miscounted.format(n))
    return x, y


def _parse(records, shape: Sequence[int]):
    """A batch of serialized examples -> images uint8 (B, H, W, C) and labels int32 (B,)."""
    import tensorflow as tf

    features = tf.io.parse_example(
        records, {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}
    )
    pixels = tf.io.decode_raw(features["image"], tf.uint8)
    return tf.reshape(pixels, (-1, *shape)), tf.cast(features["label"], tf.int32)


@dataclass(frozen=True)
class Stream:
    """One or more splits of a prepared directory: what a worker needs to read them (and all that
    travels to it through Ray's object store). The trainer takes it in place of arrays."""

    files: tuple[str, ...]  # absolute paths of the TFRecord shards: on a cluster, on a disk every node reads
    count: int  # images in them
    shape: tuple[int, int, int]  # (height, width, channels) of each image

    def __len__(self) -> int:
        return self.count

    def __add__(self, other: Stream) -> Stream:
        return Stream(self.files + other.files, self.count + other.count, self.shape)

    def dataset(self, batch_size: int, shuffle: bool = False, seed: int = 0, cache: bool | None = None):
        """A tf.data.Dataset of (images uint8 (B, H, W, C), labels int32 (B,)) batches, read from
        the shards in parallel. Shuffled: the shards' order and a buffer of images, anew each epoch.
        Cached in memory (`cache` None) when the split fits there."""
        import tensorflow as tf

        files = tf.data.Dataset.from_tensor_slices(list(self.files))
        if shuffle:
            files = files.shuffle(len(self.files), seed=seed)
        records = files.interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(self.files), 8), num_parallel_calls=tf.data.AUTOTUNE
        )
        # Keras learns the steps per epoch from it; a shard short of its count fails the child.
        records = records.apply(tf.data.experimental.assert_cardinality(self.count))
        if self.fits_in_memory() if cache is None else cache:
            records = records.cache()  # the first epoch reads the files, later ones memory
        if shuffle:  # prepare wrote the split shuffled already; this varies each epoch's order
            image_bytes = math.prod(self.shape)
            records = records.shuffle(max(1, min(self.count, SHUFFLE_BYTES // image_bytes)), seed=seed)
        return (
            records.batch(batch_size)
            .map(lambda r: _parse(r, self.shape), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )

    def fits_in_memory(self) -> bool:
        """Whether every worker this machine may run (one per CPU) could cache these images within a
        quarter of its memory."""
        memory = images.physical_memory()
        return bool(memory) and self.count * math.prod(self.shape) < memory // (4 * (os.cpu_count() or 1))

    def head(self, n: int = 1) -> np.ndarray:
        """The first n images, uint8 (n, H, W, C)."""
        return next(iter(self.dataset(n, cache=False)))[0].numpy()


@dataclass
class StreamingDataset:
    """A prepared directory too large for memory, in place of a `nas.data.Dataset`: the same
    names, shape and description, and splits given as `Stream`s instead of arrays."""

    name: str
    class_names: list[str]
    splits: dict[str, Stream]  # train, validation, test
    preprocessing: dict[str, Any]
    fingerprint: str
    counts: dict[str, list[int]] = field(default_factory=dict)  # per split, images per class (dataset.json)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.splits["train"].shape

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self, final: bool = False) -> np.ndarray:
        """Images per class that the children train on, or with `final` the winner (train + validation)."""
        return sum(np.array(self.counts[split], np.int64) for split in ("train", "validation")[: 1 + final])

    def search_arrays(self) -> dict[str, Stream]:
        """What every child trains and validates on, as the trainer takes it: never the test split."""
        return {"train": self.splits["train"], "val": self.splits["validation"]}

    def final_arrays(self) -> dict[str, Stream]:
        """What the winner is retrained on (train + validation) and tested on."""
        return {"train": self.splits["train"] + self.splits["validation"], "test": self.splits["test"]}

    def describe(self) -> str:
        h, w, c = self.input_shape
        files = sum(len(s.files) for s in self.splits.values())
        return (
            f"{self.name}: {self.num_classes} classes, {h}x{w}x{c} images, train {self.splits['train'].count} / "
            f"validation {self.splits['validation'].count} / test {self.splits['test'].count} (held out), "
            f"streamed from {files} TFRecord files"
        )
