import json

import pytest

from search_spaces import SpaceError, builtin_names, iter_architectures, load_space, parse_space

CONV = """
name: tiny
family: conv
layers: 3
reduce_after: [0]
layer:
  kernel_height: [1, 3]
  filters: [4, 8]
  inputs: any
"""


def test_builtin_spaces_and_their_sizes():
    assert builtin_names() == ["bench_cnn", "bench_dense", "cnn10", "cnn10_aug", "dnn", "linear", "resnet", "transfer"]
    assert load_space("linear").size() == 3 * 4 * 2
    assert load_space("resnet").size() == 2 * 2 * 3 * 2 * 2
    assert load_space("bench_cnn").size() == 3 * (4 + 4**2 + 4**3)  # 3 learning rates x 1-3 layers
    # dnn: 1 to 3 layers of (4 widths x 3 dropouts), times 2 learning rates; shorter nets are not
    # counted once per value of their unused layers.
    assert load_space("dnn").size() == 2 * (12 + 12**2 + 12**3)


def test_cnn10_follows_zoph_and_le_with_enas_skips_widening_and_a_half_width_search():
    space = load_space("cnn10")
    layers = {d.layer for d in space.decisions}
    assert layers == set(range(10))
    for i in range(10):
        mine = {d.kind: d for d in space.decisions if d.layer == i}
        assert mine["kernel_height"].choices == (1, 3, 5)  # Zoph & Le: also 7 (cnn10.yaml says why not)
        assert mine["kernel_width"].choices == (1, 3, 5)
        assert len(mine["filters"].choices) >= 2
        inputs = sorted(d.source for d in space.decisions if d.layer == i and d.kind == "input")
        assert inputs == list(range(i - 1))  # the previous layer always, each earlier one a decision
        assert mine["batch_norm"].choices == ("before_activation", "after_activation")
    assert len(space.decisions) == 10 * 4 + 36
    widest = space.architecture([len(d.choices) - 1 if d.kind == "filters" else 0 for d in space.decisions])
    assert [layer["filters"] for layer in space.resolve(widest)["layers"]] == [48] * 2 + [72] * 3 + [108] * 5
    searched = space.resolve(widest, searched=True)["layers"]
    assert [layer["filters"] for layer in searched] == [24] * 2 + [36] * 3 + [54] * 5


def test_the_standard_augment_group_makes_each_augmentation_a_decision_that_may_be_off():
    space = parse_space(CONV + "augment: standard\n")
    augment = {d.name: d.choices for d in space.decisions if d.name.startswith("augment.")}
    assert set(augment) == {
        f"augment.{k}" for k in ("flip", "rotation", "zoom", "translation", "contrast", "brightness", "crop")
    }
    assert all(choices[0] in (0, False) for choices in augment.values())
    assert space.size() == parse_space(CONV).size() * 2 * 3 * 2 * 2 * 2 * 2 * 3


def test_cnn10_aug_is_cnn10_with_its_augmentation_as_the_least_and_more_searched():
    space, cnn10 = load_space("cnn10_aug"), load_space("cnn10")
    augment = {d.name.removeprefix("augment."): d.choices for d in space.decisions if d.name.startswith("augment.")}
    assert set(augment) == {"flip", "rotation", "zoom", "translation", "contrast", "brightness", "crop"}
    for name, value in cnn10.fixed["augment"].items():
        assert min(augment[name]) == value if value else augment[name][0] in (0, False)
        assert len(augment[name]) == 2 and max(augment[name]) > value  # something more to search
    layers = [(d.name, d.choices) for d in space.decisions if not d.name.startswith("augment.")]
    assert layers == [(d.name, d.choices) for d in cnn10.decisions]
    assert {k: v for k, v in space.fixed.items() if k != "augment"} == {
        k: v for k, v in cnn10.fixed.items() if k != "augment"
    }


def test_architecture_is_validated_canonical_and_serialisable():
    space = load_space("dnn")
    depth = next(i for i, d in enumerate(space.decisions) if d.name == "layers")
    a = [0] * len(space.decisions)
    b = [1] * len(space.decisions)
    b[depth] = 0  # one layer: the second and third layers' choices do not matter ...
    a[depth] = 0
    a[next(i for i, d in enumerate(space.decisions) if d.name == "training.learning_rate")] = 1
    a[next(i for i, d in enumerate(space.decisions) if d.name == "layer0.units")] = 1
    a[next(i for i, d in enumerate(space.decisions) if d.name == "layer0.dropout")] = 1
    arch_a, arch_b = space.architecture(a), space.architecture(b)
    assert arch_a == arch_b and hash(arch_a) == hash(arch_b) and arch_a.key == arch_b.key  # ... so equal
    assert space.from_json(json.loads(json.dumps(arch_a.to_json()))) == arch_a
    assert space.decode(arch_a) == {
        "layers": 1,
        "training.learning_rate": 0.003,
        "layer0.units": 128,
        "layer0.dropout": 0.25,
    }
    with pytest.raises(SpaceError, match="got 2 choices, expected 8"):
        space.architecture([0, 0])
    with pytest.raises(SpaceError, match=r"layers: choice index 3 out of range 0..2"):
        space.architecture([3] + [0] * 7)
    with pytest.raises(SpaceError, match="architecture of space 'cnn10' given to space 'dnn'"):
        space.from_json({"space": "cnn10", "choices": a})


def test_resolve_turns_skip_decisions_into_input_lists():
    space = parse_space(CONV, source="tiny.yaml")
    values = {d.name: i for i, d in enumerate(space.decisions)}
    choices = [0] * len(space.decisions)
    choices[values["layer2.input0"]] = 1
    choices[values["layer2.kernel_height"]] = 1
    spec = space.resolve(space.architecture(choices))
    assert [layer["inputs"] for layer in spec["layers"]] == [[], [], [0]]
    assert spec["layers"][2]["kernel_height"] == 3
    assert spec["reduce_after"] == [0]
    assert spec["training"]["optimizer"] == "adam"  # defaults fill what the file leaves out


def test_inputs_skips_keep_the_previous_layer_and_decide_the_earlier_ones():
    space = parse_space(CONV.replace("inputs: any", "inputs: skips"), source="tiny.yaml")
    assert [d.name for d in space.decisions if d.kind == "input"] == ["layer2.input0"]  # layer 1's only input is 0
    choices = [0] * len(space.decisions)
    assert [layer["inputs"] for layer in space.resolve(space.architecture(choices))["layers"]] == [[], [0], [1]]
    choices[[d.name for d in space.decisions].index("layer2.input0")] = 1
    assert [layer["inputs"] for layer in space.resolve(space.architecture(choices))["layers"]] == [[], [0], [0, 1]]


def test_widen_and_search_width_set_the_filters_and_leave_old_fingerprints_alone():
    space = parse_space(CONV.replace("layers: 3", "layers: 3\nwiden: 1.5"))
    layers = space.resolve(space.architecture([1] * len(space.decisions)))["layers"]
    assert [layer["filters"] for layer in layers] == [8, 12, 12]  # 8 filters chosen; reduce_after: [0]
    searched = space.resolve(space.architecture([1] * len(space.decisions)), searched=True)["layers"]
    assert [layer["filters"] for layer in searched] == [8, 12, 12]  # training.search_width: 1
    narrow = parse_space(CONV.replace("layers: 3", "layers: 3\nwiden: 1.5\ntraining: {search_width: 0.5}"))
    searched = narrow.resolve(narrow.architecture([1] * len(narrow.decisions)), searched=True)["layers"]
    assert [layer["filters"] for layer in searched] == [4, 6, 6]  # the search's proxy: half the filters
    plain = parse_space(CONV)
    assert parse_space(CONV.replace("layers: 3", "layers: 3\nwiden: 1")).fingerprint() == plain.fingerprint()
    assert parse_space(CONV.replace("layers: 3", "layers: 3\nwiden: 2")).fingerprint() != plain.fingerprint()
    half = CONV.replace("layers: 3", "layers: 3\ntraining: {search_width: 0.5}")
    assert parse_space(half).fingerprint() != plain.fingerprint()
    resnet = load_space("resnet")  # the resnet family narrows its stem and its stages' width
    widest = resnet.architecture([len(d.choices) - 1 for d in resnet.decisions])
    assert [resnet.resolve(widest)[k] for k in ("stem_filters", "width")] == [32, 32]
    assert [resnet.resolve(widest, searched=True)[k] for k in ("stem_filters", "width")] == [16, 16]


def test_every_architecture_of_a_small_space_once():
    space = load_space("dnn")
    archs = list(iter_architectures(space))
    assert len(archs) == len(set(archs)) == space.size()


def test_load_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(CONV)
    space = load_space(str(path))
    assert space.name == "tiny" and space.source == str(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("family: conv\nlayer: {filters: [8, 16}\n", r"bad.yaml: line 2: malformed YAML .*expected a mapping"),
        ("- a\n- b\n", r"bad.yaml: file: got list, expected a mapping"),
        ("family: transformer\n", r"bad.yaml: family: got 'transformer', expected one of linear, dense, conv, resnet"),
        (
            "family: conv\nlayers: 3\nlayer: {kernel_height: [1, 3], opp: 2}\n",
            r"bad.yaml: layer.opp: unknown setting, expected one of kernel_height",
        ),
        ("family: conv\nlayers: 3\nwidth: [1, 2]\n", r"bad.yaml: width: unknown setting for family conv"),
        (
            "family: conv\nlayers: 3\nlayer: {filters: []}\n",
            r"bad.yaml: layer.filters: empty list of choices, expected at least one value",
        ),
        (
            "family: conv\nlayers: 3\nlayer: {filters: [8, -1]}\n",
            r"bad.yaml: layer.filters: got -1, expected an integer >= 1",
        ),
        ("family: conv\nlayers: 3\nlayer: {filters: [8, 8]}\n", r"bad.yaml: layer.filters: repeated choice"),
        (
            "family: conv\nlayers: 3\nlayer: {filters: [8], inputs: [any, previous]}\n",
            r"bad.yaml: layer.inputs: got a list, expected a single value",
        ),
        (
            "family: conv\nlayers: 3\nlayer: {filters: [8], activation: [relu, softplus]}\n",
            r"bad.yaml: layer.activation: got 'softplus', expected one of relu",
        ),
        (
            "family: conv\nlayers: 3\nreduce_after: [5]\nlayer: {filters: [8, 16]}\n",
            r"bad.yaml: reduce_after: got \[5\], expected a list of layer indices from 0 to 2",
        ),
        ("family: conv\nlayers: 3\n", r"bad.yaml: file: declares no decision"),
        (
            "family: conv\nlayers: 3\nlayer: {filters: [8], batch_norm: [true, after_conv]}\n",
            r"bad.yaml: layer.batch_norm: got 'after_conv', expected true or false or one of none, before_activation, "
            r"after_activation",
        ),
        (
            "family: dense\nlayers: [1, 2]\naugment: strong\n",
            r"bad.yaml: augment: got 'strong', expected a mapping of settings or standard",
        ),
        (
            "family: dense\nlayers: [1, 2]\naugment: {crop: [0, 1.5]}\n",
            r"bad.yaml: augment.crop: got 1.5, expected an integer",
        ),
        (
            "family: dense\nlayers: [1, 2]\ntraining: {epochs: 3}\n",
            r"bad.yaml: training.epochs: unknown setting, expected one of optimizer",
        ),
        (
            "family: dense\nlayers: [1, 2]\ntraining: {search_epochs: [1, 2]}\n",
            r"bad.yaml: training.search_epochs: got a list, expected a single value",
        ),
        (
            "family: dense\nlayers: [1, 2]\ntraining: {learning_rate: fast}\n",
            r"bad.yaml: training.learning_rate: got 'fast', expected a number",
        ),
        ("family: linear\nl2: [0, 0.1]\nlayer: {units: 4}\n", r"bad.yaml: layer: family linear has no layers"),
        ("family: linear\nname: 'my space!'\nl2: [0, 0.1]\n", r"bad.yaml: name: got 'my space!'"),
    ],
)
def test_bad_space_files_name_file_field_and_expectation(text, message):
    with pytest.raises(SpaceError, match=message):
        parse_space(text, source="bad.yaml")


def test_unknown_space_lists_the_known_ones():
    with pytest.raises(
        SpaceError,
        match=r"unknown space 'cnn11'; known spaces: bench_cnn, bench_dense, cnn10, cnn10_aug, dnn, linear, resnet, "
        r"transfer",
    ):
        load_space("cnn11")
    with pytest.raises(SpaceError, match=r"nope.yaml: space file not found"):
        load_space("nope.yaml")


def test_duplicate_keys_are_refused_but_yaml_merge_keys_still_work():
    with pytest.raises(SpaceError, match=r"bad.yaml: line 3: duplicate key 'filters' \(first given on line 3\)"):
        parse_space("family: conv\nlayers: 3\nlayer: {filters: [8, 16], filters: [4]}\n", source="bad.yaml")
    # A merge key's mapping followed by one of its keys is an override, not a duplicate.
    space = parse_space(
        "family: conv\nlayers: 3\nlayer:\n  <<: {filters: [4, 8], kernel_height: [1, 3]}\n  filters: [16, 32]\n",
        source="ok.yaml",
    )
    choices = {d.name: d.choices for d in space.decisions}
    assert choices["layer0.filters"] == (16, 32) and choices["layer0.kernel_height"] == (1, 3)
