"""Pretrained Keras Applications as the base of a transfer search: `--base keras:NAME[:WEIGHTS]`.

    base = application_base("keras:MobileNetV3Small", input_shape=(64, 64, 3))   # .keras bytes
    # the same as a user's --base model.keras: nas.transfer cuts its classifier off

The application is built by `keras.applications` with its weights: `imagenet` (the default, through
Keras's own loader and cache, ~/.keras/models), `none` (random: nothing is fetched; tests, or
training from scratch) or a local weights file of the application without its top. Around it go
what makes it take nas's images: the raw 0-255 pixels are resized up to the application's smallest
input, grey images repeated to three channels, and the application's own preprocessing (inside the
application, or as Rescaling and Normalization layers) comes first, so that children, exports and
model.py still take raw pixels. A Dense layer stands for the classifier nas.transfer cuts off.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from nas.errors import InputError

PREFIX = "keras:"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Application:
    smallest: int  # the smallest input side the application takes; smaller images are resized up to it
    preprocessing: str  # inside (include_preprocessing or built in), tf ([-1, 1]) or torch (ImageNet mean, std)


APPLICATIONS = {
    "MobileNetV3Small": Application(32, "inside"),
    "MobileNetV3Large": Application(32, "inside"),
    "MobileNet": Application(32, "tf"),
    "MobileNetV2": Application(32, "tf"),
    **{f"EfficientNetB{i}": Application(32, "inside") for i in range(8)},
    **{f"EfficientNetV2{v}": Application(32, "inside") for v in ("B0", "B1", "B2", "B3", "S", "M", "L")},
    **{f"ConvNeXt{v}": Application(32, "inside") for v in ("Tiny", "Small", "Base", "Large", "XLarge")},
    **{f"ResNet{d}V2": Application(32, "tf") for d in (50, 101, 152)},
    **{f"DenseNet{d}": Application(32, "torch") for d in (121, 169, 201)},
    "InceptionV3": Application(75, "tf"),
    "InceptionResNetV2": Application(75, "tf"),
    "Xception": Application(71, "tf"),
}


def is_application(base: str | None) -> bool:
    return bool(base) and str(base).startswith(PREFIX)


def parse(base: str) -> tuple[str, str]:
    """(application name, weights: imagenet, none or a file path) of `keras:NAME[:WEIGHTS]`, checked."""
    name, _, weights = base[len(PREFIX) :].partition(":")
    if name not in APPLICATIONS:
        raise InputError(
            f"base: {base}: unknown application {name!r}, expected keras: and one of {', '.join(APPLICATIONS)}"
        )
    weights = weights or "imagenet"
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise InputError(
            f"base: {base}: no weights file {weights}, expected imagenet, none or the path of the "
            f"application's weights without its top (a .weights.h5 or .h5 file)"
        )
    return name, weights


def application_base(base: str, input_shape: tuple[int, ...]) -> bytes:
    """The application as a .keras file's bytes: raw pixels of `input_shape` in, a stand-in
    classifier out (nas.transfer cuts it off). InputError when its weights cannot be had."""
    import tempfile

    import keras
    from keras import layers

    name, weights = parse(base)
    app = APPLICATIONS[name]
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise InputError(f"base: {base}: the images have {channels} channels, expected 1 or 3 (RGB)")
    side = (max(height, app.smallest), max(width, app.smallest))
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if side != (height, width):
        x = layers.Resizing(*side, name="base_resize")(x)
    if channels == 1:
        x = layers.Concatenate(name="base_rgb")([x, x, x])
    if app.preprocessing == "tf":
        x = layers.Rescaling(1 / 127.5, offset=-1, name="base_preprocess")(x)
    elif app.preprocessing == "torch":
        x = layers.Rescaling(1 / 255, name="base_rescale")(x)
        variance = [s**2 for s in IMAGENET_STD]
        x = layers.Normalization(mean=list(IMAGENET_MEAN), variance=variance, name="base_preprocess")(x)
    application = getattr(keras.applications, name)
    try:
        with warnings.catch_warnings():  # that ImageNet weights of 224-pixel inputs serve other sizes
            warnings.simplefilter("ignore")
            body = application(
                include_top=False, weights=None if weights == "none" else weights, input_shape=(*side, 3), pooling="avg"
            )
    except Exception as e:  # noqa: BLE001 - a failed download, a weights file of another model, ...
        raise InputError(_weights_error(base, name, weights, e)) from None
    x = body(x)
    outputs = layers.Dense(2, activation="softmax", name="stand_in_classifier")(x)
    model = keras.Model(inputs, outputs, name=f"{name}_base")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "base.keras"
        model.save(path)
        return path.read_bytes()


def _weights_error(base: str, name: str, weights: str, error: Exception) -> str:
    """One line for an application whose weights could not be had: where Keras looked for them."""
    message = " ".join(str(error).split())
    url = re.search(r"https?://\S+?\.h5", message)
    if weights == "imagenet" and url:
        file = url.group(0).rsplit("/", 1)[1]
        return (
            f"base: {base}: cannot download {name}'s ImageNet weights ({type(error).__name__}, no network?); "
            f"expected {file} in Keras's cache (~/.keras/models/, or $KERAS_HOME/models/) from {url.group(0)}, "
            f"or a weights file: --base keras:{name}:PATH"
        )
    return f"base: {base}: cannot build {name} with {weights} weights ({type(error).__name__}: {message[:200]})"


def listing() -> str:
    """The applications `--base keras:NAME` takes, for `nas spaces transfer`."""
    smallest = {}
    for name, app in APPLICATIONS.items():
        smallest.setdefault(app.smallest, []).append(name)
    lines = ["Pretrained bases, --base keras:NAME[:imagenet|none|WEIGHTS_FILE] (ImageNet weights by default):"]
    for side, names in sorted(smallest.items()):
        lines.append(f"  images resized up to at least {side}x{side}: {', '.join(names)}")
    return "\n".join(lines)
