"""nas with Keras Tuner and Ray Tune: any nas controller as a Keras Tuner oracle, and the conversions
between search spaces and KT's `HyperParameters` and Tune's `param_space`.

A Keras Tuner user searches their own hypermodel with the REINFORCE controller:

    import keras, keras_tuner
    from nas.interop import ControllerOracle

    def build(hp):
        model = keras.Sequential([keras.layers.Dense(hp.Choice("units", [16, 32, 64]), activation="relu"),
                                  keras.layers.Dropout(hp.Choice("dropout", [0.0, 0.25])),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [1e-3, 3e-3])),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    oracle = ControllerOracle(controller="reinforce", objective="val_accuracy", max_trials=20, seed=0)
    tuner = keras_tuner.Tuner(oracle=oracle, hypermodel=build, directory="kt", project_name="digits")
    tuner.search(x, y, validation_split=0.2, epochs=3)
    tuner.get_best_hyperparameters()[0].values

The controller's space is read from the hyperparameters the hypermodel declares (KT builds it once
before the first trial), or given: `ControllerOracle(load_space("dnn"), ...)` or a `HyperParameters`.
Conversions (see `search_spaces.interop`):

    hp = to_hyperparameters(load_space("dnn"))          # one Choice per decision, conditioned on depth
    arch = from_hyperparameters(space, trial.hyperparameters.values)
    param_space = to_tune_param_space(space)            # tune.choice per decision
    arch = from_tune_config(space, config)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras_tuner as kt
from keras_tuner.engine.trial import TrialStatus

from controllers import NAMES, Controller, make_controller
from controllers.base import ControllerExhausted
from search_spaces import Architecture, SearchSpace, load_space
from search_spaces.interop import (
    HyperparameterSpace,
    from_hyperparameters,
    from_tune_config,
    space_from_hyperparameters,
    to_hyperparameters,
    to_tune_param_space,
    to_values,
)

# Asks in a row answered from finished trials before the oracle declares the search over (as nas.search_state does).
MAX_CONSECUTIVE_DUPLICATES = 200


class ControllerOracle(kt.Oracle):
    """A nas controller (`reinforce`, `random`, ...) as a Keras Tuner oracle.

    Each trial's score (the objective's best value) is told to the controller as its reward: as is
    for a maximised objective, exp(-score) for a minimised one (so a loss maps into (0, 1]: REINFORCE
    clips rewards below 0), or `reward(score)` if given. A failed trial earns the lowest reward so far.
    A configuration already tried is not run again: the controller is told its reward and asked
    again; 200 such asks in a row (or an exhausted controller) stop the search. Hyperparameters a
    hypermodel declares after the first trial keep their default values.
    """

    def __init__(
        self,
        space: SearchSpace | kt.HyperParameters | str | Path | None = None,
        controller: str = "reinforce",
        objective: Any = "val_accuracy",
        max_trials: int | None = 10,
        seed: int = 0,
        settings: Mapping[str, Any] | None = None,
        reward: Callable[[float], float] | None = None,
        **kwargs,
    ):
        if controller not in NAMES:
            raise ValueError(f"controller: got {controller!r}, expected one of {', '.join(NAMES)}")
        if isinstance(space, (str, Path)):
            space = load_space(space)
        hyperparameters = kwargs.pop("hyperparameters", None)
        if isinstance(space, SearchSpace):
            hyperparameters = to_hyperparameters(space)
        elif isinstance(space, kt.HyperParameters):
            hyperparameters, space = space, None
        elif space is not None:
            raise TypeError(
                f"space: got {type(space).__name__}, expected a SearchSpace, a space's name or file, "
                "keras_tuner.HyperParameters, or None (the hypermodel declares them)"
            )
        # KT's Oracle takes a seed of 0 as "pick one at random"; only the controller draws, from `seed`.
        super().__init__(
            objective=objective, max_trials=max_trials, hyperparameters=hyperparameters, seed=seed + 1, **kwargs
        )
        self.given_space = space
        self.controller_name = controller
        self.controller_seed = seed
        self.controller_settings = dict(settings or {})
        self.reward = reward
        self.space: SearchSpace | None = space
        self.space_hyperparameters: dict | None = None  # the config of the hyperparameters the space was read from
        self.controller: Controller | None = None  # made at the first trial, once the hypermodel declared its space
        self.asked: dict[str, Architecture] = {}  # trial id -> its architecture, until it is told
        self.rewards: dict[str, float] = {}  # hash of a finished trial's values -> the reward told
        self.echoes: dict[str, list[Architecture]] = {}  # asked again while running: told when it finishes

    def _start(self) -> None:
        if self.space is None:
            self.space_hyperparameters = self.hyperparameters.get_config()
            self.space = space_from_hyperparameters(self.hyperparameters)
        self.controller = make_controller(
            self.controller_name,
            self.space,
            seed=self.controller_seed,
            overrides=self.controller_settings,
            budget=self.max_trials,  # REINFORCE's warm-up and batches, evolution's population
        )

    def _values(self, arch: Architecture) -> dict[str, Any]:
        """The trial's values: the architecture's choices, defaults for hyperparameters outside the
        controller's space, active ones only (as KT's own oracles fill them)."""
        chosen = {d.name: d.choices[c] for d, c in zip(self.space.decisions, arch.choices)}
        hps = kt.HyperParameters()
        for hp in self.hyperparameters.space:
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = chosen.get(hp.name, hp.default)
        return hps.values

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        """Asks the controller for an architecture not tried yet (see the class's docstring)."""
        if self.controller is None:
            self._start()
        for _ in range(MAX_CONSECUTIVE_DUPLICATES):
            try:
                arch = self.controller.ask()
            except ControllerExhausted:
                return {"status": TrialStatus.STOPPED, "values": None}
            values = self._values(arch)
            key = self._compute_values_hash(values)
            if key in self.rewards:  # tried and finished: teach it without training again
                self.controller.tell(arch, self.rewards[key])
                continue
            if key in self._tried_so_far:  # running now: teach it once it finishes
                self.echoes.setdefault(key, []).append(arch)
                continue
            self.asked[trial_id] = arch
            return {"status": TrialStatus.RUNNING, "values": values}
        return {"status": TrialStatus.STOPPED, "values": None}

    @kt.synchronized
    def end_trial(self, trial: kt.engine.trial.Trial) -> None:
        """KT's end of a trial, then the controller is told its reward (a trial KT will retry waits)."""
        super().end_trial(trial)
        trial = self.trials[trial.trial_id]
        if trial.trial_id in self._retry_queue or trial.trial_id not in self.asked:
            return
        arch = self.asked.pop(trial.trial_id)
        if trial.status == TrialStatus.COMPLETED and trial.score is not None and math.isfinite(trial.score):
            reward = self._reward(float(trial.score))
        else:
            reward = min(self.rewards.values(), default=0.0)
        key = self._id_to_hash[trial.trial_id]
        self.rewards[key] = reward
        self.controller.tell(arch, reward)
        for echo in self.echoes.pop(key, []):
            self.controller.tell(echo, reward)

    def _reward(self, score: float) -> float:
        if self.reward is not None:
            return float(self.reward(score))
        return score if self.objective.direction == "max" else math.exp(-score)

    def get_state(self) -> dict[str, Any]:
        return {
            **super().get_state(),
            "nas": {
                "controller": self.controller.state() if self.controller else None,
                "space_hyperparameters": self.space_hyperparameters,
                "asked": {tid: arch.to_json() for tid, arch in self.asked.items()},
                "rewards": self.rewards,
                "echoes": {key: [a.to_json() for a in archs] for key, archs in self.echoes.items()},
            },
        }

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        saved = state["nas"]
        current, self.controller = self.controller, None
        if saved["controller"] is not None:
            if self.given_space is None:
                self.space_hyperparameters = saved["space_hyperparameters"]
                self.space = space_from_hyperparameters(kt.HyperParameters.from_config(self.space_hyperparameters))
            if current is not None and current.space.fingerprint() == self.space.fingerprint():
                self.controller = current  # loaded below: REINFORCE's graphs are not traced again
            else:
                self._start()
            self.controller.load(saved["controller"])
        self.asked = {tid: self.space.from_json(a) for tid, a in saved["asked"].items()}
        self.rewards = dict(saved["rewards"])
        self.echoes = {key: [self.space.from_json(a) for a in archs] for key, archs in saved["echoes"].items()}


__all__ = [
    "ControllerOracle",
    "HyperparameterSpace",
    "from_hyperparameters",
    "from_tune_config",
    "space_from_hyperparameters",
    "to_hyperparameters",
    "to_tune_param_space",
    "to_values",
]
