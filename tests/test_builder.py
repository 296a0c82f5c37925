import numpy as np
import pytest

from controllers.random_search import RandomController
from search_spaces import iter_architectures, load_space

keras = pytest.importorskip("keras")

from nas.builder import build_model  # noqa: E402

SHAPES = [(8, 8, 1), (28, 28, 1)]


def architectures(name, n=80):
    """80 random architectures, or every one of a smaller space."""
    space = load_space(name)
    if space.size() <= n:
        return space, list(iter_architectures(space))
    controller = RandomController(space, seed=0)
    return space, [controller.ask() for _ in range(n)]


@pytest.mark.parametrize("name", ["linear", "dnn", "cnn10", "resnet"])
def test_every_builtin_space_builds_and_runs_on_8x8_and_28x28(name):
    space, archs = architectures(name)
    x = {shape: np.random.default_rng(0).integers(0, 256, (2, *shape)).astype("uint8") for shape in SHAPES}
    for i, arch in enumerate(archs):
        shape = SHAPES[i % 2] if len(archs) >= 80 else None
        if i % 50 == 0:
            keras.backend.clear_session()  # slow (it collects garbage): not after every model
        for s in [shape] if shape else SHAPES:
            model = build_model(space.resolve(arch), s, num_classes=10)
            y = model(x[s], training=False).numpy()
            assert y.shape == (2, 10)
            np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_cnn10_skip_connections_feed_layers_and_loose_ends_feed_the_head():
    space = load_space("cnn10")
    spec = space.resolve(space.architecture([0] * len(space.decisions)))
    for i, layer in enumerate(spec["layers"]):
        layer["inputs"] = [i - 1] if i else []
    spec["layers"][2]["inputs"] = [0]
    spec["layers"][4]["inputs"] = [2]
    spec["layers"][5]["inputs"] = [0, 2, 4]  # from three resolutions: 28x28, 14x14, 7x7
    model = build_model(spec, (28, 28, 1), 10)
    names = {layer.name for layer in model.layers}
    assert {"layer5_pool0", "layer5_pool2", "layer5_concat", "layer5_project"} <= names
    assert model.get_layer("layer5_pool0").output.shape[1:3] == (7, 7)
    # Layers 1 and 3 feed nothing later (5 skips them), so they join the last layer at the head.
    assert {"layer1_gap", "layer3_gap", "layer9_gap", "ends_concat"} <= names
    # A layer without inputs takes the image, pooled to its resolution.
    spec["layers"][7]["inputs"] = []
    model = build_model(spec, (28, 28, 1), 10)
    assert model.get_layer("layer7_pool_image").output.shape[1:] == (7, 7, 1)


def test_augmentation_is_part_of_the_model_and_off_at_inference():
    space = load_space("dnn")
    spec = space.resolve(space.architecture([0] * len(space.decisions)))
    spec["augment"] = {"flip": True, "rotation": 0.1, "zoom": 0.1, "translation": 0.1, "contrast": 0.2}
    model = build_model(spec, (8, 8, 1), 3)
    assert {"aug_flip", "aug_rotation", "aug_zoom", "aug_translation", "aug_contrast"} <= {l.name for l in model.layers}
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype("uint8")
    np.testing.assert_array_equal(model(x, training=False).numpy(), model(x, training=False).numpy())
    assert not np.allclose(model(x, training=True).numpy(), model(x, training=False).numpy())
