"""The reward a search maximises: a validation metric (accuracy, balanced accuracy, macro F1) alone,
or MnasNet's metric x (cost / target) ^ w."""

import pytest
from test_search_state import SPACE, Scripted

from nas.errors import InputError
from nas.objective import Objective
from nas.rundir import RunDir
from nas.search_state import Search


def test_accuracy_is_the_reward_by_default():
    assert Objective.parse("accuracy").reward({"val_accuracy": 0.9, "params": 10**6}) == 0.9


def test_mnasnet_soft_constraint_values():
    objective = Objective.parse("accuracy-params", target_params=20_000)
    at_target = objective.reward({"val_accuracy": 0.98, "params": 20_000})
    double = objective.reward({"val_accuracy": 0.98, "params": 40_000})
    half = objective.reward({"val_accuracy": 0.98, "params": 10_000})
    assert at_target == pytest.approx(0.98)
    assert double == pytest.approx(0.98 * 2**-0.07) and half == pytest.approx(0.98 * 2**0.07)
    # About 5 % either way: a cheaper child wins a close race, a far more accurate one still wins.
    assert objective.reward({"val_accuracy": 0.95, "params": 10_000}) > double
    assert objective.reward({"val_accuracy": 0.90, "params": 10_000}) < at_target
    latency = Objective.parse("accuracy-latency", target_latency_ms=2.0, weight=-0.5)
    assert latency.reward({"val_accuracy": 0.8, "latency_ms": 8.0}) == pytest.approx(0.4)


def test_a_per_class_metric_is_the_reward_alone_or_with_a_cost():
    metrics = {"val_accuracy": 0.95, "val_balanced_accuracy": 0.8, "val_macro_f1": 0.7, "params": 40_000}
    balanced = Objective.parse("balanced-accuracy")
    assert balanced.reward(metrics) == 0.8 and balanced.per_class and balanced.metric == "val_balanced_accuracy"
    assert balanced.describe() == "validation balanced accuracy"
    f1 = Objective.parse("macro-f1-params", target_params=20_000)
    assert f1.reward(metrics) == pytest.approx(0.7 * 2**-0.07) and f1.cost == "params"
    assert f1.describe() == "validation macro F1 x (params / 20000) ^ -0.07"
    assert not Objective.parse("accuracy-params", target_params=1).per_class


@pytest.mark.parametrize(
    "args, message",
    [
        (("size",), "objective: got 'size'"),
        (("accuracy", 100), "target_params: applies to an --objective with a cost"),
        (("accuracy-latency",), "objective accuracy-latency: needs --target-latency-ms"),
        (("accuracy-params", None, 2.0), "target_latency_ms: does not apply to --objective accuracy-params"),
        (("accuracy-params", 0), "target_params: got 0, expected a number > 0"),
        (("accuracy-params", 100, None, 0.1), "objective_weight: got 0.1, expected a number <= 0"),
        (("macro-f1", 100), "target_params: applies to an --objective with a cost .*, not to macro-f1"),
        (("balanced-accuracy-latency",), "objective balanced-accuracy-latency: needs --target-latency-ms"),
    ],
)
def test_bad_combinations_are_refused_naming_the_flag(args, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        Objective.parse(*args)


def test_the_search_records_and_teaches_the_objective_as_reward(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    controller = Scripted(SPACE, [0, 1])
    objective = Objective.parse("accuracy-params", target_params=100)
    search = Search(SPACE, controller, rundir, budget=2, objective=objective)
    small, large = search.next_trial(), search.next_trial()
    search.record(small, {"status": "completed", "val_accuracy": 0.90, "params": 50, "fit_seconds": 1.0})
    search.record(large, {"status": "completed", "val_accuracy": 0.91, "params": 400, "fit_seconds": 1.0})
    rewards = [r.reward for r in search.records]
    assert rewards == [pytest.approx(0.90 * 0.5**-0.07), pytest.approx(0.91 * 4**-0.07)]
    assert [r for _, r in controller.told] == rewards
    assert search.best().trial == 1  # less accurate, but an eighth of the parameters
    assert search.records[1].metrics.val_accuracy == 0.91  # the accuracy is kept beside the reward
