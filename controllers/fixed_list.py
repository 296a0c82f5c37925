"""A controller that asks a given list of architectures in order: how `--strategy enas` hands its
finalists to the ordinary search loop, so that they train as children through Ray Tune and are
recorded, resumed and reported like any other trial."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controllers.base import Controller, ControllerExhausted
from search_spaces import Architecture, SearchSpace


class FixedListController(Controller):
    name = "fixed-list"

    def __init__(self, space: SearchSpace, architectures: Sequence[Architecture] = (), seed: int = 0):
        super().__init__(space, seed)
        self.architectures = list(architectures)
        self.next = 0

    def give(self, architectures: Sequence[Architecture]) -> None:
        self.architectures = list(architectures)

    def ask(self) -> Architecture:
        if self.next >= len(self.architectures):
            raise ControllerExhausted(f"all {len(self.architectures)} given architectures were asked")
        self.next += 1
        return self.architectures[self.next - 1]

    def tell(self, arch: Architecture, reward: float) -> None:
        pass  # the list is fixed

    def state(self) -> dict[str, Any]:
        return {**super().state(), "architectures": [a.to_json() for a in self.architectures], "next": self.next}

    def load(self, state: Mapping[str, Any]) -> None:
        super().load(state)
        self.architectures = [self.space.from_json(a) for a in state["architectures"]]
        self.next = int(state["next"])
