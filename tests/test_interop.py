"""Keras Tuner and Ray Tune interop: space conversions, KT's oracles as nas controllers (driven by
hand, no training), and a nas controller as a KT oracle under a real `keras_tuner.Tuner`."""

import json

import numpy as np
import pytest

from controllers import make_controller
from nas.rundir import RunDir
from nas.search_state import Search, SearchExhausted
from search_spaces import SpaceError, builtin_names, load_space, parse_space
from search_spaces.interop import (
    from_hyperparameters,
    from_tune_config,
    space_from_hyperparameters,
    to_hyperparameters,
    to_tune_param_space,
    to_values,
)

kt = pytest.importorskip("keras_tuner")

TINY = parse_space("family: dense\nlayers: 1\nlayer: {units: [8, 16, 32]}\n", source="tiny.yaml")


def sample(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.architecture([rng.integers(len(d.choices)) for d in space.decisions]) for _ in range(n)]


# -- conversions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_space_round_trips_through_keras_tuner_and_tune(name):
    space = load_space(name)
    hp = to_hyperparameters(space)
    assert [h.name for h in hp.space] == [d.name for d in space.decisions]
    for h, d in zip(hp.space, space.decisions):
        assert set(h.values) == set(d.choices)  # a Choice, or a Boolean for true/false decisions
    params = to_tune_param_space(space)
    assert {k: v.categories for k, v in params.items()} == {d.name: list(d.choices) for d in space.decisions}
    rng = np.random.default_rng(1)
    for arch in sample(space, 40):
        values = json.loads(json.dumps(to_values(space, arch)))  # as KT writes trial.json
        assert from_hyperparameters(space, values) == arch
        trial_hp = hp.copy()
        trial_hp.values = values
        active = space.active(arch.choices)
        # KT's conditions agree with the space on which decisions have an effect.
        assert [trial_hp.is_active(d.name) for d in space.decisions] == active
        assert set(values) == {d.name for d, a in zip(space.decisions, active) if a}
        # Tune samples every decision, inactive ones too: they are dropped on the way back.
        config = {
            d.name: d.choices[c if a else rng.integers(len(d.choices))]
            for d, c, a in zip(space.decisions, arch.choices, active)
        }
        assert from_tune_config(space, config) == arch


def test_layers_beyond_the_chosen_depth_are_conditional_in_keras_tuner():
    space = load_space("dnn")  # layers: [1, 2, 3]
    hp = {h.name: h for h in to_hyperparameters(space).space}
    assert hp["layer0.units"].conditions == []
    assert [c.get_config() for c in hp["layer1.units"].conditions] == [{"name": "layers", "values": [2, 3]}]
    assert [c.get_config() for c in hp["layer2.dropout"].conditions] == [{"name": "layers", "values": [3]}]
    arch = from_hyperparameters(
        space,
        {"layers": 1, "training.learning_rate": 0.003, "layer0.units": 64, "layer0.dropout": 0.5, "tuner/epochs": 3},
    )
    assert space.decode(arch) == {
        "layers": 1,
        "training.learning_rate": 0.003,
        "layer0.units": 64,
        "layer0.dropout": 0.5,
    }


def test_values_that_are_not_the_spaces_are_refused_in_one_line():
    space = load_space("linear")
    good = {"l2": 0.0, "training.learning_rate": 0.001, "training.batch_size": 32}
    with pytest.raises(
        SpaceError,
        match=r"^space linear: hyperparameters: l2: got 0.5, expected one of 0.0, "
        r"0.0001, 0.001$",
    ):
        from_hyperparameters(space, {**good, "l2": 0.5})
    with pytest.raises(
        SpaceError,
        match=r"^space linear: config: missing 'training.batch_size', expected a value "
        r"for every decision that has an effect",
    ):
        from_tune_config(space, {"l2": 0.0, "training.learning_rate": 0.001})
    with pytest.raises(SpaceError, match=r"^space linear: config: unknown decision 'units', expected names"):
        from_tune_config(space, {**good, "units": 3})
    assert from_tune_config(space, {**good, "units": 3}, ignore_unknown=True) == space.architecture([0, 1, 0])
    with pytest.raises(SpaceError, match=r"training.batch_size: got True, expected one of 32, 128"):
        from_hyperparameters(space, {**good, "training.batch_size": True})


def test_keras_tuner_hyperparameters_become_a_space_with_their_conditions():
    hp = kt.HyperParameters()
    hp.Choice("model", ["linear", "mlp"])
    hp.Fixed("classes", 10)
    with hp.conditional_scope("model", ["mlp"]):
        hp.Int("block/units", 16, 64, step=16)
        hp.Boolean("block/norm")
    hp.Float("lr", 1e-4, 1e-2, step=10, sampling="log")
    space = space_from_hyperparameters(hp)
    assert [(d.name, d.choices) for d in space.decisions] == [
        ("model", ("linear", "mlp")),
        ("block/units", (16, 32, 48, 64)),
        ("block/norm", (False, True)),
        ("lr", pytest.approx((1e-4, 1e-3, 1e-2))),
    ]
    assert space.active([0, 3, 1, 2]) == [True, False, False, True]
    assert space.architecture([0, 3, 1, 2]) == space.architecture([0, 0, 0, 2])  # canonical, as KT hashes it
    hp.Float("momentum", 0.0, 0.9)
    with pytest.raises(SpaceError, match=r"^hyperparameters: momentum: a Float without a step has no finite list"):
        space_from_hyperparameters(hp)


# -- Keras Tuner's oracles as controllers ---------------------------------------------------------------


def reward_of(arch):
    return 0.5 + 0.05 * float(np.mean(arch.choices))


@pytest.mark.parametrize("name", ["kt-random", "kt-bayesian", "kt-hyperband"])
def test_each_keras_tuner_oracle_runs_three_trials_asynchronously(name):
    space = load_space("dnn")
    # kt-bayesian: the first two at random (nothing finished yet), the third from the Gaussian process.
    overrides = {"num_initial_points": 1} if name == "kt-bayesian" else None
    controller = make_controller(name, space, seed=0, overrides=overrides)
    first, second = controller.ask(), controller.ask()  # two children at once, as Ray runs them
    controller.tell(second, reward_of(second))  # results arrive in any order
    controller.tell(first, reward_of(first))
    third = controller.ask()
    controller.tell(third, reward_of(third))
    archs = [first, second, third]
    assert len(set(archs)) == 3
    trials = list(controller.oracle.trials.values())
    assert [t.status for t in trials] == ["COMPLETED"] * 3
    assert [t.score for t in trials] == [reward_of(a) for a in archs]
    assert controller.pending == [] and controller.oracle.ongoing_trials == {}
    assert (controller.oracle.last_fit is not None) if name == "kt-bayesian" else True
    json.dumps(controller.state())
    assert (
        controller.settings_json()["oracle"]
        == {
            "kt-random": "RandomSearchOracle",
            "kt-bayesian": "BayesianOptimizationOracle",
            "kt-hyperband": "HyperbandOracle",
        }[name]
    )
    with pytest.raises(ValueError, match="was not asked for or was told already"):
        controller.tell(third, 0.5)


def run(controller, n):
    archs = []
    for _ in range(n):
        arch = controller.ask()
        controller.tell(arch, reward_of(arch))
        archs.append(arch)
    return archs


def test_kt_random_state_round_trip_continues_exactly():
    space = load_space("dnn")
    uninterrupted = make_controller("kt-random", space, seed=1)
    run(uninterrupted, 5)
    outstanding = [uninterrupted.ask(), uninterrupted.ask()]  # running when the search was killed
    saved = json.loads(json.dumps(uninterrupted.state()))  # through JSON, as on disk
    resumed = make_controller("kt-random", space, seed=99)
    resumed.load(saved)
    for controller in (uninterrupted, resumed):
        for arch in outstanding:
            controller.tell(arch, reward_of(arch))
    assert run(resumed, 6) == run(uninterrupted, 6)
    assert resumed.state() == uninterrupted.state()
    assert run(make_controller("kt-random", space, seed=2), 3) != run(make_controller("kt-random", space, seed=1), 3)


def test_kt_bayesian_loads_and_continues_without_repeating_what_it_was_told():
    space = load_space("linear")  # 24 architectures
    # Random phase: 8 told before the save and 8 after, none twice (by chance: 1 in 700).
    first = make_controller("kt-bayesian", space, seed=0, overrides={"num_initial_points": 30})
    told = run(first, 8)
    resumed = make_controller("kt-bayesian", space, seed=0, overrides={"num_initial_points": 30})
    resumed.load(json.loads(json.dumps(first.state())))
    assert len(set(told + run(resumed, 8))) == 16
    # Gaussian-process phase (each proposal costs about 0.5 s of CPU, the third one 10 s: two here).
    settings = {"num_initial_points": 2}
    uninterrupted = make_controller("kt-bayesian", space, seed=0, overrides=settings)
    told = run(uninterrupted, 3)  # two random, one from the process
    resumed = make_controller("kt-bayesian", space, seed=0, overrides=settings)
    resumed.load(json.loads(json.dumps(uninterrupted.state())))
    after = run(resumed, 1)
    assert after[0] not in told
    assert after == run(uninterrupted, 1)  # the process is refitted on load: it continues exactly


def search_by_hand(tmp_path, controller, budget, space=TINY):
    """Runs `budget` trials through nas's search (no training): each finishes as soon as it starts."""
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    search = Search(space, controller, rundir, budget)
    while True:
        try:
            trial = search.next_trial()
        except SearchExhausted as e:
            return search, str(e)
        search.record(trial, {"status": "completed", "val_accuracy": reward_of(trial.arch), "params": 1})


@pytest.mark.parametrize(
    "name, oracle", [("kt-random", "RandomSearchOracle"), ("kt-bayesian", "BayesianOptimizationOracle")]
)
def test_an_exhausted_keras_tuner_oracle_ends_the_search(tmp_path, name, oracle):
    # kt-bayesian: one at random, then the Gaussian process, which proposes tried ones here and then
    # falls back on an untried one at random.
    overrides = {"num_initial_points": 1} if name == "kt-bayesian" else None
    search, reason = search_by_hand(tmp_path, make_controller(name, TINY, seed=0, overrides=overrides), budget=10)
    assert len(search.records) == 3 == TINY.size()  # every architecture once, then the oracle has none left
    assert search.duplicates == 0
    assert reason.startswith(f"Keras Tuner's {oracle} has no untried configuration left")


def test_kt_hyperband_promotions_are_answered_from_the_records(tmp_path):
    """Every child trains for the same epochs, so a configuration Hyperband promotes to its next
    round is one nas trained already: the search tells its reward without training it again."""
    space = load_space("dnn")  # search_epochs 5: brackets of 5 then 2 promoted, then 3
    controller = make_controller("kt-hyperband", space, seed=0)
    search, reason = search_by_hand(tmp_path, controller, budget=8, space=space)
    assert reason == "the budget of 8 trials is spent"
    archs = [r.arch["choices"] for r in search.records]
    assert len(archs) == 8 and len({tuple(a) for a in archs}) == 8
    assert search.duplicates == 2
    promoted = [t for t in controller.oracle.trials.values() if "tuner/trial_id" in t.hyperparameters.values]
    assert len(promoted) == 2 and all(t.status == "COMPLETED" for t in promoted)


def test_keras_tuner_controller_settings_are_checked():
    with pytest.raises(SpaceError, match=r"controller.factor: got 1, expected an integer >= 2"):
        make_controller("kt-hyperband", TINY, overrides={"factor": 1})
    with pytest.raises(SpaceError, match=r"controller.beta: unknown setting"):
        make_controller("kt-random", TINY, overrides={"beta": 1.0})


# -- a nas controller as a Keras Tuner oracle -------------------------------------------------------------


def test_a_controller_oracle_runs_each_configuration_once_then_stops(tmp_path):
    """Driven as a Tuner drives it: create, update, end. The random controller keeps asking for the
    three architectures of TINY; repeats are told their reward without a trial, then KT hears STOPPED."""
    from nas.interop import ControllerOracle

    oracle = ControllerOracle(TINY, controller="random", objective=kt.Objective("score", "max"), max_trials=10)
    oracle._set_project_dir(str(tmp_path), "tiny")  # a Tuner does this
    while (trial := oracle.create_trial("tuner0")).status == "RUNNING":
        arch = from_hyperparameters(TINY, trial.hyperparameters.values)
        oracle.update_trial(trial.trial_id, {"score": reward_of(arch)})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert trial.status == "STOPPED"
    assert sorted(t.hyperparameters.values["layer0.units"] for t in oracle.trials.values()) == [8, 16, 32]
    assert sorted(oracle.rewards.values()) == sorted(reward_of(TINY.architecture([i])) for i in range(3))


def test_reinforce_as_a_keras_tuner_oracle_with_a_hand_written_hypermodel(tmp_path):
    import keras
    from sklearn.datasets import load_digits

    from nas.interop import ControllerOracle

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype("float32")

    def build(hp):
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(hp.Choice("units", [8, 16, 32]), activation="relu"),
                keras.layers.Dropout(hp.Choice("dropout", [0.0, 0.25])),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [0.003, 0.01])),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            run_eagerly=True,
        )  # a few steps: cheaper than tracing each trial's model
        return model

    def tuner(trials):
        oracle = ControllerOracle(controller="reinforce", objective="val_accuracy", max_trials=trials, seed=0)
        return kt.Tuner(oracle=oracle, hypermodel=build, directory=tmp_path, project_name="digits")

    keras.utils.set_random_seed(0)

    first = tuner(3)
    first.search(x[:500], y[:500], validation_data=(x[1500:], y[1500:]), epochs=1, batch_size=128, verbose=0)
    oracle = first.oracle
    trials = list(oracle.trials.values())
    assert len(trials) == 3 and all(t.status == "COMPLETED" for t in trials)
    assert [d.name for d in oracle.space.decisions] == ["units", "dropout", "learning_rate"]
    told = [u["mean_reward"] for u in oracle.controller.updates()]  # REINFORCE updates after every child
    assert told == pytest.approx([t.score for t in trials])
    best = first.get_best_hyperparameters()[0].values
    assert best["units"] in (8, 16, 32) and best["learning_rate"] in (0.003, 0.01)
    assert best == max(trials, key=lambda t: t.score).hyperparameters.values
    # Keras Tuner's own resume: a new tuner on the project reloads the oracle, controller included.
    assert tuner(4).oracle.controller.state() == oracle.controller.state()
