"""Regularized evolution (Real et al. 2019): tournament selection, one-decision mutations, and aging.

    controller = make_controller("evolution", space, seed=0, budget=100)   # P=10, S=5 for 100 children
    arch = controller.ask()
    controller.tell(arch, reward=0.97)

The population holds the last P architectures told, oldest first. Until it holds P, every ask is
random. After that an ask samples S members without replacement, takes the one with the best
reward (the first of the sample on a tie) and mutates it: one decision that is active for it, drawn
uniformly, takes a different choice, drawn uniformly. Decisions that the mutation makes active (a
deeper network's new layers) had no value in the parent, so they get random choices. A told child
joins the population and the oldest member leaves, however good it is: aging, not culling the
worst, is what makes this evolution "regularized".

It is asynchronous: asks may come before earlier asks are told (several children train at once),
and each tell, in any order, adds its architecture. An architecture told twice (the search tells
duplicates their known reward) joins twice, as a mutation that reproduced its parent would.

Population and sample sizes are the paper's (100, 25) unless `make_controller` is given the search's
budget: then P = min(100, max(10, budget // 10)) and S = max(2, P // 2), so that nine tenths of a
budget evolves, under a strong tournament. Tuned on the bench_cnn table (budget 100, median trials
to a top-1 % architecture over 200 replays): (25, 6), the earlier budget // 4 and P // 4, took 30;
(10, 5) takes 21; random search 55.5. `population:` and `sample:` in the space file's `controller:`
section fix them instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controllers.base import Controller, mutate, read_settings
from search_spaces import Architecture, SearchSpace, SpaceError


@dataclass
class EvolutionSettings:
    """Settings, from a space file's `controller:` section. Defaults are the paper's values."""

    population: int = 100  # P, the members kept (Real et al.: 100); scaled down for small budgets
    sample: int = 25  # S, the members drawn for each tournament (Real et al.: 25)

    def check(self) -> str | None:
        if self.population < 2:
            return f"population: got {self.population}, expected an integer >= 2"
        if not 1 <= self.sample <= self.population:
            return f"sample: got {self.sample}, expected an integer from 1 to the population ({self.population})"
        return None


def evolution_settings(
    space: SearchSpace, overrides: Mapping[str, Any] | None = None, budget: int | None = None
) -> EvolutionSettings:
    """The settings from the space file's `controller:` section and `overrides`, with P and S scaled
    to the budget where neither gives them: P = min(100, max(10, budget // 10)), S = max(2, P // 2)
    (S = max(2, P // 2) too when only P is given)."""
    from controllers.reinforce import ReinforceSettings

    settings = read_settings(EvolutionSettings, space, overrides, shared_with=(ReinforceSettings,))
    given = {*space.controller, *(overrides or {})}
    scaled = budget is not None and "population" not in given
    population = min(100, max(10, budget // 10)) if scaled else settings.population
    if "sample" in given or not (scaled or "population" in given):
        sample = settings.sample  # the file's, or the paper's 25 of 100
    else:
        sample = max(2, population // 2)
    settings = dataclasses.replace(settings, population=population, sample=sample)
    problem = settings.check()
    if problem:
        raise SpaceError(f"{space.source}: controller.{problem}")
    return settings


class EvolutionController(Controller):
    name = "evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, settings: EvolutionSettings | None = None):
        super().__init__(space, seed)
        self.settings = settings or EvolutionSettings()
        # Members, oldest first: (architecture, reward, birth number).
        self.population: list[tuple[Architecture, float, int]] = []
        self.born = 0  # children told so far: the next member's birth number

    def ask(self) -> Architecture:
        if len(self.population) < self.settings.population:
            return self._random()
        picks = self.rng.choice(len(self.population), size=self.settings.sample, replace=False)
        parent = max((self.population[i] for i in picks), key=lambda member: member[1])[0]
        return self.mutate(parent)

    def _random(self) -> Architecture:
        return self.space.architecture([self.rng.integers(len(d.choices)) for d in self.space.decisions])

    def mutate(self, parent: Architecture) -> Architecture:
        return mutate(self.space, self.rng, parent)

    def tell(self, arch: Architecture, reward: float) -> None:
        self.population.append((arch, float(reward), self.born))
        self.born += 1
        while len(self.population) > self.settings.population:
            self.population.pop(0)  # the oldest, not the worst

    def settings_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "settings": self.settings_json(),
            "born": self.born,
            "population": [
                {"arch": arch.to_json(), "reward": reward, "born": born} for arch, reward, born in self.population
            ],
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Continues from `state`, with its population and sample sizes: a resumed search may have
        another budget, but the evolution it continues keeps the sizes it started with."""
        super().load(state)
        self.settings = EvolutionSettings(**state["settings"])
        problem = self.settings.check()
        if problem:
            raise ValueError(f"settings: {problem}")
        self.born = int(state["born"])
        self.population = [
            (self.space.from_json(m["arch"]), float(m["reward"]), int(m["born"])) for m in state["population"]
        ]
