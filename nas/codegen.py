"""Writes a child model as plain Keras code: a `model.py` that builds exactly what `nas.builder` builds
(same layers, names, order and shapes, so the exported `model.weights.h5` loads into it) without
importing nas.

    source = model_source(space.resolve(arch), input_shape=(28, 28, 1), class_names=["0", ..., "9"],
                          about={"run": "cnn10-1", "trial": 7, "val_accuracy": 0.981, "test_accuracy": 0.978})
    Path("model.py").write_text(source)

    python model.py                              # prints the model's summary
    python model.py --weights model.weights.h5   # loads the exported weights, then prints it

Every value that came from a user (class names, run and space names, any spec value) is written as a
Python literal with `repr()`, so the generated code never runs user text. The code reads like a
keras-io example: `x = layers.Conv2D(...)(x)` lines, a layer output that later layers take kept in a
named variable, and block helpers only for the families that use blocks.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Sequence
from typing import Any

from nas.builder import BN_MOMENTUM, bn_placement

INDENT = "    "


def literal(value: Any) -> str:
    """`value` as Python source: `repr()`, with double quotes for a plain string (as black writes it).

    Only a string of letters, digits and `_ .,:+-` gets double quotes, so no quote, backslash or line
    break of the value can end the literal early; every other string is `repr()` unchanged."""
    if isinstance(value, str):
        return f'"{value}"' if re.fullmatch(r"[A-Za-z0-9_ .,:+-]*", value) else repr(value)
    if isinstance(value, (list, tuple)):
        items = ", ".join(literal(v) for v in value)
        if isinstance(value, list):
            return f"[{items}]"
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, numbers.Integral):  # NumPy's too, whose repr is np.int64(3)
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    raise TypeError(f"no literal for {type(value).__name__}")


def model_source(
    spec: dict[str, Any], input_shape: Sequence[int], class_names: Sequence[str], about: dict[str, Any] | None = None
) -> str:
    """The text of `model.py` for a resolved child spec (`SearchSpace.resolve`).

    `about` may give `run`, `trial`, `val_accuracy`, `test_accuracy`, `nas_version` and `date` for the
    header comment."""
    shape = tuple(int(d) for d in input_shape)
    builder, uses_bn = _builder(spec, "build_model", str(spec["space"]) + "_child", shape, len(class_names))
    return _module(
        [spec],
        _header(spec, about or {}),
        '"""A child model found by nas, as plain Keras: build_model() returns it untrained."""',
        [builder],
        uses_bn,
        class_names,
    )


def ensemble_source(
    specs: Sequence[dict[str, Any]],
    trials: Sequence[int],
    input_shape: Sequence[int],
    class_names: Sequence[str],
    about: dict[str, Any] | None = None,
) -> str:
    """The text of `model.py` for an ensemble (`nas.ensemble`) of the resolved child specs of `trials`,
    best first: a `build_member_N()` for each, and a `build_model()` averaging their probabilities, as
    `nas.ensemble.build_ensemble` does (same names, so the exported weights load into it)."""
    from nas.ensemble import OUTPUT, member_name

    shape = tuple(int(d) for d in input_shape)
    builders, uses_bn = [], False
    for rank, (spec, trial) in enumerate(zip(specs, trials, strict=True), 1):
        name = member_name(rank)
        about_member = f"Trial {int(trial)}'s model: raw 0-255 pixels in, class probabilities out."
        builder, bn = _builder(spec, f"build_{name}", name, shape, len(class_names), about_member)
        builders.append(builder)
        uses_bn = uses_bn or bn
    transfer = specs[0]["family"] == "transfer"
    base = ", base_path" if transfer else ""
    calls = ", ".join(f"build_{member_name(rank)}(input_shape, num_classes{base})" for rank in range(1, len(specs) + 1))
    builders.append(
        "\n".join(
            [
                f"def build_model(input_shape={literal(shape)}, num_classes={len(class_names)}"
                f"{', base_path=BASE' if transfer else ''}):",
                f'{INDENT}"""Every member sees the image; the output is the average of their class probabilities."""',
                f'{INDENT}inputs = keras.Input(shape=input_shape, name="image")',
                f"{INDENT}members = [{calls}]",
                f'{INDENT}outputs = layers.Average(name="{OUTPUT}")([member(inputs) for member in members])',
                f"{INDENT}return keras.Model(inputs, outputs, name={literal(str(specs[0]['space']) + '_ensemble')})",
            ]
        )
    )
    header = _header(specs[0], about or {}, what=_listing("the ensemble of trial", [int(t) for t in trials]))
    return _module(
        specs,
        header,
        '"""An ensemble of child models found by nas, as plain Keras: build_model() returns it untrained."""',
        builders,
        uses_bn,
        class_names,
    )


def _builder(
    spec: dict[str, Any], function: str, model_name: str, shape: tuple[int, ...], classes: int, about: str = ""
) -> tuple[str, bool]:
    """The source of a function `function` building the child of `spec` as a model named
    `model_name`, and whether it uses batch normalisation."""
    family = spec["family"]
    if family not in BODIES:
        raise ValueError(f"family {family!r}: no code generator, expected one of {', '.join(BODIES)}")
    body = Code()
    uses_bn = BODIES[family](body, spec)
    head = Code()
    dropout = spec.get("head", {}).get("dropout", 0.0)
    if dropout:
        head.line(f'x = layers.Dropout({literal(float(dropout))}, name="head_dropout")(x)')
    l2 = spec.get("l2", 0.0)
    regularizer = f", kernel_regularizer=keras.regularizers.L2({literal(float(l2))})" if l2 else ""
    head.line(f'outputs = layers.Dense(num_classes, activation="softmax", name="predictions"{regularizer})(x)')
    head.line(f"return keras.Model(inputs, outputs, name={literal(model_name)})")
    transfer = family == "transfer"
    lines = [
        f"def {function}(input_shape={literal(shape)}, num_classes={classes}{', base_path=BASE' if transfer else ''}):",
        f'{INDENT}"""{about}"""'
        if about
        else f'{INDENT}"""Images of input_shape (height, width, channels) as raw 0-255 pixels in, class '
        'probabilities out."""',
        f'{INDENT}inputs = keras.Input(shape=input_shape, name="image")',
        f"{INDENT}x = inputs  # the base rescales the pixels itself"
        if transfer
        else f'{INDENT}x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)',
    ]
    augment = _augmentation(spec.get("augment", {}), "(0, 255)" if transfer else "(0, 1)")
    if augment:
        lines.append(f"{INDENT}# Augmentation: active only while training, the identity at inference.")
        lines += [INDENT + line for line in augment]
    lines += body.indented() + head.indented()
    return "\n".join(lines), uses_bn


def _module(
    specs: Sequence[dict[str, Any]],
    header: str,
    docstring: str,
    builders: Sequence[str],
    uses_bn: bool,
    class_names: Sequence[str],
) -> str:
    """model.py around its builder functions: imports, constants, the family's helpers, a main."""
    transfer = specs[0]["family"] == "transfer"
    parts = [
        header,
        docstring,
        "",
        "import argparse",
        *(["import os"] if transfer else []),
        "",
        "import keras",
        "from keras import layers",
        "",
        f"CLASS_NAMES = {_class_names(class_names)}  # in the order of the model's outputs",
    ]
    if transfer:
        parts += [
            "# The trained model this one was built on, beside this file.",
            'BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.keras")',
        ]
    if uses_bn:
        parts += [
            "# Keras's default momentum of 0.99 suits long training; nas trains children briefly.",
            f"BN_MOMENTUM = {literal(float(BN_MOMENTUM))}",
        ]
    parts += ["", ""]
    helpers = []
    for spec in specs:  # each helper once, in the order the members need them
        helpers += [h for h in HELPERS.get(spec["family"], lambda spec: [])(spec) if h not in helpers]
    for text in [*helpers, *builders]:
        parts += [text.rstrip("\n"), "", ""]
    parts += [
        'if __name__ == "__main__":',
        f'{INDENT}parser = argparse.ArgumentParser(description="Builds the model and prints its summary.")',
        f'{INDENT}parser.add_argument("--weights", help="weights to load, such as model.weights.h5")',
        f"{INDENT}args = parser.parse_args()",
        f"{INDENT}model = build_model()",
        f"{INDENT}if args.weights:",
        f"{INDENT * 2}model.load_weights(args.weights)",
        f'{INDENT * 2}print(f"Loaded weights from {{args.weights}}")',
        f"{INDENT}model.summary()",
        "",
    ]
    return "\n".join(parts)


class Code:
    """Lines of a function body, one indentation level deep."""

    def __init__(self):
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        self.lines.append(text)

    def indented(self) -> list[str]:
        return [INDENT + line if line else "" for line in self.lines]


def _header(spec: dict[str, Any], about: dict[str, Any], what: str | None = None) -> str:
    """Comment lines naming where the model came from (`what`: the trial, unless given). Names are
    literals (`repr()`), so a quote or a line break in one cannot end the comment."""

    def number(key: str) -> str:
        value = about.get(key)
        return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "unknown"

    made = ", ".join(_plain(str(about[k])) for k in ("nas_version", "date") if about.get(k))
    # validation accuracy only of a single child: an ensemble's members each have their own
    validation = f"validation accuracy {number('val_accuracy')}, " if what is None else ""
    scores = f"{validation}test accuracy {number('test_accuracy')}; "
    trial = about.get("trial")
    return "\n".join(
        [
            f"# Generated by nas export{f' ({made})' if made else ''} from run {literal(str(about.get('run', '')))}, "
            f"{what or ('trial ' + (str(int(trial)) if isinstance(trial, int) else 'unknown'))}:",
            f"# {scores}space {literal(str(spec['space']))} (family {_plain(str(spec['family']))}).",
            "# Plain Keras 3: nas is not needed to build, train or load it.",
        ]
    )


def _plain(text: str) -> str:
    """A version, date or family name as it is, unless it holds anything else: then a literal."""
    return text if re.fullmatch(r"[A-Za-z0-9_.:+-]+", text) else literal(text)


def _class_names(names: Sequence[str]) -> str:
    one_line = literal([str(n) for n in names])
    if len(one_line) <= 90:
        return one_line
    return "[\n" + "".join(f"{INDENT}{literal(str(n))},\n" for n in names) + "]"


def _augmentation(augment: dict[str, Any], value_range: str = "(0, 1)") -> list[str]:
    """The lines of `nas.builder.augmentation`, in its order."""
    lines = []
    if augment.get("flip"):
        lines.append('x = layers.RandomFlip("horizontal", name="aug_flip")(x)')
    if augment.get("rotation"):
        lines.append(
            f'x = layers.RandomRotation({literal(float(augment["rotation"]))}, fill_mode="constant", '
            'name="aug_rotation")(x)'
        )
    if augment.get("zoom"):
        lines.append(
            f'x = layers.RandomZoom({literal(float(augment["zoom"]))}, fill_mode="constant", name="aug_zoom")(x)'
        )
    if augment.get("translation"):
        t = literal(float(augment["translation"]))
        lines.append(f'x = layers.RandomTranslation({t}, {t}, fill_mode="constant", name="aug_translation")(x)')
    if augment.get("crop"):
        crop = int(augment["crop"])
        lines.append(f"# Pad {crop} pixels and crop at random: a random shift of up to {crop} whole pixels.")
        lines.append(
            f"x = layers.RandomTranslation({crop} / input_shape[0], {crop} / input_shape[1], "
            'fill_mode="constant", interpolation="nearest", name="aug_crop")(x)'
        )
    if augment.get("contrast"):
        lines.append(
            f"x = layers.RandomContrast({literal(float(augment['contrast']))}, value_range={value_range}, "
            'name="aug_contrast")(x)'
        )
    if augment.get("brightness"):
        lines.append(
            f"x = layers.RandomBrightness({literal(float(augment['brightness']))}, "
            f'value_range={value_range}, name="aug_brightness")(x)'
        )
    return lines


# -- bodies: each writes `x = ...` lines ending with the features the classifier takes; returns
# whether the code uses batch normalisation (and so the BN_MOMENTUM constant) -------------------------


def _activation(activation: str, prefix: str) -> str:
    name = f"{prefix}_{activation}"
    return f"x = layers.Activation({literal(activation)}, name={literal(name)})(x)"


def _normalise_and_activate(code: Code, layer: dict[str, Any], prefix: str) -> None:
    """Mirrors `nas.builder._normalise_and_activate`."""
    placement = bn_placement(layer["batch_norm"])
    bn = f'x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="{prefix}_bn")(x)'
    if placement == "before_activation":
        code.line(bn)
    code.line(_activation(layer["activation"], prefix))
    if placement == "after_activation":
        code.line(bn)


def _uses_bn(layers_: Sequence[dict[str, Any]]) -> bool:
    return any(bn_placement(layer["batch_norm"]) != "none" for layer in layers_)


def _listing(noun: str, numbers: Sequence[int]) -> str:
    """`layer 3`, `layers 0 and 3`, `layers 0, 2 and 5`."""
    if len(numbers) == 1:
        return f"{noun} {numbers[0]}"
    return f"{noun}s {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"


def _linear(code: Code, spec: dict[str, Any]) -> bool:
    code.line('x = layers.Flatten(name="flatten")(x)')
    return False


def _dense(code: Code, spec: dict[str, Any]) -> bool:
    code.line('x = layers.Flatten(name="flatten")(x)')
    for i, layer in enumerate(spec["layers"]):
        bias = ", use_bias=False" if bn_placement(layer["batch_norm"]) == "before_activation" else ""
        code.line(f'x = layers.Dense({int(layer["units"])}{bias}, name="layer{i}_dense")(x)')
        _normalise_and_activate(code, layer, f"layer{i}")
        if layer["dropout"]:
            code.line(f'x = layers.Dropout({literal(float(layer["dropout"]))}, name="layer{i}_dropout")(x)')
    return _uses_bn(spec["layers"])


def _conv(code: Code, spec: dict[str, Any]) -> bool:
    """Mirrors `nas.builder.conv_body`. At the start of layer i, `x` holds layer i-1's output; an
    output that a later layer (other than the next) or the classifier takes is kept as `layer{i}`,
    and the image as `image` when a layer other than the first takes it."""
    layers_ = spec["layers"]
    n = len(layers_)
    reduce_after = set(spec.get("reduce_after", []))
    stages, stage = [], 0
    for i in range(n):
        stages.append(stage)
        stage += i in reduce_after
    fed = {j for layer in layers_ for j in layer["inputs"]}
    ends = [i for i in range(n) if i not in fed]
    # Outputs a layer other than the next one takes, or the classifier (the last layer's stays in x).
    kept = {j for i, layer in enumerate(layers_) for j in layer["inputs"] if j != i - 1}
    kept |= {i for i in ends if i != n - 1}

    def pool(ref: str, times: int, name: str) -> str:
        return ref if times <= 0 else f'layers.MaxPooling2D({2**times}, padding="same", name="{name}")({ref})'

    stem_to = int(spec.get("stem_to", 0))
    if stem_to:
        code.line(f"# The stem: strided convolutions halve the image until its sides are at most {stem_to} pixels.")
        code.line("side, k = max(input_shape[0], input_shape[1]), 0")
        code.line(f"while side > {stem_to}:")
        filters = int(spec["stem_filters"])
        for text in (
            f'x = layers.Conv2D({filters}, 3, strides=2, padding="same", use_bias=False, name=f"stem{{k}}_conv")(x)',
            'x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"stem{k}_bn")(x)',
            'x = layers.Activation("relu", name=f"stem{k}_relu")(x)',
            "side, k = -(-side // 2), k + 1",
        ):
            code.line(INDENT + text)

    if any(not layer["inputs"] for layer in layers_[1:]):
        code.line("image = x  # layers with no input take the image")
    for i, layer in enumerate(layers_):
        code.line()
        inputs = layer["inputs"]
        if len(inputs) > 1:
            code.line(f"# Layer {i} takes {_listing('layer', inputs)}, concatenated and projected to its width.")
        else:
            code.line(f"# Layer {i} takes {_listing('layer', inputs) if inputs else 'the image'}.")
        sources = [pool("x" if j == i - 1 else f"layer{j}", stages[i] - stages[j], f"layer{i}_pool{j}") for j in inputs]
        if len(sources) > 1:
            code.line(f'x = layers.Concatenate(name="layer{i}_concat")([')
            for source in sources:
                code.line(f"{INDENT}{source},")
            code.line("])")
            code.line(f'x = layers.Conv2D({int(layer["filters"])}, 1, use_bias=False, name="layer{i}_project")(x)')
            h = "x"
        else:
            h = sources[0] if sources else pool("x" if i == 0 else "image", stages[i], f"layer{i}_pool_image")
            if h.startswith("layers."):  # pooled to this layer's resolution: a line of its own
                code.line(f"x = {h}")
                h = "x"
        kernel = (int(layer["kernel_height"]), int(layer["kernel_width"]))
        bias = ", use_bias=False" if bn_placement(layer["batch_norm"]) == "before_activation" else ""
        code.line(
            f'x = layers.Conv2D({int(layer["filters"])}, {literal(kernel)}, padding="same"{bias}, '
            f'name="layer{i}_conv")({h})'
        )
        _normalise_and_activate(code, layer, f"layer{i}")
        if i in kept:
            takers = [k for k, later in enumerate(layers_) if i in later["inputs"] and k != i + 1]
            takers = ([_listing("layer", takers)] if takers else []) + (["the classifier"] if i in ends else [])
            code.line(f"layer{i} = x  # for {' and '.join(takers)}")
    code.line()
    if len(ends) == 1:
        code.line(f'x = layers.GlobalAveragePooling2D(name="layer{ends[0]}_gap")(x)')
    else:
        code.line("# Layers that feed no later layer all feed the classifier.")
        code.line('x = layers.Concatenate(name="ends_concat")([')
        for i in ends:
            ref = "x" if i == n - 1 else f"layer{i}"
            code.line(f'{INDENT}layers.GlobalAveragePooling2D(name="layer{i}_gap")({ref}),')
        code.line("])")
    return _uses_bn(layers_) or bool(stem_to)


def _resnet(code: Code, spec: dict[str, Any]) -> bool:
    k = int(spec["kernel"])
    code.line(
        f'x = layers.Conv2D({int(spec["stem_filters"])}, {k}, padding="same", use_bias=False, name="stem_conv")(x)'
    )
    code.line('x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)')
    code.line('x = layers.Activation("relu", name="stem_relu")(x)')
    block = "basic_block" if spec["block"] == "basic" else "bottleneck_block"
    for s in range(int(spec["stages"])):
        for b in range(int(spec["blocks"])):
            strides = 2 if s > 0 and b == 0 else 1
            code.line(f'x = {block}(x, {int(spec["width"]) * 2**s}, {k}, strides={strides}, name="stage{s}_block{b}")')
    code.line('x = layers.GlobalAveragePooling2D(name="gap")(x)')
    return True


CONV_BN = """\
def conv_bn(x, filters, kernel_size, strides, name, relu):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x
"""

SHORTCUT = '''\
def shortcut(x, filters, strides, name):
    """Identity where shapes match; otherwise a strided 1x1 projection (He et al.'s option B)."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    return conv_bn(x, filters, 1, strides, f"{name}_shortcut", relu=False)
'''

BASIC_BLOCK = """\
def basic_block(x, filters, kernel_size, strides, name):
    residual = shortcut(x, filters, strides, name)
    x = conv_bn(x, filters, kernel_size, strides, f"{name}_conv1", relu=True)
    x = conv_bn(x, filters, kernel_size, 1, f"{name}_conv2", relu=False)
    x = layers.Add(name=f"{name}_add")([residual, x])
    return layers.Activation("relu", name=f"{name}_out")(x)
"""

BOTTLENECK_BLOCK = """\
def bottleneck_block(x, filters, kernel_size, strides, name):
    residual = shortcut(x, filters, strides, name)
    inner = max(filters // 4, 4)
    x = conv_bn(x, inner, 1, 1, f"{name}_reduce", relu=True)
    x = conv_bn(x, inner, kernel_size, strides, f"{name}_conv", relu=True)
    x = conv_bn(x, filters, 1, 1, f"{name}_expand", relu=False)
    x = layers.Add(name=f"{name}_add")([residual, x])
    return layers.Activation("relu", name=f"{name}_out")(x)
"""


def _transfer(code: Code, spec: dict[str, Any]) -> bool:
    """Mirrors `nas.builder.transfer_body`."""
    code.line("body = features(keras.saving.load_model(base_path, compile=False))")
    code.line(f"# The first {spec['freeze']:.0%} of the base's layers with weights keep their trained weights.")
    code.line("weighted = [layer for layer in body.layers if layer.weights]")
    code.line(f"for layer in weighted[:round({literal(float(spec['freeze']))} * len(weighted))]:")
    code.line(f"{INDENT}layer.trainable = False")
    code.line("x = body(x)")
    code.line("if len(x.shape) > 2:")
    code.line(f'{INDENT}x = layers.GlobalAveragePooling2D(name="base_gap")(x)')
    if spec["units"]:
        code.line(f'x = layers.Dense({int(spec["units"])}, activation="relu", name="head_dense")(x)')
    return False


FEATURES = '''\
def features(base):
    """The base without its classifier: from its input to what fed its last Dense layer (skipping
    the Dropout layers just before that); of an ensemble of nas's, its best member's."""
    if base.layers[-1].name == "ensemble":
        base = base.get_layer("member_1")
    kept = list(base.layers)
    cut = kept.pop()
    while isinstance(kept[-1], layers.Dropout):
        cut = kept.pop()
    return keras.Model(base.inputs, cut.input, name="base")
'''

BODIES: dict[str, Callable[[Code, dict], bool]] = {
    "linear": _linear,
    "dense": _dense,
    "conv": _conv,
    "resnet": _resnet,
    "transfer": _transfer,
}
HELPERS: dict[str, Callable[[dict], list[str]]] = {
    "transfer": lambda spec: [FEATURES],
    "resnet": lambda spec: [CONV_BN, SHORTCUT, BASIC_BLOCK if spec["block"] == "basic" else BOTTLENECK_BLOCK],
}
