"""Search spaces: named decisions with finite choices, plus the children's training recipe.

A space is declared in a YAML file. Any setting written as a list is a *decision* the controller
makes; a scalar is fixed. Settings under `layer:` repeat for every layer, so a ten-layer space is a
few lines:

    name: cnn10
    family: conv                 # which builder reads the settings: linear, dense, conv, resnet
    layers: 10
    reduce_after: [0, 3]         # halve height and width after these layers
    layer:
      kernel_height: [1, 3, 5, 7]
      kernel_width: [1, 3, 5, 7]
      filters: [8, 16, 24, 32]
      inputs: any                # every earlier layer may feed this one: skip connections
    training: {learning_rate: 0.003, batch_size: 64, search_epochs: 4, final_epochs: 30}

Use:
    space = load_space("cnn10")                   # a built-in name, or a path to a .yaml file
    arch = space.architecture([0, 3, 1, ...])     # validated, canonical, hashable
    space.decode(arch)                            # {"layer0.kernel_height": 1, ...}
    space.resolve(arch)                           # plain dict the builder turns into a model

This module never imports TensorFlow: a space is data.
"""

from __future__ import annotations

import hashlib
import json
import math
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SpaceError(ValueError):
    """A space file, or an architecture for a space, is invalid. The message names file and field."""


@dataclass(frozen=True)
class Setting:
    """One setting a space file may give."""

    kind: str  # "int", "float", "bool" or "str"
    default: Any
    low: float | None = None  # inclusive lower bound for numbers
    high: float | None = None  # exclusive upper bound for numbers
    high_inclusive: bool = False  # the upper bound is allowed
    options: tuple[str, ...] = ()  # the allowed strings (for a bool: strings allowed besides true and false)
    decidable: bool = True  # may be given as a list of choices

    def expected(self) -> str:
        if self.kind == "str":
            return "one of " + ", ".join(self.options)
        if self.kind == "bool":
            return "true or false" + (f" or one of {', '.join(self.options)}" if self.options else "")
        noun = "an integer" if self.kind == "int" else "a number"
        if self.low is not None and self.high is not None:
            return f"{noun} >= {self.low} and {'<=' if self.high_inclusive else '<'} {self.high}"
        if self.low is not None:
            return f"{noun} >= {self.low}"
        return noun

    def check(self, value: Any) -> Any:
        """Returns the value normalised, or raises ValueError saying what was expected."""
        ok = True
        if self.kind == "bool":
            ok = isinstance(value, bool) or (isinstance(value, str) and value in self.options)
        elif self.kind == "str":
            ok = isinstance(value, str) and value in self.options
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            ok = False
        elif self.kind == "int" and not float(value).is_integer():
            ok = False
        else:
            value = int(value) if self.kind == "int" else float(value)
            ok = (
                math.isfinite(value)
                and (self.low is None or value >= self.low)
                and (self.high is None or value < self.high or (self.high_inclusive and value == self.high))
            )
        if not ok:
            raise ValueError(f"got {value!r}, expected {self.expected()}")
        return value


ACTIVATIONS = ("relu", "elu", "gelu", "selu", "swish", "tanh")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")

TRAINING = {
    "optimizer": Setting("str", "adam", options=OPTIMIZERS),
    "learning_rate": Setting("float", 1e-3, low=1e-7),
    "schedule": Setting("str", "cosine", options=("constant", "cosine")),
    "batch_size": Setting("int", 64, low=1),
    "search_epochs": Setting("int", 3, low=1, decidable=False),
    "final_epochs": Setting("int", 10, low=1, decidable=False),
    # fifo: every child trains all its search epochs; asha: Ray Tune's ASHA stops the children that
    # trail at a rung (`nas search --scheduler` overrides it).
    "scheduler": Setting("str", "fifo", options=("fifo", "asha"), decidable=False),
    # A conv child trains in the search with this fraction of its filters, the winner's final
    # training with all of them: a cheaper proxy, as NASNet and DARTS search with fewer filters.
    "search_width": Setting("float", 1.0, low=0.05, high=1, high_inclusive=True, decidable=False),
    # balanced: the loss weighs each class by its inverse frequency (scikit-learn's "balanced"), for
    # imbalanced data; a decision like any other (`nas search --class-weight` overrides it).
    "class_weight": Setting("str", "none", options=("none", "balanced")),
    # Decoupled weight decay (AdamW's; Keras applies it so for every optimizer): each step shrinks a
    # weight by learning rate x weight_decay. 0 = none (adamw alone keeps Keras's 0.004).
    "weight_decay": Setting("float", 0.0, low=0),
    # Keep an exponential moving average of the weights with this momentum (Keras's use_ema) and
    # end training with the averaged weights; the epochs' validation reads the raw ones. 0 = off.
    "ema": Setting("float", 0.0, low=0, high=1),
    # The search's best N children are retrained (at once, sharing the final training's CPUs) and
    # the model it returns averages their probabilities (nas.ensemble); 1 = the winner alone.
    "ensemble": Setting("int", 1, low=1, decidable=False),
}

# Keras preprocessing layers, active only while training (0 or false = off).
AUGMENT = {
    "flip": Setting("bool", False),
    "rotation": Setting("float", 0.0, low=0, high=1),
    "zoom": Setting("float", 0.0, low=0, high=1),
    "translation": Setting("float", 0.0, low=0, high=1),
    "contrast": Setting("float", 0.0, low=0, high=1),
    "brightness": Setting("float", 0.0, low=0, high=1),
    "crop": Setting("int", 0, low=0),  # pixels of zero padding around a random crop of the image's size
}

AUGMENT_ADDED_LATER = ("brightness", "crop")
TRAINING_ADDED_LATER = ("scheduler", "search_width", "class_weight", "weight_decay", "ema")
# Read only after the search, by the final training: a space's fingerprint (what its children and
# their rewards are) leaves it out at any value.
TRAINING_FINAL_ONLY = ("ensemble",)
TOP_ADDED_LATER = {"widen": 1.0, "stem_to": 0, "stem_filters": 16}  # left out of fingerprints at these values

# `augment: standard` in a space file: every augmentation as a decision, off among the choices,
# so the search finds out which ones help (a horizontal flip does not, on digits).
STANDARD_AUGMENT = {
    "flip": [False, True],
    "rotation": [0.0, 0.05, 0.1],
    "zoom": [0.0, 0.1],
    "translation": [0.0, 0.1],
    "contrast": [0.0, 0.2],
    "brightness": [0.0, 0.2],
    "crop": [0, 2, 4],
}

INPUTS = ("previous", "any", "skips")


def skip_sources(inputs: str, layer: int) -> range:
    """The earlier layers whose connection to `layer` is a decision under the space's `inputs`."""
    return {"any": range(layer), "skips": range(layer - 1)}.get(inputs, range(0))


def stages(reduce_after: Sequence[int], depth: int) -> list[int]:
    """How many reductions come before each of `depth` conv layers."""
    return [sum(j < i for j in reduce_after) for i in range(depth)]


def stem_reductions(height: int, width: int, stem_to: int) -> int:
    """How many halvings bring an image's longer side to at most `stem_to` pixels (0: no stem)."""
    if not stem_to:
        return 0
    side, n = max(height, width), 0
    while side > stem_to:
        side, n = math.ceil(side / 2), n + 1
    return n


def widened(filters: int, widen: float, stage: int, width: float = 1.0) -> int:
    """A conv layer's filters after `stage` reductions: its choice times widen ** stage, rounded;
    times `width` for a child in the search (training.search_width)."""
    return max(1, round(filters * widen**stage * width))


# Where a layer's batch normalisation goes: true (the same as before_activation, Ioffe & Szegedy's
# placement), false (none), or after_activation. Read by `nas.builder.bn_placement`.
BN_PLACEMENTS = ("none", "before_activation", "after_activation")

HEAD = {"dropout": Setting("float", 0.0, low=0, high=1)}

# Per family: settings made once (`top`) and settings repeated for every layer (`layer`).
FAMILIES: dict[str, dict[str, dict[str, Setting]]] = {
    "linear": {"top": {"l2": Setting("float", 0.0, low=0)}, "layer": {}},
    "dense": {
        "top": {"layers": Setting("int", 2, low=1)},
        "layer": {
            "units": Setting("int", 128, low=1),
            "activation": Setting("str", "relu", options=ACTIVATIONS),
            "dropout": Setting("float", 0.0, low=0, high=1),
            "batch_norm": Setting("bool", False, options=BN_PLACEMENTS),
        },
    },
    "conv": {
        "top": {
            "layers": Setting("int", 6, low=1),
            # a layer's filters are its choice times widen ** (reductions before it), rounded: wider
            # where the maps are smaller, as in VGG and ResNet (1: every stage alike, Zoph & Le's)
            "widen": Setting("float", 1.0, low=0.25, high=4, high_inclusive=True, decidable=False),
            # Large images: strided 3x3 convolutions of stem_filters before the first layer halve the
            # image until its sides are at most stem_to pixels (0: no stem), so that a child on 128-pixel
            # photos costs about what it costs on 32-pixel ones (nas.builder.stem_reductions).
            "stem_to": Setting("int", 0, low=0, decidable=False),
            "stem_filters": Setting("int", 16, low=1, decidable=False),
        },
        "layer": {
            "kernel_height": Setting("int", 3, low=1),
            "kernel_width": Setting("int", 3, low=1),
            "filters": Setting("int", 32, low=1),
            "activation": Setting("str", "relu", options=ACTIVATIONS),
            "batch_norm": Setting("bool", True, options=BN_PLACEMENTS),
            # previous: a chain; any: each earlier layer may feed this one, and a layer fed by none takes
            # the image (Zoph & Le); skips: the previous layer always, and each earlier one may (ENAS's
            # macro space), so no layer goes back to the image and only the last one feeds the classifier.
            "inputs": Setting("str", "previous", options=INPUTS, decidable=False),
        },
    },
    "resnet": {
        "top": {
            "stem_filters": Setting("int", 16, low=1),
            "stages": Setting("int", 3, low=1),
            "blocks": Setting("int", 1, low=1),
            "width": Setting("int", 16, low=1),
            "block": Setting("str", "basic", options=("basic", "bottleneck")),
            "kernel": Setting("int", 3, low=1),
        },
        "layer": {},
    },
    "transfer": {  # the body is a trained model's (--base PATH, nas.transfer); these decide how it is reused
        "top": {
            "freeze": Setting(
                "float", 1.0, low=0, high=1, high_inclusive=True
            ),  # of its weighted layers, from the input
            "units": Setting("int", 0, low=0),  # a new hidden layer before the classifier; 0: none
        },
        "layer": {},
    },
}

MAX_DECISIONS = 10_000  # cnn10 has 75; a typo such as `layers: 100000` would otherwise exhaust memory

TOP_KEYS = (
    "name",
    "description",
    "family",
    "layer",
    "reduce_after",
    "training",
    "augment",
    "head",
    "controller",
    "weight_sharing",
)
GROUPS = {"training": TRAINING, "augment": AUGMENT, "head": HEAD}


@dataclass(frozen=True)
class Decision:
    """One choice the controller makes."""

    name: str  # unique in the space: "layers", "training.learning_rate", "layer3.filters", "layer3.input1"
    kind: str  # what is decided, the same for every layer: "filters"; "input" for a skip connection
    choices: tuple  # the values, in the file's order
    layer: int | None = None  # the layer the decision belongs to
    source: int | None = None  # for kind "input": the earlier layer that may feed `layer`


@dataclass(frozen=True)
class Architecture:
    """One point of a space: a choice index per decision. Build it with `SearchSpace.architecture`,
    which validates it and zeroes decisions that have no effect, so equal models compare equal."""

    space: str
    choices: tuple[int, ...]

    @property
    def key(self) -> str:
        """A canonical hash: the same for the same space name and choices, on every machine."""
        text = json.dumps([self.space, list(self.choices)], separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        return {"space": self.space, "choices": list(self.choices)}


@dataclass
class SearchSpace:
    name: str
    family: str
    decisions: list[Decision]
    fixed: dict[str, Any]  # every setting that is not a decision, by group: {"training": {...}, ...}
    description: str = ""
    source: str = ""  # the file it came from
    text: str = ""  # the file's text, copied into run directories
    controller: dict[str, Any] = field(default_factory=dict)  # settings for the controllers
    weight_sharing: dict[str, Any] = field(default_factory=dict)  # settings for --strategy enas (nas.enas)

    # -- architectures ---------------------------------------------------------------------------

    def architecture(self, choices: Sequence[int]) -> Architecture:
        """Validates choice indices and returns the canonical architecture."""
        choices = [int(c) for c in choices]
        if len(choices) != len(self.decisions):
            raise SpaceError(f"space {self.name}: got {len(choices)} choices, expected {len(self.decisions)}")
        for d, c in zip(self.decisions, choices):
            if not 0 <= c < len(d.choices):
                raise SpaceError(f"space {self.name}: {d.name}: choice index {c} out of range 0..{len(d.choices) - 1}")
        active = self.active(choices)
        return Architecture(self.name, tuple(c if a else 0 for c, a in zip(choices, active)))

    def from_json(self, data: Mapping) -> Architecture:
        if data.get("space") != self.name:
            raise SpaceError(f"architecture of space {data.get('space')!r} given to space {self.name!r}")
        return self.architecture(data["choices"])

    def active(self, choices: Sequence[int]) -> list[bool]:
        """Which decisions matter: a layer beyond the chosen depth decides nothing."""
        depth = self.depth(choices)
        return [d.layer is None or d.layer < depth for d in self.decisions]

    def depth(self, choices: Sequence[int]) -> int:
        for d, c in zip(self.decisions, choices):
            if d.name == "layers":
                return int(d.choices[c])
        return int(self.fixed.get("top", {}).get("layers", 0))

    def decode(self, arch: Architecture) -> dict[str, Any]:
        """The chosen value of every active decision, by decision name."""
        active = self.active(arch.choices)
        return {d.name: d.choices[c] for d, c, a in zip(self.decisions, arch.choices, active) if a}

    def resolve(self, arch: Architecture, searched: bool = False) -> dict[str, Any]:
        """The model's full specification as plain data: what `nas.builder` and `nas.trainer` read.
        `searched`: the child as the search trains it, its filters narrowed to `training.search_width`;
        otherwise the model the winner's final training, the export and the report build."""
        values = self.decode(arch)
        spec: dict[str, Any] = {"space": self.name, "family": self.family, **self.fixed["top"]}
        spec.update({group: dict(self.fixed[group]) for group in GROUPS})
        for d in self.decisions:
            if d.layer is None:
                group, _, key = d.name.rpartition(".")
                (spec[group] if group else spec)[key] = values[d.name]
        if FAMILIES[self.family]["layer"]:
            spec["layers"] = [self._resolve_layer(i, values) for i in range(self.depth(arch.choices))]
        if self.family == "conv":
            spec["reduce_after"] = list(self.fixed.get("reduce_after", []))
            widen, width = spec.pop("widen", 1.0), spec["training"]["search_width"] if searched else 1.0
            for layer, stage in zip(spec["layers"], stages(spec["reduce_after"], len(spec["layers"]))):
                layer["filters"] = widened(layer["filters"], widen, stage, width)
            spec["stem_filters"] = widened(spec.get("stem_filters", 16), 1.0, 0, width)
        if self.family == "resnet" and searched:
            width = spec["training"]["search_width"]
            spec["stem_filters"] = widened(spec["stem_filters"], 1.0, 0, width)
            spec["width"] = widened(spec["width"], 1.0, 0, width)
        return spec

    def _resolve_layer(self, i: int, values: Mapping[str, Any]) -> dict[str, Any]:
        layer = dict(self.fixed.get("layer", {}))
        for key in FAMILIES[self.family]["layer"]:
            if f"layer{i}.{key}" in values:
                layer[key] = values[f"layer{i}.{key}"]
        if self.family == "conv":
            chosen = [j for j in skip_sources(layer["inputs"], i) if values.get(f"layer{i}.input{j}")]
            layer["inputs"] = chosen if layer["inputs"] == "any" else sorted({*chosen, i - 1} if i > 0 else set())
        return layer

    # -- size and sampling -----------------------------------------------------------------------

    def size(self) -> int:
        """The number of distinct architectures (canonical ones: inactive layers do not count)."""
        per_layer: dict[int, int] = {}
        top = 1
        for d in self.decisions:
            if d.layer is None and d.name != "layers":
                top *= len(d.choices)
            elif d.layer is not None:
                per_layer[d.layer] = per_layer.get(d.layer, 1) * len(d.choices)
        depths = next((d.choices for d in self.decisions if d.name == "layers"), None)
        depths = depths or (self.fixed.get("top", {}).get("layers", 0),)
        return top * sum(math.prod(per_layer.get(i, 1) for i in range(n)) for n in depths)

    def describe_size(self) -> str:
        n = self.size()
        return f"{n:,}" if n < 10**7 else f"{n:.2e}".replace("e+", "e")

    def fingerprint(self) -> str:
        # The augmentations added to the schema later count only when on, so that the runs and
        # benchmark tables made before them keep their fingerprints.
        # So does a training setting added later while it has its default.
        fixed = {
            **self.fixed,
            "augment": {k: v for k, v in self.fixed.get("augment", {}).items() if v or k not in AUGMENT_ADDED_LATER},
        }
        fixed["top"] = {k: v for k, v in fixed.get("top", {}).items() if TOP_ADDED_LATER.get(k, object()) != v}
        if "training" in fixed:
            fixed["training"] = {
                k: v
                for k, v in fixed["training"].items()
                if k not in TRAINING_FINAL_ONLY and (k not in TRAINING_ADDED_LATER or v != TRAINING[k].default)
            }
        text = json.dumps(
            [self.name, self.family, [(d.name, list(d.choices)) for d in self.decisions], fixed],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha1(text.encode()).hexdigest()[:16]


# -- loading ---------------------------------------------------------------------------------------

BUILTIN_DIR = Path(__file__).resolve().parent
MAX_SPACE_FILE_BYTES = 2**20  # a space file is a page of settings; a larger one is refused unread
MAX_YAML_NODES = 100_000  # values a space file may hold once its aliases are expanded


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Loads a built-in space by name (`cnn10`) or a user's space file by path."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in text:
        _check_space_file(path, text)
        try:
            with path.open("rb") as file:  # read no more than the cap, should the file grow meanwhile
                content = file.read(MAX_SPACE_FILE_BYTES + 1).decode("utf-8")
        except UnicodeDecodeError as e:
            raise SpaceError(f"{path}: byte {e.start}: not UTF-8 text, expected a YAML space file") from None
        except OSError as e:
            raise SpaceError(f"{path}: cannot read it ({e.strerror}), expected a readable YAML space file") from None
        return parse_space(content, source=str(path), default_name=path.stem)
    if text in builtin_names():
        path = BUILTIN_DIR / f"{text}.yaml"
        return parse_space(path.read_text(), source=f"{text}.yaml", default_name=text)
    raise SpaceError(
        f"unknown space {text!r}; known spaces: {', '.join(builtin_names())} (or give a path to a .yaml file)"
    )


def _check_space_file(path: Path, text: str) -> None:
    """A regular file of at most MAX_SPACE_FILE_BYTES: a folder, a FIFO (which would block the read
    for ever) or a device is refused by its type, a huge file by its size, before any is read."""
    try:
        info = path.stat()
    except OSError:
        raise SpaceError(f"{text}: space file not found") from None
    if stat.S_ISDIR(info.st_mode):
        raise SpaceError(f"{text}: is a folder, expected a YAML space file")
    if not stat.S_ISREG(info.st_mode):
        raise SpaceError(f"{text}: is a {file_kind(info.st_mode)}, expected a regular YAML space file")
    if info.st_size > MAX_SPACE_FILE_BYTES:
        raise SpaceError(
            f"{text}: {info.st_size:,} bytes, expected a space file of at most {MAX_SPACE_FILE_BYTES:,} bytes"
        )


def file_kind(mode: int) -> str:
    """What a path that is not a regular file or folder is, for a message: FIFO, socket or device."""
    kinds = {stat.S_ISFIFO: "FIFO", stat.S_ISSOCK: "socket", stat.S_ISCHR: "device", stat.S_ISBLK: "device"}
    return next((kind for test, kind in kinds.items() if test(mode)), "special file")


def _expanded_nodes(node: yaml.Node, limit: int) -> int:
    """How many nodes the document becomes once its aliases are expanded, counted on the composed
    graph (where an alias is one shared node), stopping past `limit`: a few hundred bytes of nested
    aliases (a "billion laughs") expand to 10^9 nodes when the document is used."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = limit + 1  # a recursive alias (`&a [*a]`) counts as too many
        if isinstance(n, yaml.SequenceNode):
            total = 1 + sum(min(size(child), limit + 1) for child in n.value)
        elif isinstance(n, yaml.MappingNode):
            total = 1 + sum(min(size(k), limit + 1) + min(size(v), limit + 1) for k, v in n.value)
        else:
            total = 1
        sizes[id(n)] = min(total, limit + 1)
        return sizes[id(n)]

    return size(node)


def _load_yaml(text: str) -> Any:
    """yaml.load with _UniqueKeyLoader, refusing documents that expand beyond MAX_YAML_NODES."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise _TooLarge()
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _TooLarge(Exception):
    pass


def parse_space(text: str, source: str = "<space>", default_name: str = "space") -> SearchSpace:
    """Parses and validates a space file's text; errors read `source: field: problem, expected ...`."""

    def fail(where: str, problem: str) -> SpaceError:
        return SpaceError(f"{source}: {where}: {problem}")

    try:
        data = _load_yaml(text)
    except _TooLarge:
        raise fail(
            "file",
            f"its aliases expand to more than {MAX_YAML_NODES:,} values, expected a space file without nested aliases",
        ) from None
    except RecursionError:
        raise fail("file", "nested too deeply, expected a space file of settings") from None
    except _DuplicateKey as e:
        raise fail(
            f"line {e.problem_mark.line + 1}",
            f"duplicate key {e.key!r} (first given on line {e.first.line + 1}), expected each setting once",
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "file"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise fail(where, f"malformed YAML ({problem}), expected a mapping of settings") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise fail("file", f"got {got}, expected a mapping of settings such as family: conv")
    family = data.get("family")
    if not isinstance(family, str) or family not in FAMILIES:
        got = "missing" if "family" not in data else f"got {family!r}"
        raise fail("family", f"{got}, expected one of {', '.join(FAMILIES)}")
    allowed = set(TOP_KEYS) | set(FAMILIES[family]["top"])
    for key in data:
        if key not in allowed:
            raise fail(str(key), f"unknown setting for family {family}, expected one of {', '.join(sorted(allowed))}")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise fail("name", f"got {name!r}, expected letters, digits, '-' or '_'")

    decisions: list[Decision] = []
    fixed: dict[str, dict[str, Any]] = {}

    def read(group: str, key: str, setting: Setting, value: Any, where: str) -> Any:
        """A fixed value, or a tuple of choices when the file gives a list."""
        if isinstance(value, list):
            if not setting.decidable:
                raise fail(where, f"got a list, expected a single value ({setting.expected()})")
            if not value:
                raise fail(where, f"empty list of choices, expected at least one value ({setting.expected()})")
            try:
                choices = tuple(setting.check(v) for v in value)
            except ValueError as e:
                raise fail(where, str(e)) from None
            if len(set(choices)) != len(choices):
                raise fail(where, f"repeated choice in {value}, expected distinct values")
            return choices
        try:
            return setting.check(value)
        except ValueError as e:
            raise fail(where, str(e)) from None

    # Settings made once: family settings, then training, augmentation and head groups.
    groups = {"top": (FAMILIES[family]["top"], data)}
    for group, schema in GROUPS.items():
        section = data.get(group, {}) or {}
        if group == "augment" and section == "standard":
            section = STANDARD_AUGMENT
        if not isinstance(section, dict):
            also = " or standard" if group == "augment" else ""
            raise fail(group, f"got {section!r}, expected a mapping of settings{also}")
        groups[group] = (schema, section)
    for group, (schema, section) in groups.items():
        prefix = "" if group == "top" else group + "."
        for key in section:
            if group != "top" and key not in schema:
                raise fail(f"{group}.{key}", f"unknown setting, expected one of {', '.join(schema)}")
        fixed[group] = {}
        for key, setting in schema.items():
            value = read(group, key, setting, section.get(key, setting.default), prefix + key)
            if isinstance(value, tuple):
                decisions.append(Decision(prefix + key, key, value))
            else:
                fixed[group][key] = value

    # Settings repeated for every layer.
    layer_schema = FAMILIES[family]["layer"]
    section = data.get("layer", {}) or {}
    if not isinstance(section, dict):
        raise fail("layer", f"got {section!r}, expected a mapping of per-layer settings")
    if section and not layer_schema:
        raise fail("layer", f"family {family} has no layers, expected no 'layer' section")
    for key in section:
        if key not in layer_schema:
            raise fail(f"layer.{key}", f"unknown setting, expected one of {', '.join(layer_schema)}")
    layer_values = {k: read("layer", k, s, section.get(k, s.default), f"layer.{k}") for k, s in layer_schema.items()}
    fixed["layer"] = {k: v for k, v in layer_values.items() if not isinstance(v, tuple)}
    if layer_schema:
        depth_choice = next((d for d in decisions if d.name == "layers"), None)
        max_depth = max(depth_choice.choices) if depth_choice else fixed["top"]["layers"]
        per_layer = sum(isinstance(v, tuple) for v in layer_values.values())
        skips = sum(len(skip_sources(layer_values.get("inputs"), i)) for i in range(max_depth))
        count = len(decisions) + max_depth * per_layer + skips  # counted before they are made
        if count > MAX_DECISIONS:
            raise fail(
                "layers",
                f"got {data.get('layers', max_depth)!r}: {max_depth} layers make {count:,} decisions, "
                f"expected at most {MAX_DECISIONS:,} (fewer layers, or inputs: previous)",
            )
        for i in range(max_depth):
            decisions += [
                Decision(f"layer{i}.input{j}", "input", (False, True), layer=i, source=j)
                for j in skip_sources(layer_values.get("inputs"), i)
            ]
            decisions += [
                Decision(f"layer{i}.{k}", k, v, layer=i) for k, v in layer_values.items() if isinstance(v, tuple)
            ]

    if "reduce_after" in data:
        if family != "conv":
            raise fail("reduce_after", f"only the conv family reduces after layers, got it for family {family}")
        reduce_after = data["reduce_after"]
        max_depth = max(next((d.choices for d in decisions if d.name == "layers"), (fixed["top"].get("layers", 0),)))
        if not isinstance(reduce_after, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < max_depth for i in reduce_after
        ):
            raise fail(
                "reduce_after", f"got {reduce_after!r}, expected a list of layer indices from 0 to {max_depth - 1}"
            )
        fixed["reduce_after"] = sorted(set(reduce_after))
    if fixed["training"]["search_width"] != 1 and family not in ("conv", "resnet"):
        raise fail(
            "training.search_width",
            f"only the conv and resnet families narrow their children's filters, got it for family {family}",
        )

    if not decisions:
        raise fail("file", "declares no decision, expected at least one setting given as a list of choices")
    controller = data.get("controller", {}) or {}
    if not isinstance(controller, dict):
        raise fail("controller", f"got {controller!r}, expected a mapping of controller settings")
    weight_sharing = data.get("weight_sharing", {}) or {}
    if not isinstance(weight_sharing, dict):
        raise fail("weight_sharing", f"got {weight_sharing!r}, expected a mapping of settings for --strategy enas")
    description = data.get("description", "")
    return SearchSpace(
        name=name,
        family=family,
        decisions=decisions,
        fixed=fixed,
        description=" ".join(str(description).split()),
        source=source,
        text=text,
        controller=controller,
        weight_sharing=weight_sharing,
    )


class _DuplicateKey(yaml.MarkedYAMLError):
    def __init__(self, key: Any, first: yaml.Mark, mark: yaml.Mark):
        super().__init__(problem=f"duplicate key {key!r}", problem_mark=mark)
        self.key, self.first = key, first


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a space file must give each setting once."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden by the keys beside it
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in first:
                    raise _DuplicateKey(key, first[key], key_node.start_mark)
                first[key] = key_node.start_mark
            except TypeError:  # an unhashable key: the base constructor says so
                pass
        return super().construct_mapping(node, deep=deep)


def iter_architectures(space: SearchSpace) -> Iterable[Architecture]:
    """Every canonical architecture of a small space, once each (for tests and tabular benchmarks)."""
    sizes = [len(d.choices) for d in space.decisions]
    seen = set()
    for flat in range(math.prod(sizes)):
        choices = []
        for n in reversed(sizes):
            choices.append(flat % n)
            flat //= n
        arch = space.architecture(choices[::-1])
        if arch not in seen:
            seen.add(arch)
            yield arch
