"""A search space as Keras Tuner's `HyperParameters` and as Ray Tune's `param_space`, and back.

    hp = to_hyperparameters(space)          # one Choice per decision, named as the decision
    arch = from_hyperparameters(space, trial.hyperparameters.values)
    param_space = to_tune_param_space(space)       # {"training.learning_rate": tune.choice([...]), ...}
    arch = from_tune_config(space, config)
    to_values(space, arch)                  # the values KT or Tune would hold for that architecture
    space_from_hyperparameters(hp)          # the other way: a KT user's hyperparameters as a space

Values are the choices themselves (0.001, 128, "relu"), not their indices, so a Keras Tuner user's
hypermodel reads `hp["training.learning_rate"]`. A decision with exactly the choices true and false
becomes a `Boolean` (KT's `Choice` would store them as 0 and 1). When the space's depth is a
decision (`layers: [1, 2, 3]`), the decisions of layer i are conditioned on `layers` being larger
than i, so KT leaves them out of a trial's values when that layer does not exist. Ray Tune has no
conditions: its param_space samples every decision, and `from_tune_config` drops the ones that have
no effect, as `SearchSpace.architecture` does.

Keras Tuner and Ray Tune are imported only by the function that needs them; `nas.tune` remains the
only module that runs Ray.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from search_spaces.space import Architecture, Decision, SearchSpace, SpaceError

if TYPE_CHECKING:
    import keras_tuner

# Keras Tuner's own entries in a trial's values (Hyperband's epochs, bracket and round).
KT_RESERVED_PREFIX = "tuner/"


def is_boolean(decision: Decision) -> bool:
    """A true/false decision, which Keras Tuner holds as a `Boolean`."""
    return (
        len(decision.choices) == 2
        and set(decision.choices) == {False, True}
        and all(isinstance(c, bool) for c in decision.choices)
    )


def depth_conditions(space: SearchSpace) -> dict[str, list[int]]:
    """For each decision that exists only in some depths: the depths (values of `layers`) where it does."""
    depth = next((d for d in space.decisions if d.name == "layers"), None)
    if depth is None:
        return {}
    conditions = {}
    for d in space.decisions:
        if d.layer is not None:
            deep_enough = [int(n) for n in depth.choices if int(n) > d.layer]
            if len(deep_enough) < len(depth.choices):
                conditions[d.name] = deep_enough
    return conditions


def to_hyperparameters(space: SearchSpace) -> keras_tuner.HyperParameters:
    """The space as Keras Tuner hyperparameters: one `Choice` (or `Boolean`) per decision, in order."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    conditions = depth_conditions(space)
    for d in space.decisions:
        parent = {"parent_name": "layers", "parent_values": conditions[d.name]} if d.name in conditions else {}
        if is_boolean(d):
            hp.Boolean(d.name, default=d.choices[0], **parent)
        else:
            hp.Choice(d.name, list(d.choices), **parent)
    return hp


def to_tune_param_space(space: SearchSpace) -> dict[str, Any]:
    """The space as a Ray Tune `param_space`: `tune.choice` over each decision's values."""
    from ray import tune

    return {d.name: tune.choice(list(d.choices)) for d in space.decisions}


def to_values(space: SearchSpace, arch: Architecture) -> dict[str, Any]:
    """The value of every decision that has an effect, by name: a KT trial's values, a Tune config."""
    return space.decode(arch)


def from_hyperparameters(
    space: SearchSpace, values: Mapping[str, Any] | keras_tuner.HyperParameters, ignore_unknown: bool = False
) -> Architecture:
    """The architecture a Keras Tuner trial's values (or `HyperParameters`) stand for. Decisions that
    have no effect may be missing; KT's own `tuner/...` entries are ignored."""
    if not isinstance(values, Mapping) and isinstance(getattr(values, "values", None), Mapping):
        values = values.values  # a HyperParameters
    values = {k: v for k, v in values.items() if not str(k).startswith(KT_RESERVED_PREFIX)}
    return from_values(space, values, ignore_unknown, what="hyperparameters")


def from_tune_config(space: SearchSpace, config: Mapping[str, Any], ignore_unknown: bool = False) -> Architecture:
    """The architecture a Ray Tune config sampled from `to_tune_param_space(space)` stands for."""
    return from_values(space, config, ignore_unknown, what="config")


def from_values(
    space: SearchSpace, values: Mapping[str, Any], ignore_unknown: bool = False, what: str = "values"
) -> Architecture:
    """Values by decision name -> the canonical architecture. Errors name the space, the decision,
    the value and what was expected."""
    if not isinstance(values, Mapping):
        raise SpaceError(
            f"space {space.name}: {what}: got {type(values).__name__}, expected a mapping of decision names to values"
        )
    names = {d.name for d in space.decisions}
    unknown = [k for k in values if k not in names]
    if unknown and not ignore_unknown:
        raise SpaceError(
            f"space {space.name}: {what}: unknown decision {unknown[0]!r}, expected names of the "
            f"space's decisions ({', '.join(sorted(names)[:6])}{', ...' if len(names) > 6 else ''})"
        )
    choices = []
    for d in space.decisions:
        if d.name not in values:
            choices.append(None)
            continue
        choices.append(_index(space, d, values[d.name], what))
    # A missing decision is fine only where it has no effect: find out with the others' values.
    active = space.active([0 if c is None else c for c in choices])
    missing = [d.name for d, c, a in zip(space.decisions, choices, active) if c is None and a]
    if missing:
        raise SpaceError(
            f"space {space.name}: {what}: missing {missing[0]!r}, expected a value for every "
            f"decision that has an effect ({len(missing)} missing)"
        )
    return space.architecture([0 if c is None else c for c in choices])


def _index(space: SearchSpace, decision: Decision, value: Any, what: str) -> int:
    for i, choice in enumerate(decision.choices):
        # bool is an int in Python: True must not match the choice 1, nor 1.0 the choice True,
        # except for a true/false decision, which Keras Tuner's Choice would hold as 0 and 1.
        same_kind = isinstance(value, bool) == isinstance(choice, bool) or (
            is_boolean(decision) and value in (0, 1) and not isinstance(value, float)
        )
        if same_kind and value == choice:
            return i
    expected = ", ".join(repr(c) for c in decision.choices)
    raise SpaceError(f"space {space.name}: {what}: {decision.name}: got {value!r}, expected one of {expected}")


# -- the other direction: a Keras Tuner user's hyperparameters as a space -----------------------------

MAX_VALUES = 1000  # values of one stepped Int or Float: each is a choice (a softmax output, for REINFORCE)


@dataclass
class HyperparameterSpace(SearchSpace):
    """A space read from Keras Tuner hyperparameters: one decision per `Choice`, `Boolean`, or `Int`
    and `Float` with a step. Which decisions have an effect follows KT's conditions (`active`)."""

    conditions: dict[str, list] = field(default_factory=dict)  # decision name -> KT conditions on it
    constants: dict[str, Any] = field(default_factory=dict)  # `Fixed` values, which conditions may test

    def active(self, choices: Sequence[int]) -> list[bool]:
        values = dict(self.constants)
        active = []
        for d, c in zip(self.decisions, choices):
            on = all(condition.is_active(values) for condition in self.conditions.get(d.name, ()))
            if on:
                values[d.name] = d.choices[c]
            active.append(on)
        return active

    def depth(self, choices: Sequence[int]) -> int:
        return 0  # no layers in nas's sense: a decision named `layers` is the user's own

    def size(self) -> int:
        return math.prod(len(d.choices) for d in self.decisions)  # an upper bound: conditions are not counted


def space_from_hyperparameters(
    hyperparameters: keras_tuner.HyperParameters, name: str = "hyperparameters"
) -> HyperparameterSpace:
    """A space with a decision per tunable Keras Tuner hyperparameter, in the order they were declared."""
    import keras_tuner

    decisions, conditions, constants = [], {}, {}
    for hp in hyperparameters.space:
        where = f"hyperparameters: {hp.name}"
        if isinstance(hp, keras_tuner.engine.hyperparameters.Fixed):
            constants[hp.name] = hp.value
            continue
        if isinstance(hp, keras_tuner.engine.hyperparameters.Boolean):
            values = (False, True)
        elif isinstance(hp, keras_tuner.engine.hyperparameters.Choice):
            values = tuple(hp.values)
        elif isinstance(hp, (keras_tuner.engine.hyperparameters.Int, keras_tuner.engine.hyperparameters.Float)):
            if hp.step is None:
                raise SpaceError(
                    f"{where}: a {type(hp).__name__} without a step has no finite list of values, "
                    "expected a Choice, a Boolean, or an Int or Float with a step"
                )
            count = hp._get_n_values()
            if count > MAX_VALUES:
                raise SpaceError(
                    f"{where}: {count:,} values between {hp.min_value} and {hp.max_value}, expected at "
                    f"most {MAX_VALUES:,} (a larger step)"
                )
            cast = int if isinstance(hp, keras_tuner.engine.hyperparameters.Int) else float
            values = tuple(cast(v) for v in hp.values)
        else:
            raise SpaceError(
                f"{where}: {type(hp).__name__} is not supported, expected Choice, Boolean, Int, Float or Fixed"
            )
        if any(d.name == hp.name for d in decisions):
            raise SpaceError(f"{where}: declared twice (under different conditions), expected each name once")
        kind = re.sub(r"\W", "_", hp.name)  # REINFORCE names a softmax after it: Keras layer names take no '/'
        decisions.append(Decision(hp.name, kind, values))
        if hp.conditions:
            conditions[hp.name] = list(hp.conditions)
    if not decisions:
        raise SpaceError(
            "hyperparameters: none to tune, expected at least one Choice, Boolean, or Int or Float with a step"
        )
    return HyperparameterSpace(
        name=name,
        family="hyperparameters",
        decisions=decisions,
        fixed={"top": {}},
        description="Keras Tuner hyperparameters",
        source="hyperparameters",
        conditions=conditions,
        constants=constants,
    )
