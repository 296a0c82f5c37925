"""Regularized evolution, driven by hand on synthetic rewards: no training, no Ray."""

import json

import numpy as np
import pytest
from test_controllers import run

from controllers import make_controller
from controllers.base import read_settings
from controllers.evolution import EvolutionController, EvolutionSettings
from controllers.reinforce import ReinforceSettings
from search_spaces import SpaceError, parse_space

# Depth is a decision, so mutations must respect which decisions are active.
TOY = """
name: toy
family: conv
layers: [1, 2, 3, 4]
layer:
  kernel_height: [1, 3, 5, 7]
  filters: [8, 16, 24, 32]
controller: {learning_rate: 0.02}   # REINFORCE's: evolution skips it
"""


def peaked(arch):
    """Higher the closer every choice is to the last one: one best architecture, a smooth slope."""
    return float(np.mean(arch.choices)) / 3


def test_same_seed_same_architectures():
    space = parse_space(TOY)
    a = run(make_controller("evolution", space, seed=3, budget=60), 60, peaked)
    b = run(make_controller("evolution", space, seed=3, budget=60), 60, peaked)
    c = run(make_controller("evolution", space, seed=4, budget=60), 60, peaked)
    assert a == b and a != c


def test_population_and_sample_scale_with_the_budget_unless_the_space_file_sets_them():
    space = parse_space(TOY)
    sizes = {
        budget: (c.settings.population, c.settings.sample)
        for budget in (None, 20, 100, 200, 1000)
        for c in [make_controller("evolution", space, budget=budget)]
    }
    assert sizes == {None: (100, 25), 20: (10, 5), 100: (10, 5), 200: (20, 10), 1000: (100, 50)}
    fixed = parse_space(TOY.replace("{learning_rate: 0.02}", "{population: 8, sample: 3}"))
    assert make_controller("evolution", fixed, budget=1000).settings == EvolutionSettings(8, 3)
    bad = parse_space(TOY.replace("{learning_rate: 0.02}", "{population: 8, sample: 9}"), source="toy.yaml")
    with pytest.raises(
        SpaceError,
        match=r"toy.yaml: controller.sample: got 9, expected an integer from 1 to the "
        r"population \(8\)",
    ):
        make_controller("evolution", bad)
    typo = parse_space(TOY.replace("{learning_rate: 0.02}", "{populaton: 8}"), source="toy.yaml")
    with pytest.raises(
        SpaceError,
        match=r"toy.yaml: controller.populaton: unknown setting, expected one of "
        r"population, sample",
    ):
        make_controller("evolution", typo)
    # REINFORCE skips evolution's settings, as evolution skips REINFORCE's (as make_controller reads them).
    assert read_settings(ReinforceSettings, fixed, shared_with=(EvolutionSettings,)) == ReinforceSettings()


def test_state_round_trip_mid_run_continues_exactly():
    space = parse_space(TOY)
    uninterrupted = make_controller("evolution", space, seed=1, budget=40)  # P=10, S=5
    run(uninterrupted, 25, peaked)
    pending = [uninterrupted.ask() for _ in range(3)]  # asked, not yet told: several children training
    saved = json.loads(json.dumps(uninterrupted.state()))  # through JSON, as on disk
    resumed = make_controller("evolution", space, seed=99, budget=400)  # another budget: the saved sizes win
    resumed.load(saved)
    assert resumed.settings == uninterrupted.settings == EvolutionSettings(10, 5)
    for c in (resumed, uninterrupted):
        for arch in reversed(pending):  # told in any order
            c.tell(arch, peaked(arch))
    assert run(resumed, 30, peaked) == run(uninterrupted, 30, peaked)
    assert json.dumps(resumed.state()) == json.dumps(uninterrupted.state())
    with pytest.raises(ValueError, match="state of controller 'random' given to 'evolution'"):
        resumed.load(make_controller("random", space).state())


def test_asks_are_random_until_the_population_is_full_even_when_asks_run_ahead_of_tells():
    space = parse_space(TOY)
    controller = EvolutionController(space, seed=0, settings=EvolutionSettings(population=10, sample=3))
    random_twin = make_controller("random", space, seed=0)
    asked = [controller.ask() for _ in range(14)]  # nothing told yet: 14 random architectures
    assert asked == [random_twin.ask() for _ in range(14)]
    for arch in asked[:9]:
        controller.tell(arch, peaked(arch))
    assert controller.ask() == random_twin.ask()  # 9 of 10 members: still random
    controller.tell(asked[9], peaked(asked[9]))
    child = controller.ask()  # a full population: a mutant of a member
    assert any(_active_differences(space, member, child) == 1 for member, _, _ in controller.population)


def test_the_oldest_member_ages_out_not_the_worst():
    space = parse_space(TOY)
    controller = EvolutionController(space, seed=0, settings=EvolutionSettings(population=5, sample=2))
    archs = [controller.ask() for _ in range(5)]
    rewards = [0.9, 0.1, 0.5, 0.6, 0.7]  # the oldest is the best
    for arch, reward in zip(archs, rewards):
        controller.tell(arch, reward)
    for n in range(1, 8):
        child = controller.ask()
        before = [(m[0], m[1], m[2]) for m in controller.population]
        controller.tell(child, 0.0)  # the worst reward: it still stays, the oldest goes
        after = controller.population
        assert len(after) == 5
        assert after[:-1] == before[1:] and after[-1] == (child, 0.0, 4 + n)
        assert [m[2] for m in after] == list(range(n, n + 5))  # birth numbers: the last five told


def test_a_mutation_changes_exactly_one_active_decision():
    space = parse_space(TOY)
    controller = EvolutionController(space, seed=0)
    depth_changes = 0
    for _ in range(500):
        parent = controller._random()
        child = controller.mutate(parent)
        assert _active_differences(space, parent, child) == 1
        depth_changes += space.depth(child.choices) != space.depth(parent.choices)
    assert 50 < depth_changes < 200  # depth is one of 3-9 active decisions


def test_tournament_takes_the_best_of_the_sample():
    space = parse_space(TOY)
    controller = EvolutionController(space, seed=0, settings=EvolutionSettings(population=4, sample=4))
    archs = [controller.ask() for _ in range(4)]
    for arch, reward in zip(archs, [0.1, 0.2, 0.95, 0.3]):
        controller.tell(arch, reward)
    for _ in range(20):  # the sample is the whole population: every child is a mutant of the best
        assert _active_differences(space, archs[2], controller.ask()) == 1


def test_evolution_beats_random_search_on_a_synthetic_reward():
    """On the smooth `peaked` reward over 4,100 architectures, evolution's best after 300 asks is better
    than random search's, on average over 5 seeds, and reaches the optimum's neighbourhood."""
    space = parse_space(TOY)
    best = {}
    for name in ("random", "evolution"):
        best[name] = np.mean(
            [max(map(peaked, run(make_controller(name, space, seed=s, budget=300), 300, peaked))) for s in range(5)]
        )
    assert best["evolution"] > best["random"] + 0.05 and best["evolution"] > 0.9, best


def _active_differences(space, parent, child):
    """How many decisions active in both the child chose differently (a shallower child drops layers,
    a deeper one adds layers: neither is a change of theirs)."""
    both = [a and b for a, b in zip(space.active(parent.choices), space.active(child.choices))]
    return sum(a and p != c for a, p, c in zip(both, parent.choices, child.choices))
