"""The interface every search strategy implements: ask for an architecture, tell how it did.

    controller = make_controller("reinforce", space, seed=0)
    arch = controller.ask()
    controller.tell(arch, reward=0.97)
    saved = controller.state()              # plain JSON
    controller.load(saved)                  # continues exactly where `saved` was taken

Controllers know spaces and architectures only: no Ray, no child models, no files.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from search_spaces import Architecture, SearchSpace, SpaceError


class ControllerExhausted(Exception):
    """Raised by `ask`: the controller has no new architecture to offer (Keras Tuner's oracles say
    so once their sampler keeps drawing configurations already tried). The search stops asking."""


class Controller(abc.ABC):
    name: ClassVar[str]

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def ask(self) -> Architecture:
        """The next architecture to try. It may repeat one already asked; the caller de-duplicates.
        Raises ControllerExhausted when there is nothing new left to try."""

    @abc.abstractmethod
    def tell(self, arch: Architecture, reward: float) -> None:
        """The reward (higher is better) of an architecture this controller asked for."""

    def state(self) -> dict[str, Any]:
        """Everything needed to continue: JSON-serialisable."""
        return {"controller": self.name, "rng": self.rng.bit_generator.state}

    def load(self, state: Mapping[str, Any]) -> None:
        if state.get("controller") != self.name:
            raise ValueError(f"state of controller {state.get('controller')!r} given to {self.name!r}")
        self.rng.bit_generator.state = state["rng"]

    def settings_json(self) -> dict[str, Any]:
        """The controller's resolved settings, for the run's config.json."""
        return {}

    def updates(self) -> list[dict[str, Any]]:
        """One record per learning step (mean reward, baseline, entropy, loss) for monitoring."""
        return []


def mutate(space: SearchSpace, rng: np.random.Generator, parent: Architecture) -> Architecture:
    """The parent with one active decision changed to another of its choices, drawn uniformly;
    decisions this makes active (a deeper network's new layers) get random choices."""
    before = space.active(parent.choices)
    candidates = [i for i, d in enumerate(space.decisions) if before[i] and len(d.choices) > 1]
    if not candidates:  # every active decision has one choice: nothing to mutate
        return parent
    i = int(rng.choice(candidates))
    choices = list(parent.choices)
    other = int(rng.integers(len(space.decisions[i].choices) - 1))
    choices[i] = other + (other >= choices[i])  # uniform over the choices but the current one
    after = space.active(choices)
    for j, d in enumerate(space.decisions):
        if after[j] and not before[j]:
            choices[j] = int(rng.integers(len(d.choices)))
    return space.architecture(choices)


# Settings of the `controller:` section that the search reads for every controller.
SEARCH_SETTINGS = ("failure_reward",)


def read_settings(
    cls: type, space: SearchSpace, overrides: Mapping[str, Any] | None = None, shared_with: Sequence[type] = ()
):
    """Builds a controller's settings dataclass from the space file's `controller:` section and any
    overrides, checking names and types; errors name the space file and the field. The section's
    settings of the controllers in `shared_with` (their settings classes) are skipped: one section
    serves REINFORCE and evolution alike."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    others = {f.name for other in shared_with for f in dataclasses.fields(other)} - set(fields)
    section = {k: v for k, v in space.controller.items() if k not in others}
    given = {k: v for k, v in {**section, **(overrides or {})}.items() if k not in SEARCH_SETTINGS}
    values = {}
    for key, value in given.items():
        if key not in fields:
            raise SpaceError(
                f"{space.source}: controller.{key}: unknown setting, expected one of "
                f"{', '.join([*fields, *SEARCH_SETTINGS, *sorted(others)])}"
            )
        default = fields[key].default
        kind = type(default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SpaceError(
                f"{space.source}: controller.{key}: got {value!r}, expected {kind.__name__} "
                f"like the default {default!r}"
            )
        values[key] = value
    settings = cls(**values)
    problem = settings.check() if hasattr(settings, "check") else None
    if problem:
        raise SpaceError(f"{space.source}: controller.{problem}")
    return settings
