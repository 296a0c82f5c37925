"""Random search: every choice uniform and independent. The baseline every controller must beat."""

from __future__ import annotations

from controllers.base import Controller
from search_spaces import Architecture


class RandomController(Controller):
    name = "random"

    def ask(self) -> Architecture:
        return self.space.architecture([self.rng.integers(len(d.choices)) for d in self.space.decisions])

    def tell(self, arch: Architecture, reward: float) -> None:
        pass  # random search learns nothing
