import numpy as np
import pytest
from PIL import Image

from nas.data import load_data
from nas.errors import InputError


def test_mnist5k_holds_out_1000_test_images_and_splits_the_rest_80_20():
    data = load_data("mnist5k")
    assert data.input_shape == (28, 28, 1) and data.x_train.dtype == np.uint8
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (3200, 800, 1000)
    assert data.class_names == [str(i) for i in range(10)]
    assert data.x_train.max() == 255
    # The images come sorted by label: the split shuffles and stratifies them.
    assert np.bincount(data.y_test).tolist() == [100] * 10
    assert np.bincount(data.y_train).tolist() == [320] * 10
    # No image is in two splits, and the same seed gives the same split.
    rows = lambda x: {r.tobytes() for r in x}  # noqa: E731
    assert not rows(data.x_test) & rows(data.x_train) and not rows(data.x_val) & rows(data.x_train)
    again = load_data("mnist5k")
    np.testing.assert_array_equal(again.x_test, data.x_test)


def test_digits_are_8x8_raw_pixels_with_a_20_percent_test_split():
    data = load_data("digits")
    assert data.input_shape == (8, 8, 1) and data.x_train.max() == 255
    assert len(data.y_test) == 360
    assert len(data.y_train) + len(data.y_val) == 1797 - 360


def write_images(root, counts, size=(12, 10), mode="RGB"):
    rng = np.random.default_rng(0)
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (size[1], size[0], 3 if mode == "RGB" else 1)).astype("uint8").squeeze()
            Image.fromarray(pixels).save(root / label / f"{i}.png")


def test_image_folder_with_one_subfolder_per_class(tmp_path):
    write_images(tmp_path, {"cat": 10, "dog": 10, "emu": 10})
    data = load_data(str(tmp_path), image_size=(16, 20))
    assert data.class_names == ["cat", "dog", "emu"]
    assert data.input_shape == (16, 20, 3)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 30
    gray = load_data(str(tmp_path), color_mode="grayscale")
    assert gray.input_shape == (32, 32, 1)


def test_csv_of_paths_and_labels(tmp_path):
    write_images(tmp_path / "img", {"a": 6, "b": 6})
    rows = ["path,label"] + [f"img/{c}/{i}.png,{c}" for c in "ab" for i in range(6)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_data(str(tmp_path / "labels.csv"), image_size=(8, 8))
    assert data.class_names == ["a", "b"] and data.input_shape == (8, 8, 3)


def test_npz_with_its_own_test_split_and_pixels_scaled_to_0_1(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6, 6)), np.repeat([3, 7], 20)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:10], y_test=y[:10])
    data = load_data(str(tmp_path / "d.npz"))
    assert data.class_names == ["3", "7"] and data.input_shape == (6, 6, 1)
    assert len(data.y_test) == 10 and len(data.y_train) == 32
    assert data.x_train.max() > 200  # 0-1 values became raw pixel values


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: write_images(p, {"only": 10}), r"found 1 class folder\(s\), expected one sub-folder per class"),
        (lambda p: (write_images(p, {"a": 6}), (p / "b").mkdir()), r"/b: class folder has no images"),
        (
            lambda p: (write_images(p, {"a": 6, "b": 4}), (p / "b" / "bad.png").write_text("not a png")),
            r"after skipping 1 unreadable image\(s\), class 'b' has 4 image\(s\), expected at least 5 per class",
        ),
        (lambda p: write_images(p, {"a": 6, "b": 2}), r"class 'b' has 2 image\(s\), expected at least 5 per class"),
    ],
)
def test_bad_image_folders(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(InputError, match=message):
        load_data(str(tmp_path))


def test_unreadable_images_are_skipped_named_and_counted(tmp_path, capsys):
    """As `nas data prepare` does: a truncated JPEG and a file that is no image among good ones."""
    write_images(tmp_path, {"a": 6, "b": 6})
    Image.new("RGB", (40, 30), "red").save(tmp_path / "b" / "whole.jpg")
    (tmp_path / "b" / "cut.jpg").write_bytes((tmp_path / "b" / "whole.jpg").read_bytes()[:200])
    (tmp_path / "a" / "notes.png").write_text("not a png")
    data = load_data(str(tmp_path), image_size=(8, 8))
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 13
    skipped = data.preprocessing["skipped"]
    assert sorted(s["file"] for s in skipped) == [str(tmp_path / "a" / "notes.png"), str(tmp_path / "b" / "cut.jpg")]
    assert all(s["reason"].startswith("not a readable image (") for s in skipped)
    lines = capsys.readouterr().err.strip().splitlines()
    assert sorted(lines) == sorted(f"nas: skipped {s['file']}: {s['reason']}" for s in skipped)
    assert "2 unreadable images skipped" in data.describe()


def test_bad_csv_rows(tmp_path):
    (tmp_path / "a.csv").write_text("x.png,a\n")
    with pytest.raises(InputError, match=r"a.csv: row 1: image file x.png not found"):
        load_data(str(tmp_path / "a.csv"))
    (tmp_path / "b.csv").write_text("just-one-column\n")
    with pytest.raises(InputError, match=r"b.csv: row 1: got \['just-one-column'\], expected path,label"):
        load_data(str(tmp_path / "b.csv"))


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((10, 4, 4))}, r"no array 'y', expected arrays x \(images\) and y \(labels\)"),
        ({"x": np.zeros((10, 4, 4)), "y": np.zeros(9)}, r"y has shape \(9,\), expected \(10,\): one label per image"),
        ({"x": np.zeros((10, 4)), "y": np.zeros(10)}, r"x has shape \(10, 4\), expected \(N, height, width\)"),
        ({"x": np.full((10, 4, 4), 300.0), "y": np.zeros(10)}, r"x has values outside 0-255"),
        (
            {"x": np.zeros((10, 4, 4)), "y": np.zeros(10), "x_test": np.zeros((2, 4, 4))},
            r"x_test and y_test must be given",
        ),
    ],
)
def test_bad_npz(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match=message):
        load_data(str(tmp_path / "d.npz"))


def test_bad_sources():
    with pytest.raises(InputError, match=r"data: /no/such: no such file or folder, expected mnist5k, digits"):
        load_data("/no/such")
    with pytest.raises(InputError, match=r"image_size: applies to image folders and CSV files"):
        load_data("digits", image_size=(8, 8))
    with pytest.raises(InputError, match=r"found only class '0', expected at least 2 classes"):
        from nas.data import _split

        _split("x", np.zeros((10, 2, 2, 1), np.uint8), np.zeros(10, np.int32), ["0"], None, 0, {})


def test_csv_saved_by_a_spreadsheet_with_a_byte_order_mark(tmp_path):
    write_images(tmp_path / "img", {"a": 6, "b": 6})
    rows = ["path,label"] + [f"img/{c}/{i}.png,{c}" for c in "ab" for i in range(6)]
    (tmp_path / "labels.csv").write_bytes("\n".join(rows).encode("utf-8-sig"))
    assert load_data(str(tmp_path / "labels.csv"), image_size=(8, 8)).class_names == ["a", "b"]
