"""nas data prepare (nas.records): image folders decoded once into TFRecord shards, read back into
memory or streamed with tf.data, and one real search through Ray on a streamed directory."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nas_commands import run_nas
from PIL import Image

from nas import records
from nas.data import load_data
from nas.dataset import data_fingerprint
from nas.errors import InputError

CLASSES = {"red": 0, "green": 1, "blue": 2}  # each class a colour: a linear model learns it in a few steps
SPLITS = {"train": "train", "val": "validation", "test": "test"}


def write_folder(root: Path, per_class: int = 10, corrupt: bool = False) -> Path:
    """Noisy images of three colours, 12x10 PNGs; with `corrupt`, green/broken.png is not an image."""
    rng = np.random.default_rng(0)
    for name, channel in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (10, 12, 3))
            pixels[..., channel] += 180
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    if corrupt:
        (root / "green" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(128, 192)))
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A folder without bad images, prepared at 8x6 in two shards per split with seed 3."""
    root = tmp_path_factory.mktemp("prepared")
    records.prepare(write_folder(root / "pics"), root / "out", image_size=(8, 6), shards=2, seed=3)
    return root


def test_prepare_writes_shards_and_an_index_and_skips_a_corrupt_image(tmp_path, capfd):
    source = write_folder(tmp_path / "pics", corrupt=True)
    info = records.prepare(source, tmp_path / "out", image_size=(8, 8), shards=3)
    assert (
        f"nas: skipped {source / 'green' / 'broken.png'}: not a readable image (UnidentifiedImageError)"
        in capfd.readouterr().err.splitlines()
    )
    on_disk = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert on_disk == info and info["class_names"] == ["blue", "green", "red"]
    assert info["skipped"] == [{"file": "green/broken.png", "reason": "not a readable image (UnidentifiedImageError)"}]
    assert (info["image_size"], info["channels"], info["color_mode"], info["seed"]) == ([8, 8], 3, "rgb", 0)
    splits = info["splits"]
    # 31 listed, split 19 / 5 / 7 as load_data splits 31 images with seed 0; the broken one fell in train.
    assert [splits[s]["count"] for s in ("train", "validation", "test")] == [18, 5, 7]
    totals = {name: sum(splits[s]["class_counts"][name] for s in splits) for name in CLASSES}
    assert totals == {"red": 10, "green": 10, "blue": 10}
    for split, about in splits.items():
        assert [f["name"] for f in about["files"]] == [f"{split}-{i:05d}-of-00003.tfrecord" for i in range(3)]
        assert sum(f["examples"] for f in about["files"]) == about["count"] == sum(about["class_counts"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pics"]  # no temporary folder left


def test_a_prepared_directory_loads_with_the_pixels_of_the_folder(prepared):
    data = load_data(str(prepared / "out"))  # fits in memory: read into arrays
    direct = load_data(str(prepared / "pics"), image_size=(8, 6), seed=3)
    assert data.class_names == direct.class_names and data.input_shape == direct.input_shape == (8, 6, 3)
    for split in SPLITS:  # same images, same labels, same order (the shards hold consecutive images)
        np.testing.assert_array_equal(getattr(data, f"x_{split}"), getattr(direct, f"x_{split}"))
        np.testing.assert_array_equal(getattr(data, f"y_{split}"), getattr(direct, f"y_{split}"))
    with pytest.raises(InputError, match=r"image_size: .*out holds images prepared at 8x6, got 16x16"):
        load_data(str(prepared / "out"), image_size=(16, 16))


def test_streaming_yields_every_image_of_each_split(prepared, monkeypatch):
    in_memory = load_data(str(prepared / "out"))
    monkeypatch.setenv("NAS_STREAM_RECORDS", "1")
    streamed = load_data(str(prepared / "out"))
    assert isinstance(streamed, records.StreamingDataset) and "streamed from 6 TFRecord files" in streamed.describe()
    assert streamed.input_shape == (8, 6, 3) and streamed.num_classes == 3
    assert data_fingerprint(streamed) == data_fingerprint(in_memory)  # a resumed search may read it either way
    for split, name in SPLITS.items():
        stream = streamed.splits[name]
        images, labels = zip(*((x.numpy(), y.numpy()) for x, y in stream.dataset(4, shuffle=True, seed=1)))
        x, y = np.concatenate(images), np.concatenate(labels)
        assert len(y) == len(stream) == len(getattr(in_memory, f"y_{split}"))
        order = np.lexsort(x.reshape(len(x), -1).T)
        expected_x, expected_y = getattr(in_memory, f"x_{split}"), getattr(in_memory, f"y_{split}")
        expected = np.lexsort(expected_x.reshape(len(expected_x), -1).T)
        np.testing.assert_array_equal(x[order], expected_x[expected])
        np.testing.assert_array_equal(y[order], expected_y[expected])
    assert streamed.search_arrays().keys() == {"train", "val"}
    final = streamed.final_arrays()
    assert len(final["train"]) == len(in_memory.y_train) + len(in_memory.y_val)
    assert len(final["test"]) == len(in_memory.y_test)


def test_a_failed_prepare_leaves_nothing(tmp_path, monkeypatch):
    source = write_folder(tmp_path / "pics")
    written = []

    def fail_later(image, label):
        if len(written) == 20:
            raise KeyboardInterrupt  # Ctrl-C halfway through the training split
        written.append(label)
        return b""

    monkeypatch.setattr(records, "_example", fail_later)
    with pytest.raises(KeyboardInterrupt):
        records.prepare(source, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pics"]


def test_a_killed_prepare_leaves_no_directory(tmp_path):
    """SIGKILL as the last shard's checksum is taken: only a hidden temporary folder remains."""
    source = write_folder(tmp_path / "pics", per_class=5)
    code = (
        "import os, signal, sys\nfrom nas import records\n"
        "records._sha1 = lambda path: path.name.startswith('test') and os.kill(os.getpid(), signal.SIGKILL)\n"
        "records.prepare(sys.argv[1], sys.argv[2])\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(source), str(tmp_path / "out")], timeout=120)
    assert result.returncode == -signal.SIGKILL
    assert not (tmp_path / "out").exists()
    assert [p.name.startswith(".out.incomplete-") for p in tmp_path.iterdir() if p.name != "pics"] == [True]
    records.prepare(source, tmp_path / "out")  # the next prepare is not in its way
    assert (tmp_path / "out" / "dataset.json").is_file()


def test_an_existing_output_is_refused_unless_empty(tmp_path, prepared):
    with pytest.raises(InputError, match=r"^out: .*out: exists and is not empty, expected a new or empty folder$"):
        records.prepare(prepared / "pics", prepared / "out")
    (tmp_path / "empty").mkdir()
    records.prepare(prepared / "pics", tmp_path / "empty", image_size=(4, 4))
    assert (tmp_path / "empty" / "dataset.json").is_file()


def _index_without(key):
    return lambda info: info.pop(key)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda info: "{not json", r"dataset.json: not readable JSON \(JSONDecodeError at line 1\)"),
        (_index_without("class_names"), r"dataset.json: class_names: missing, expected a list of at least 2"),
        (lambda info: info.update(version=7), r"dataset.json: version: got 7, expected 'nas-records' version 1"),
        (lambda info: info.update(image_size=[8]), r"dataset.json: image_size: got \[8\], expected \[height, width\]"),
        (
            lambda info: info["splits"]["test"]["files"][0].update(name="../x.tfrecord"),
            r"dataset.json: splits.test.files.0.name: got \"../x.tfrecord\", expected a file name in the same folder",
        ),
        (
            lambda info: info["splits"]["train"].update(count=1000),
            r"dataset.json: splits.train.count: got 1000, expected the sum of its files' examples",
        ),
        (
            lambda info: info["splits"]["test"]["class_counts"].update(red=10**6),
            r"dataset.json: splits.test.class_counts: got .*, expected the images of each class, summing to the split",
        ),
        (
            lambda info: info["splits"]["validation"]["files"][1].update(name="gone.tfrecord"),
            r"dataset.json: splits.validation.files.1: .*gone.tfrecord not found, expected every shard the index lists",
        ),
    ],
)
def test_a_bad_index_is_refused_in_one_line(prepared, tmp_path, change, message):
    import shutil

    copy = shutil.copytree(prepared / "out", tmp_path / "copy")
    info = json.loads((copy / "dataset.json").read_text())
    text = change(info)
    (copy / "dataset.json").write_text(text if isinstance(text, str) else json.dumps(info))
    with pytest.raises(InputError, match=message) as error:
        load_data(str(copy))
    assert str(error.value).startswith(f"data: {copy}") and "\n" not in str(error.value)


def test_a_damaged_shard_is_named(prepared, tmp_path):
    import shutil

    copy = shutil.copytree(prepared / "out", tmp_path / "copy")
    shard = copy / "train-00001-of-00002.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-30])  # truncated
    with pytest.raises(InputError, match=r"train-00001-of-00002.tfrecord: not readable \(DataLossError"):
        load_data(str(copy))


def test_search_streams_a_prepared_directory_through_ray(tmp_path):
    """The issue's test: prepare a folder with a corrupt image, search on it (streamed), check the
    classes and counts. The search rewards macro F1 with balanced class weights: per-class metrics
    over a streamed validation split, class counts from dataset.json."""
    source = write_folder(tmp_path / "pics", per_class=20, corrupt=True)
    prepared = run_nas("data", "prepare", str(source), "--out", str(tmp_path / "data"), cwd=None, timeout=300)
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert prepared.stderr.splitlines() == [
        f"nas: skipped {source / 'green' / 'broken.png'}: not a readable image (UnidentifiedImageError)"
    ]
    assert "3 classes (blue, green, red), 32x32x3 images" in prepared.stdout
    assert "skipped 1 unreadable image(s)" in prepared.stdout
    info = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert sum(info["splits"][s]["count"] for s in info["splits"]) == 60 and len(info["skipped"]) == 1

    result = run_nas(
        "search",
        "--space",
        "linear",
        "--budget",
        "2",
        "--workers",
        "1",  # one worker starting TensorFlow, not two, for two children
        "--epochs",
        "1",
        "--final-epochs",
        "1",
        "--data",
        str(tmp_path / "data"),
        "--no-dashboard",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "streamed",
        "--objective",
        "macro-f1",
        "--class-weight",
        "balanced",
        cwd=None,
        NAS_STREAM_RECORDS="1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
    run = tmp_path / "runs" / "streamed"
    config = json.loads((run / "config.json").read_text())
    counts = [info["splits"][s]["count"] for s in ("train", "validation", "test")]
    assert config["data_summary"] == (
        f"{tmp_path / 'data'}: 3 classes, 32x32x3 images, train {counts[0]} / "
        f"validation {counts[1]} / test {counts[2]} (held out), streamed from 3 "
        "TFRecord files"
    )
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert [t["status"] for t in trials] == ["completed", "completed"], trials
    assert all(t["metrics"]["latency_ms"] > 0 for t in trials)
    assert all(t["reward"] == t["metrics"]["val_macro_f1"] for t in trials)
    assert config["class_weight"] == "balanced" and config["reward"] == "validation macro F1"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["test_accuracy"] > 0.5  # three classes: chance is 1/3
    evaluation = summary["evaluation"]
    assert evaluation["class_names"] == ["blue", "green", "red"]
    assert sum(map(sum, evaluation["confusion_matrix"])) == evaluation["images"] == counts[2]
