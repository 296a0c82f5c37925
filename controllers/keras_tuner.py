"""Keras Tuner's own oracles as nas controllers: `kt-random`, `kt-bayesian`, `kt-hyperband`.

    controller = make_controller("kt-bayesian", space, seed=0)
    arch = controller.ask()            # oracle.create_trial(...) -> the trial's values -> Architecture
    controller.tell(arch, reward=0.97) # oracle.update_trial(id, {"reward": 0.97}) + oracle.end_trial(...)
    saved = controller.state()         # the oracle's get_state(), its trials, and what the wrapper holds

The space becomes Keras Tuner hyperparameters (`search_spaces.interop.to_hyperparameters`) and
the objective is `reward`, maximised. Each ask creates a trial under a tuner id of its own, so
several asks may be outstanding at once (Ray trains children in parallel), and each tell ends the
oldest outstanding trial of that architecture. The oracles keep their trials in memory and write
no files: `state()` holds everything, and the search writes it into the run directory.

- `kt-random`: `RandomSearchOracle`. Never repeats a configuration; after 20 draws in a row that
  were tried already it reports the space exhausted (KT's rule), and the search stops asking.
- `kt-bayesian`: `BayesianOptimizationOracle`: random configurations first (`num_initial_points`,
  KT's default 3 per decision), then a Gaussian process (Matern 5/2) with an upper confidence bound.
  One change to KT: where the process proposes a configuration already tried (KT does not check),
  a random untried one is taken instead, so the oracle never repeats an architecture.
- `kt-hyperband`: `HyperbandOracle`'s bracket schedule. nas trains every child for the same epochs
  (children do not take per-trial epochs), so Hyperband's promotion of the best configurations of a
  round to the next round asks for architectures already trained: the search answers them from its
  records, without training them again or spending budget. In effect kt-hyperband draws new
  architectures as random search does, in Hyperband's batches; it is not multi-fidelity here.
  `max_epochs` (default: the space's `search_epochs`) and `factor` only shape the brackets.

Settings (`overrides` of `make_controller`): kt-bayesian `num_initial_points`, `alpha`, `beta`;
kt-hyperband `max_epochs`, `factor`. The space file's `controller:` section holds REINFORCE's and
evolution's settings and is not read. A seed gives the same asks for the same rewards (KT's oracles
draw from their seed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import keras_tuner as kt
import numpy as np
from keras_tuner.engine.trial import Trial, TrialStatus

from controllers.base import Controller, ControllerExhausted, read_settings
from search_spaces import Architecture, SearchSpace
from search_spaces.interop import from_hyperparameters, to_hyperparameters

OBJECTIVE = "reward"
HYPERBAND_ITERATIONS = 10**9  # KT's None means infinity, which JSON cannot hold; the budget ends the search


@dataclass
class RandomSettings:
    """kt-random has no settings of its own."""


@dataclass
class BayesianSettings:
    num_initial_points: int = 0  # random configurations before the Gaussian process; 0: KT's default, 3 per decision
    alpha: float = 1e-4  # noise added to the kernel's diagonal (KT's default)
    beta: float = 2.6  # exploration in the upper confidence bound (KT's default)

    def check(self) -> str | None:
        if self.num_initial_points < 0:
            return f"num_initial_points: got {self.num_initial_points}, expected an integer >= 0"
        if not self.alpha > 0 or self.beta < 0:
            return f"alpha, beta: got {self.alpha}, {self.beta}, expected alpha > 0 and beta >= 0"
        return None


@dataclass
class HyperbandSettings:
    max_epochs: int = 0  # shapes Hyperband's brackets (children all train alike); 0: the space's search_epochs
    factor: int = 3  # Hyperband's reduction factor (KT's default)

    def check(self) -> str | None:
        if self.max_epochs < 0:
            return f"max_epochs: got {self.max_epochs}, expected an integer >= 0 (0: the space's search_epochs)"
        if self.factor < 2:
            return f"factor: got {self.factor}, expected an integer >= 2"
        return None


class _InMemory:
    """An oracle that keeps its trials in memory: the controller's state() holds them, not files."""

    def save(self) -> None:
        pass

    def _save_trial(self, trial: Trial) -> None:
        pass


class _RandomOracle(_InMemory, kt.oracles.RandomSearchOracle):
    pass


class _BayesianOracle(_InMemory, kt.oracles.BayesianOptimizationOracle):
    last_fit: tuple[list, list] | None = None  # the data of the last Gaussian-process fit, to refit on load

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():  # the kernel's length scale hits its bound on a handful of points
            warnings.simplefilter("ignore", ConvergenceWarning)
            response = super().populate_space(trial_id)
        if response["status"] == TrialStatus.RUNNING and self._duplicate(response["values"]):
            response = self._random_populate_space()  # the process proposed a configuration already tried
        return response

    def _vectorize_trials(self):
        x, y = super()._vectorize_trials()
        # populate_space fits the process on these, as cleaned here; ongoing trials are scored with
        # the previous fit, so a loaded oracle refits on the last data to continue exactly.
        self.last_fit = (np.nan_to_num(x, posinf=0, neginf=0).tolist(), np.nan_to_num(y, posinf=0, neginf=0).tolist())
        return x, y


class _HyperbandOracle(_InMemory, kt.oracles.HyperbandOracle):
    pass


class KerasTunerController(Controller):
    """One of Keras Tuner's oracles behind ask/tell (see the module's docstring)."""

    settings_class: ClassVar[type]

    def __init__(self, space: SearchSpace, seed: int = 0, settings: Any = None):
        super().__init__(space, seed)
        self.settings = settings if settings is not None else self.settings_class()
        # KT seeds its n-th draw with seed + n, so seeds 1 and 2 would draw the same values shifted
        # by one: derive the oracle's seed from ours instead.
        self.oracle_seed = int(np.random.default_rng([seed, 7]).integers(1, 2**31 - 1))
        self.hyperparameters = to_hyperparameters(space)
        self.oracle = self._make_oracle(
            objective=kt.Objective(OBJECTIVE, "max"),
            seed=self.oracle_seed,
            hyperparameters=self.hyperparameters.copy(),
            allow_new_entries=False,
            tune_new_entries=False,
            max_retries_per_trial=0,
            max_consecutive_failed_trials=None,
        )
        self.oracle.verbose = 0  # KT prints a table per trial otherwise
        self.pending: list[tuple[str, Architecture]] = []  # (trial id, architecture) asked and not yet told
        self.asks = 0  # tuner ids handed out: one per ask, so asks may be outstanding together

    def _make_oracle(self, **kwargs) -> kt.Oracle:
        raise NotImplementedError

    def ask(self) -> Architecture:
        trial = self.oracle.create_trial(f"nas{self.asks}")
        self.asks += 1
        if trial.status != TrialStatus.RUNNING:
            # STOPPED, or IDLE: with configurations running, the sampler found no untried one; what
            # Hyperband would offer once they finish are promotions, which nas has trained already.
            raise ControllerExhausted(
                f"Keras Tuner's {type(self.oracle).__bases__[-1].__name__} has no untried "
                f"configuration left (trial status {trial.status})"
            )
        arch = from_hyperparameters(self.space, trial.hyperparameters.values)
        self.pending.append((trial.trial_id, arch))
        return arch

    def tell(self, arch: Architecture, reward: float) -> None:
        index = next((i for i, (_, asked) in enumerate(self.pending) if asked == arch), None)
        if index is None:
            raise ValueError(
                f"{self.name}: told the reward of architecture {arch.key}, which was not asked for or was told already"
            )
        trial_id, _ = self.pending.pop(index)
        trial = self.oracle.trials[trial_id]
        if math.isfinite(reward):
            self.oracle.update_trial(trial_id, {OBJECTIVE: float(reward)})
            trial.status = TrialStatus.COMPLETED
        else:
            trial.status = TrialStatus.FAILED
        self.oracle.end_trial(trial)

    def settings_json(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self.settings),
            "oracle": type(self.oracle).__bases__[-1].__name__,
            "oracle_seed": self.oracle_seed,
        }

    # -- state -----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        trials = [
            {
                "id": t.trial_id,
                "values": t.hyperparameters.values,
                "status": t.status,
                "score": t.score,
                "best_step": t.best_step,
                "metrics": t.metrics.get_config(),
            }
            for t in self.oracle.trials.values()
        ]
        state = {
            **super().state(),
            "settings": self.settings_json(),
            "oracle": self.oracle.get_state(),
            "trials": trials,
            "pending": [[tid, arch.to_json()] for tid, arch in self.pending],
            "asks": self.asks,
        }
        state["oracle"]["tried_so_far"] = sorted(state["oracle"]["tried_so_far"])  # a set: one order for one state
        return json.loads(json.dumps(state))  # a copy: the oracle's lists go on changing

    def load(self, state: Mapping[str, Any]) -> None:
        super().load(state)
        mine = dataclasses.asdict(self.settings)  # the oracle's seed is part of its state, not a setting
        if {k: v for k, v in state["settings"].items() if k in mine} != mine:
            raise ValueError(f"the saved controller has other settings ({state['settings']}) than this one ({mine})")
        from keras_tuner.src.engine.metrics_tracking import MetricsTracker

        trials = {}
        for saved in state["trials"]:
            hp = self.hyperparameters.copy()
            hp.values = dict(saved["values"])
            trial = Trial(hp, trial_id=saved["id"], status=saved["status"])
            trial.metrics = MetricsTracker.from_config(saved["metrics"])
            trial.score, trial.best_step = saved["score"], saved["best_step"]
            trials[trial.trial_id] = trial
        self.oracle.trials = trials
        self.oracle.set_state(state["oracle"])
        self.oracle_seed = self.oracle.seed
        self.oracle.tuner_ids = set(state["oracle"]["ongoing_trials"])
        self.pending = [(tid, self.space.from_json(arch)) for tid, arch in state["pending"]]
        self.asks = int(state["asks"])


class KerasTunerRandom(KerasTunerController):
    name = "kt-random"
    settings_class = RandomSettings

    def _make_oracle(self, **kwargs) -> kt.Oracle:
        return _RandomOracle(max_trials=None, **kwargs)


class KerasTunerBayesian(KerasTunerController):
    name = "kt-bayesian"
    settings_class = BayesianSettings

    def _make_oracle(self, **kwargs) -> kt.Oracle:
        s = self.settings
        return _BayesianOracle(
            max_trials=None, num_initial_points=s.num_initial_points or None, alpha=s.alpha, beta=s.beta, **kwargs
        )

    def state(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, cached = self.oracle._random_state.get_state()
        return {
            **super().state(),
            "random_state": [name, keys.tolist(), pos, has_gauss, cached],
            "last_fit": self.oracle.last_fit,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        super().load(state)  # set_state leaves a fresh, unfitted Gaussian process
        name, keys, pos, has_gauss, cached = state["random_state"]
        self.oracle._random_state.set_state((name, np.array(keys, np.uint32), pos, has_gauss, cached))
        self.oracle.last_fit = state["last_fit"]
        if self.oracle.last_fit:
            self.oracle.gpr.fit(np.array(self.oracle.last_fit[0]), np.array(self.oracle.last_fit[1]))


class KerasTunerHyperband(KerasTunerController):
    name = "kt-hyperband"
    settings_class = HyperbandSettings

    def _make_oracle(self, **kwargs) -> kt.Oracle:
        s = self.settings
        max_epochs = s.max_epochs or int(self.space.fixed["training"]["search_epochs"])
        return _HyperbandOracle(
            max_epochs=max_epochs, factor=s.factor, hyperband_iterations=HYPERBAND_ITERATIONS, **kwargs
        )


CONTROLLERS = {c.name: c for c in (KerasTunerRandom, KerasTunerBayesian, KerasTunerHyperband)}


def make_keras_tuner_controller(
    name: str, space: SearchSpace, seed: int = 0, overrides: Mapping[str, Any] | None = None
) -> KerasTunerController:
    """A Keras Tuner controller by name; settings come from `overrides` only (the space file's
    `controller:` section holds REINFORCE's and evolution's)."""
    cls = CONTROLLERS[name]
    settings = read_settings(cls.settings_class, dataclasses.replace(space, controller={}), overrides)
    return cls(space, seed, settings)
