"""The `transfer` space: a base trained on digits 0-4 (a nas model directory) reused for digits 5-9."""

import ast
import json
import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import train_digits_model_dir
from nas_commands import run_nas

from nas import transfer
from nas.builder import build_model
from nas.codegen import model_source
from nas.errors import InputError
from search_spaces import load_space

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """model.keras of a small CNN trained on digits 0-4, and the digits 5-9 as an .npz."""
    out = tmp_path_factory.mktemp("transfer")
    model_dir, data = train_digits_model_dir(out / "base", classes=range(5), epochs=6)
    from nas.data import load_data

    digits = load_data("digits", seed=1)
    x = np.concatenate([digits.x_train, digits.x_val, digits.x_test])
    y = np.concatenate([digits.y_train, digits.y_val, digits.y_test])
    upper = y >= 5
    np.savez(out / "upper.npz", x=x[upper], y=y[upper])  # classes named 5 to 9
    return model_dir / "model.keras", out / "upper.npz"


def test_a_base_is_checked_before_use(base, tmp_path):
    path, _ = base
    assert transfer.read_base(path, (8, 8, 1)) == path.read_bytes()
    with pytest.raises(InputError, match=r"base: .*takes images of shape \(8, 8, 1\), the data's are \(28, 28, 1\)"):
        transfer.read_base(path, (28, 28, 1))
    with pytest.raises(InputError, match=r"base: .*missing.keras: no such file"):
        transfer.read_base(tmp_path / "missing.keras", (8, 8, 1))
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"base: .*junk.keras: cannot load it"):
        transfer.read_base(tmp_path / "junk.keras", (8, 8, 1))
    headless = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten()])
    headless.save(tmp_path / "headless.keras")
    with pytest.raises(InputError, match=r"base: .*headless.keras: its last layer is not a Dense classifier"):
        transfer.read_base(tmp_path / "headless.keras", (8, 8, 1))


def test_children_start_from_the_base_with_its_first_layers_frozen(base):
    path, _ = base
    transfer.provide(path.read_bytes())
    trained = keras.saving.load_model(path, compile=False)
    space = load_space("transfer")
    for freeze in (0.0, 0.5, 1.0):
        arch = space.architecture([d.choices.index(freeze) if d.name == "freeze" else 1 for d in space.decisions])
        spec = space.resolve(arch)
        model = build_model(spec, (8, 8, 1), 5)
        body = model.get_layer("base")
        weighted = [layer for layer in body.layers if layer.weights]
        frozen = [layer.name for layer in weighted if not layer.trainable]
        assert frozen == [layer.name for layer in weighted[: round(freeze * len(weighted))]]
        for layer in weighted:  # the trained weights, whether frozen or not
            for mine, theirs in zip(layer.get_weights(), trained.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(mine, theirs)
        assert "predictions" not in {layer.name for layer in body.layers}  # the base's classifier is cut off
        assert model.get_layer("head_dense").units == 64 and model.output.shape[-1] == 5
        x = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 1)).astype("uint8")
        np.testing.assert_array_equal(model(x, training=False), model(x, training=False))  # augmentation off


def test_model_py_rebuilds_the_transfer_child_with_the_base_beside_it(base, tmp_path):
    path, _ = base
    transfer.provide(path.read_bytes())
    space = load_space("transfer")
    spec = space.resolve(space.architecture([1] * len(space.decisions)))
    expected = build_model(spec, (8, 8, 1), 5)
    source = model_source(spec, (8, 8, 1), list("56789"), {"run": "r", "trial": 1})
    imports = {
        a.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for a in node.names
    }
    assert imports == {"argparse", "os", "keras", "layers"}
    (tmp_path / "model.py").write_text(source)
    (tmp_path / "base.keras").write_bytes(path.read_bytes())
    module = types.ModuleType("generated")
    module.__file__ = str(tmp_path / "model.py")
    exec(compile(source, "model.py", "exec"), module.__dict__)
    built = module.build_model()
    assert [(type(lay).__name__, lay.name, lay.trainable) for lay in built.layers] == [
        (type(lay).__name__, lay.name, lay.trainable) for lay in expected.layers
    ]
    assert [(lay.name, lay.trainable) for lay in built.get_layer("base").layers] == [
        (lay.name, lay.trainable) for lay in expected.get_layer("base").layers
    ]
    expected.save_weights(tmp_path / "model.weights.h5")
    built.load_weights(tmp_path / "model.weights.h5")
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype("uint8")
    np.testing.assert_allclose(built(x, training=False), expected(x, training=False), rtol=1e-5, atol=1e-6)


def test_a_transfer_search_from_digits_0_to_4_learns_5_to_9_and_exports_model_py(base, tmp_path):
    path, upper = base
    search = run_nas(
        "search",
        "--space",
        "transfer",
        "--base",
        str(path),
        "--data",
        str(upper),
        "--controller",
        "random",
        "--budget",
        "3",
        "--epochs",
        "2",
        "--final-epochs",
        "4",
        "--workers",
        "1",
        "--no-dashboard",
        "--runs-dir",
        "runs",
        "--name",
        "t",
        cwd=tmp_path,
    )
    assert search.returncode == 0, search.stderr[-3000:]
    run = tmp_path / "runs" / "t"
    assert (run / "base.keras").read_bytes() == path.read_bytes()  # a resume does not need the original
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert [t["status"] for t in trials] == ["completed"] * 3
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.6  # 5 classes: chance is 0.2
    difference, names = export_and_rebuild(run)
    assert float(difference) < 1e-5 and names == str(["5", "6", "7", "8", "9"])


def export_and_rebuild(run):
    """`nas export` of the run, then model.py built beside its base.keras with the exported weights:
    the largest difference from the exported model.keras on 4 images, and model.py's class names."""
    export = run_nas("export", str(run), "--format", "python,keras", cwd=run, timeout=300)
    assert export.returncode == 0, export.stderr[-3000:]
    assert (run / "export" / "base.keras").is_file()
    check = (
        "import sys, numpy as np, keras; sys.path.insert(0, 'export'); import model; "
        "m = model.build_model(); m.load_weights('export/model.weights.h5'); "
        "k = keras.saving.load_model('export/model.keras'); "
        "x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype('uint8'); "
        "print(float(np.abs(m(x, training=False) - k(x, training=False)).max()), model.CLASS_NAMES)"
    )
    rebuilt = subprocess.run([sys.executable, "-c", check], cwd=run, capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    return rebuilt.stdout.strip().split(" ", 1)


def test_a_pretrained_keras_application_is_a_base_from_a_local_weights_file(base, tmp_path):
    """`--base keras:MobileNetV3Small:FILE`: the application built by keras.applications with the
    weights of a local file (ImageNet's are fetched by the same call, so nothing is downloaded here),
    its preprocessing inside, for 8x8 grey digits (resized up to 32x32, repeated to RGB)."""
    _, upper = base
    keras.utils.set_random_seed(3)
    app = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    app.save_weights(tmp_path / "mobilenet.weights.h5")
    with np.load(upper) as arrays:  # 40 images a class: what is tested is the base's path, not its accuracy
        keep = np.concatenate([np.flatnonzero(arrays["y"] == c)[:40] for c in range(5, 10)])
        np.savez(tmp_path / "few.npz", x=arrays["x"][keep], y=arrays["y"][keep])
    search = run_nas(
        "search",
        "--space",
        "transfer",
        "--base",
        f"keras:MobileNetV3Small:{tmp_path / 'mobilenet.weights.h5'}",
        "--data",
        str(tmp_path / "few.npz"),
        "--budget",
        "1",
        "--epochs",
        "1",
        "--final-epochs",
        "1",
        "--no-dashboard",
        "--runs-dir",
        "runs",
        "--name",
        "app",
        cwd=tmp_path,
    )
    assert search.returncode == 0, search.stderr[-3000:]
    run = tmp_path / "runs" / "app"
    kept = keras.saving.load_model(run / "base.keras", compile=False)
    names = ["image", "base_resize", "base_rgb", "MobileNetV3Small", "stand_in_classifier"]
    assert [layer.name for layer in kept.layers] == names
    for got, expected in zip(kept.get_layer("MobileNetV3Small").weights, app.weights, strict=True):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and len(summary["evaluation"]["per_class"]) == 5
    difference, names = export_and_rebuild(run)
    assert float(difference) < 1e-5 and names == str(["5", "6", "7", "8", "9"])


def test_a_keras_application_that_cannot_get_its_imagenet_weights_says_where_to_put_them():
    """What Keras's loader raises without a network, turned into the one line the user reads; and
    keras:NAME:none, the same call with random weights, for 28x28 grey images."""
    from nas.applications import _weights_error, application_base

    transfer.provide(application_base("keras:MobileNetV3Small:none", (28, 28, 1)))
    body = transfer.features(transfer.base_model())
    assert body.input_shape == (None, 28, 28, 1) and body.output_shape == (None, 576)

    url = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/weights_small_no_top.h5"
    error = Exception(f"URL fetch failure on {url}: None -- [Errno -3] Temporary failure in name resolution")
    message = _weights_error("keras:MobileNetV3Small", "MobileNetV3Small", "imagenet", error)
    assert message == (
        "base: keras:MobileNetV3Small: cannot download MobileNetV3Small's ImageNet weights (Exception, no "
        "network?); expected weights_small_no_top.h5 in Keras's cache (~/.keras/models/, or $KERAS_HOME/models/) "
        f"from {url}, or a weights file: --base keras:MobileNetV3Small:PATH"
    )


def test_transfer_children_build_on_28x28_bases_too(tmp_path):
    """A base of the user's own (a Sequential model, untrained here) for 28x28 images; every
    architecture of the space builds on it and classifies."""
    from search_spaces import iter_architectures

    base = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    base.save(tmp_path / "base28.keras")
    transfer.provide(transfer.read_base(tmp_path / "base28.keras", (28, 28, 1)))
    space = load_space("transfer")
    x = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1)).astype("uint8")
    for arch in list(iter_architectures(space))[::12]:
        model = build_model(space.resolve(arch), (28, 28, 1), 4)
        assert "base_gap" in {layer.name for layer in model.layers}  # the base's features are feature maps
        np.testing.assert_allclose(model(x, training=False).numpy().sum(axis=1), 1.0, rtol=1e-5)
