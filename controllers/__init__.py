"""Search strategies behind one ask/tell interface (`base.Controller`).

controller = make_controller("reinforce", space, seed=0)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controllers.base import Controller
from search_spaces import SearchSpace

NAMES = ("reinforce", "random", "evolution", "kt-random", "kt-bayesian", "kt-hyperband")


def make_controller(
    name: str, space: SearchSpace, seed: int = 0, overrides: Mapping[str, Any] | None = None, budget: int | None = None
) -> Controller:
    """A controller by name, with settings from the space file's `controller:` section (REINFORCE,
    evolution). `budget`, the children the search will train, scales evolution's population and
    REINFORCE's warm-up and batches."""
    if name == "random":
        from controllers.random_search import RandomController

        return RandomController(space, seed)
    if name == "reinforce":
        from controllers.reinforce import ReinforceController

        return ReinforceController(space, seed, controller_settings(name, space, overrides, budget))
    if name == "evolution":
        from controllers.evolution import EvolutionController

        return EvolutionController(space, seed, controller_settings(name, space, overrides, budget))
    if name in ("kt-random", "kt-bayesian", "kt-hyperband"):  # Keras Tuner's oracles
        from controllers.keras_tuner import make_keras_tuner_controller

        return make_keras_tuner_controller(name, space, seed, overrides)
    raise ValueError(f"unknown controller {name!r}, expected one of {', '.join(NAMES)}")


def controller_settings(
    name: str, space: SearchSpace, overrides: Mapping[str, Any] | None = None, budget: int | None = None
) -> Any:
    """The settings `make_controller` gives a controller (REINFORCE's or evolution's dataclass; None
    for the others), read from the space file's `controller:` section and checked: a SpaceError names
    the file and the field. Cheap (no TensorFlow), so a search checks them before it loads its data."""
    if name == "reinforce":
        from controllers.reinforce import reinforce_settings

        return reinforce_settings(space, overrides, budget)
    if name == "evolution":
        from controllers.evolution import evolution_settings

        return evolution_settings(space, overrides, budget)
    return None


__all__ = ["Controller", "NAMES", "controller_settings", "make_controller"]
