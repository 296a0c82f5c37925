"""Search strategies behind one ask/tell interface (`base.Controller`).

    controller = make_controller("reinforce", space, seed=0)
"""

from __future__ import annotations

from typing import Any, Mapping

from controllers.base import Controller
from search_spaces import SearchSpace

NAMES = ("reinforce", "random")


def make_controller(name: str, space: SearchSpace, seed: int = 0,
                    overrides: Mapping[str, Any] | None = None) -> Controller:
    """A controller by name, with settings from the space file's `controller:` section (REINFORCE)."""
    from controllers.base import read_settings

    if name == "random":
        from controllers.random_search import RandomController

        return RandomController(space, seed)
    if name == "reinforce":
        from controllers.reinforce import ReinforceController, ReinforceSettings

        return ReinforceController(space, seed, read_settings(ReinforceSettings, space, overrides))
    raise ValueError(f"unknown controller {name!r}, expected one of {', '.join(NAMES)}")


__all__ = ["Controller", "NAMES", "make_controller"]
