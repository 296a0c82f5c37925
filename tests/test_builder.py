import numpy as np
import pytest

from controllers.random_search import RandomController
from search_spaces import iter_architectures, load_space

keras = pytest.importorskip("keras")

from nas.builder import build_model  # noqa: E402

SHAPES = [(8, 8, 1), (28, 28, 1)]


def architectures(name, n=80):
    """n random architectures, or every one of a smaller space."""
    space = load_space(name)
    if space.size() <= n:
        return space, list(iter_architectures(space))
    controller = RandomController(space, seed=0)
    return space, [controller.ask() for _ in range(n)]


@pytest.mark.parametrize("name, n", [("linear", 80), ("dnn", 80), ("cnn10", 40), ("cnn10_aug", 20), ("resnet", 40)])
def test_every_builtin_space_builds_and_runs_on_8x8_and_28x28(name, n):
    """cnn10_aug is cnn10 plus augmentation: 20 of its architectures try the augmentation layers."""
    space, archs = architectures(name, n)
    x = {shape: np.random.default_rng(0).integers(0, 256, (2, *shape)).astype("uint8") for shape in SHAPES}
    for i, arch in enumerate(archs):
        shape = SHAPES[i % 2] if len(archs) == n else None
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
    spec["layers"][5]["inputs"] = [0, 2, 4]  # from 28x28 and 14x14 maps into a 7x7 layer
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
    spec["augment"] = {
        "flip": True,
        "rotation": 0.1,
        "zoom": 0.1,
        "translation": 0.1,
        "contrast": 0.2,
        "brightness": 0.2,
        "crop": 2,
    }
    model = build_model(spec, (8, 8, 1), 3)
    assert {
        "aug_flip",
        "aug_rotation",
        "aug_zoom",
        "aug_translation",
        "aug_contrast",
        "aug_brightness",
        "aug_crop",
    } <= {lay.name for lay in model.layers}
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype("uint8")
    np.testing.assert_array_equal(model(x, training=False).numpy(), model(x, training=False).numpy())
    assert not np.allclose(model(x, training=True).numpy(), model(x, training=False).numpy())


def test_crop_shifts_whole_pixels_with_zero_fill():
    """Padding by 2 and cropping at random: every training view is the image moved by at most 2 whole
    pixels, zeros coming in; at inference, the image itself."""
    crop = build_model({"space": "s", "family": "linear", "augment": {"crop": 2}}, (8, 8, 1), 2).get_layer("aug_crop")
    image = np.arange(1, 65, dtype="float32").reshape(1, 8, 8, 1)
    np.testing.assert_array_equal(crop(image, training=False), image)
    shifts = set()
    for _ in range(40):
        view = np.asarray(crop(image, training=True))[0, :, :, 0]
        shift = next(
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(view, _shifted(image[0, :, :, 0], dy, dx))
        )  # StopIteration: not a shift
        shifts.add(shift)
    assert len(shifts) > 3


def _shifted(image, dy, dx):
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


@pytest.mark.parametrize(
    "placement, order",
    [
        ("none", ["layer0_conv", "layer0_relu"]),
        (False, ["layer0_conv", "layer0_relu"]),
        ("before_activation", ["layer0_conv", "layer0_bn", "layer0_relu"]),
        (True, ["layer0_conv", "layer0_bn", "layer0_relu"]),
        ("after_activation", ["layer0_conv", "layer0_relu", "layer0_bn"]),
    ],
)
def test_batch_norm_goes_where_the_layer_says(placement, order):
    spec = {
        "space": "s",
        "family": "conv",
        "reduce_after": [],
        "layers": [
            {
                "kernel_height": 3,
                "kernel_width": 3,
                "filters": 4,
                "activation": "relu",
                "batch_norm": placement,
                "inputs": [],
            }
        ],
    }
    model = build_model(spec, (8, 8, 1), 2)
    assert [lay.name for lay in model.layers if lay.name.startswith("layer0_") and lay.name != "layer0_gap"] == order
    # A bias before batch normalisation is subtracted with the mean: only then is it left out.
    assert model.get_layer("layer0_conv").use_bias == (order[1] != "layer0_bn")
