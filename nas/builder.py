"""Child-model builder: a resolved child spec (plain data from `SearchSpace.resolve`) -> keras.Model.

    spec = space.resolve(arch)
    model = build_model(spec, input_shape=(28, 28, 1), num_classes=10)

Models take raw pixel values (0-255) and carry their own preprocessing: rescaling, then the
augmentation layers, which Keras runs only while training. No search logic lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from search_spaces.space import stem_reductions

# Keras's default of 0.99 leaves the moving statistics of a child trained for a few hundred steps
# far from the data's, so its validation accuracy says little about the architecture.
BN_MOMENTUM = 0.9


def build_model(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="image")
    if spec["family"] == "transfer":  # the base rescales the raw pixels itself
        x = augmentation(inputs, spec.get("augment", {}), value_range=(0, 255))
        x = transfer_body(x, spec)
    else:
        x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
        x = augmentation(x, spec.get("augment", {}))
        x = BODIES[spec["family"]](x, spec)
    dropout = spec.get("head", {}).get("dropout", 0.0)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    l2 = spec.get("l2", 0.0)
    # The softmax in float32 whatever the dtype policy: in bfloat16 or float16 it loses the small
    # probabilities (the course's rule for TPUs).
    outputs = layers.Dense(
        num_classes,
        activation="softmax",
        name="predictions",
        dtype="float32",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
    )(x)
    return keras.Model(inputs, outputs, name=f"{spec['space']}_child")


def augmentation(x, augment: dict[str, Any], value_range: tuple[float, float] = (0, 1)):
    """Keras preprocessing layers; they are identity functions at inference.

    `crop` pads the image with `crop` zero pixels on every side and takes a random crop of its
    size: the same as a random shift of up to `crop` whole pixels with zero fill, which is how it is
    built (Keras's RandomCrop would resize the padded image at inference instead of passing it on)."""
    if augment.get("flip"):
        x = layers.RandomFlip("horizontal", name="aug_flip")(x)
    if augment.get("rotation"):
        x = layers.RandomRotation(augment["rotation"], fill_mode="constant", name="aug_rotation")(x)
    if augment.get("zoom"):
        x = layers.RandomZoom(augment["zoom"], fill_mode="constant", name="aug_zoom")(x)
    if augment.get("translation"):
        t = augment["translation"]
        x = layers.RandomTranslation(t, t, fill_mode="constant", name="aug_translation")(x)
    if augment.get("crop"):
        height, width = x.shape[1], x.shape[2]
        x = layers.RandomTranslation(
            augment["crop"] / height,
            augment["crop"] / width,
            fill_mode="constant",
            interpolation="nearest",
            name="aug_crop",
        )(x)
    if augment.get("contrast"):
        x = layers.RandomContrast(augment["contrast"], value_range=value_range, name="aug_contrast")(x)
    if augment.get("brightness"):
        x = layers.RandomBrightness(augment["brightness"], value_range=value_range, name="aug_brightness")(x)
    return x


def bn_placement(batch_norm: bool | str) -> str:
    """A layer's `batch_norm` setting as a placement: none, before_activation or after_activation."""
    if isinstance(batch_norm, bool):
        return "before_activation" if batch_norm else "none"
    return batch_norm


def _normalise_and_activate(h, layer: dict[str, Any], name: str):
    """The activation, with batch normalisation before or after it as the layer says."""
    placement = bn_placement(layer["batch_norm"])
    if placement == "before_activation":
        h = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(h)
    h = layers.Activation(layer["activation"], name=f"{name}_{layer['activation']}")(h)
    if placement == "after_activation":
        h = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(h)
    return h


def _use_bias(layer: dict[str, Any]) -> bool:
    """Batch normalisation right after a layer subtracts the mean, and with it any bias."""
    return bn_placement(layer["batch_norm"]) != "before_activation"


def linear_body(x, spec):
    return layers.Flatten(name="flatten")(x)


def dense_body(x, spec):
    x = layers.Flatten(name="flatten")(x)
    for i, layer in enumerate(spec["layers"]):
        x = layers.Dense(layer["units"], use_bias=_use_bias(layer), name=f"layer{i}_dense")(x)
        x = _normalise_and_activate(x, layer, f"layer{i}")
        if layer["dropout"]:
            x = layers.Dropout(layer["dropout"], name=f"layer{i}_dropout")(x)
    return x


def conv_stem(x, spec):
    """The conv family's stem (`stem_to`): strided 3x3 convolutions, batch norm and ReLU."""
    for k in range(stem_reductions(x.shape[1], x.shape[2], spec.get("stem_to", 0))):
        x = layers.Conv2D(spec["stem_filters"], 3, strides=2, padding="same", use_bias=False, name=f"stem{k}_conv")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"stem{k}_bn")(x)
        x = layers.Activation("relu", name=f"stem{k}_relu")(x)
    return x


def conv_body(x, spec):
    """Zoph & Le's layer sequence: layer i convolves the concatenation of the layers feeding it.

    A layer with no input takes the image; inputs from before a reduction are max-pooled to the
    layer's resolution; several inputs are concatenated along depth and projected back to the
    layer's width by a 1x1 convolution, so that skip connections cannot make a child's cost grow
    with the square of its depth. Layers that feed no later layer all feed the classifier.
    """
    image = x = conv_stem(x, spec)
    outputs, stages = [], []
    stage = 0
    reduce_after = set(spec.get("reduce_after", []))
    for i, layer in enumerate(spec["layers"]):
        sources = [_pool(outputs[j], stage - stages[j], f"layer{i}_pool{j}") for j in layer["inputs"]]
        h = sources[0] if sources else _pool(image, stage, f"layer{i}_pool_image")
        if len(sources) > 1:
            h = layers.Concatenate(name=f"layer{i}_concat")(sources)
            h = layers.Conv2D(layer["filters"], 1, use_bias=False, name=f"layer{i}_project")(h)
        h = layers.Conv2D(
            layer["filters"],
            (layer["kernel_height"], layer["kernel_width"]),
            padding="same",
            use_bias=_use_bias(layer),
            name=f"layer{i}_conv",
        )(h)
        h = _normalise_and_activate(h, layer, f"layer{i}")
        outputs.append(h)
        stages.append(stage)
        stage += i in reduce_after
    fed = {j for layer in spec["layers"] for j in layer["inputs"]}
    ends = [layers.GlobalAveragePooling2D(name=f"layer{i}_gap")(h) for i, h in enumerate(outputs) if i not in fed]
    return ends[0] if len(ends) == 1 else layers.Concatenate(name="ends_concat")(ends)


def _pool(x, times: int, name: str):
    if times <= 0:
        return x
    return layers.MaxPooling2D(2**times, padding="same", name=name)(x)


def resnet_body(x, spec):
    """He et al.'s residual network: stages of blocks, width doubling and resolution halving per stage."""
    k = spec["kernel"]
    x = layers.Conv2D(spec["stem_filters"], k, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    block = basic_block if spec["block"] == "basic" else bottleneck_block
    for s in range(spec["stages"]):
        for b in range(spec["blocks"]):
            strides = 2 if s > 0 and b == 0 else 1
            x = block(x, spec["width"] * 2**s, k, strides, f"stage{s}_block{b}")
    return layers.GlobalAveragePooling2D(name="gap")(x)


def basic_block(x, filters: int, kernel: int, strides: int, name: str):
    shortcut = _shortcut(x, filters, strides, name)
    h = _conv_bn(x, filters, kernel, strides, f"{name}_conv1", relu=True)
    h = _conv_bn(h, filters, kernel, 1, f"{name}_conv2", relu=False)
    h = layers.Add(name=f"{name}_add")([shortcut, h])
    return layers.Activation("relu", name=f"{name}_out")(h)


def bottleneck_block(x, filters: int, kernel: int, strides: int, name: str):
    shortcut = _shortcut(x, filters, strides, name)
    inner = max(filters // 4, 4)
    h = _conv_bn(x, inner, 1, 1, f"{name}_reduce", relu=True)
    h = _conv_bn(h, inner, kernel, strides, f"{name}_conv", relu=True)
    h = _conv_bn(h, filters, 1, 1, f"{name}_expand", relu=False)
    h = layers.Add(name=f"{name}_add")([shortcut, h])
    return layers.Activation("relu", name=f"{name}_out")(h)


def _shortcut(x, filters: int, strides: int, name: str):
    """Identity where shapes match; otherwise a strided 1x1 projection (He et al.'s option B)."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    return _conv_bn(x, filters, 1, strides, f"{name}_shortcut", relu=False)


def _conv_bn(x, filters: int, kernel: int, strides: int, name: str, relu: bool):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def transfer_body(x, spec):
    """The provided base's body (`nas.transfer`), its first `freeze` of weighted layers frozen, then
    a new hidden layer of `units` when that is not 0."""
    from nas import transfer

    body = transfer.features(transfer.base_model())
    transfer.freeze(body, spec["freeze"])
    x = body(x)
    if len(x.shape) > 2:
        x = layers.GlobalAveragePooling2D(name="base_gap")(x)
    if spec["units"]:
        x = layers.Dense(spec["units"], activation="relu", name="head_dense")(x)
    return x


BODIES: dict[str, Callable] = {"linear": linear_body, "dense": dense_body, "conv": conv_body, "resnet": resnet_body}
