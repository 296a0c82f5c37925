"""What a search maximises: a validation metric alone, or traded against a cost (MnasNet).

    objective = Objective.parse("accuracy-params", target_params=20_000)
    reward = objective.reward({"val_accuracy": 0.98, "params": 40_000, "latency_ms": 1.2})
    # 0.98 * (40_000 / 20_000) ** -0.07 = 0.933

An objective is METRIC or METRIC-COST. The metric, on the validation split: `accuracy`,
`balanced-accuracy` (the mean of the classes' recalls) or `macro-f1` (the mean of their F1 scores);
the latter two do not let a common class hide a rare one that the model never gets right. The cost:
`params` or `latency`. Tan et al. (2019) reward a model with ACC(m) x [COST(m) / T]^w: with w =
-0.07 (their soft constraint) a model twice the target loses about 5 % of its reward and one half
the target gains about 5 %, so the metric still dominates but the controller learns to prefer
cheaper children.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas.errors import InputError

# The metric's key in a child's metrics (nas.trainer), and how it reads.
METRICS = {
    "accuracy": ("val_accuracy", "validation accuracy"),
    "balanced-accuracy": ("val_balanced_accuracy", "validation balanced accuracy"),
    "macro-f1": ("val_macro_f1", "validation macro F1"),
}
# A cost: its key in a child's metrics and the setting that gives its target.
COSTS = {"params": ("params", "target_params"), "latency": ("latency_ms", "target_latency_ms")}
KINDS = tuple(f"{metric}{f'-{cost}' if cost else ''}" for cost in ("", *COSTS) for metric in METRICS)
DEFAULT_WEIGHT = -0.07  # MnasNet's alpha = beta for a soft constraint


def _flag(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def split_kind(kind: str) -> tuple[str, str | None]:
    """(metric, cost or None) of an objective's name: "macro-f1-params" -> ("macro-f1", "params")."""
    for cost in COSTS:
        if kind.endswith(f"-{cost}"):
            return kind[: -len(cost) - 1], cost
    return kind, None


@dataclass(frozen=True)
class Objective:
    kind: str = "accuracy"
    target: float | None = None  # parameters, or milliseconds per image (batch of 1)
    weight: float = DEFAULT_WEIGHT

    @property
    def metric(self) -> str:
        """The key of the validation metric in a child's metrics (and its epoch reports)."""
        return METRICS[split_kind(self.kind)[0]][0]

    @property
    def cost(self) -> str | None:
        """The key of the cost in a child's metrics, or None."""
        cost = split_kind(self.kind)[1]
        return COSTS[cost][0] if cost else None

    @property
    def per_class(self) -> bool:
        """Whether children must measure per-class metrics on the validation split each epoch."""
        return self.metric != "val_accuracy"

    @classmethod
    def parse(
        cls,
        kind: str,
        target_params: float | None = None,
        target_latency_ms: float | None = None,
        weight: float = DEFAULT_WEIGHT,
    ) -> Objective:
        """Checks the combination of --objective and its target; one-line errors naming the flag."""
        if kind not in KINDS:
            raise InputError(f"objective: got {kind!r}, expected one of {', '.join(KINDS)}")
        targets = {"target_params": target_params, "target_latency_ms": target_latency_ms}
        metric, cost = split_kind(kind)
        if cost is None:
            given = [flag for flag, value in targets.items() if value is not None]
            if given:
                raise InputError(
                    f"{given[0]}: applies to an --objective with a cost (accuracy-params or accuracy-latency, "
                    f"say), not to {kind}"
                )
            return cls(kind)
        _, flag = COSTS[cost]
        other = next(f for f in targets if f != flag)
        if targets[other] is not None:
            raise InputError(f"{other}: does not apply to --objective {kind}; expected {_flag(flag)}")
        target = targets[flag]
        if target is None:
            raise InputError(f"objective {kind}: needs {_flag(flag)}, the cost a child should aim at")
        if not (math.isfinite(target) and target > 0):
            raise InputError(f"{flag}: got {target}, expected a number > 0")
        if not (math.isfinite(weight) and weight <= 0):
            raise InputError(f"objective_weight: got {weight}, expected a number <= 0 (MnasNet: -0.07)")
        return cls(kind, float(target), float(weight))

    def reward(self, metrics: Mapping[str, Any]) -> float:
        """A completed child's reward from its metrics (its validation metric, params, latency_ms)."""
        value = float(metrics[self.metric])
        if self.cost is None:
            return value
        return value * (max(float(metrics[self.cost]), 1e-9) / self.target) ** self.weight

    def describe(self) -> str:
        name = METRICS[split_kind(self.kind)[0]][1]
        if self.cost is None:
            return name
        return f"{name} x ({self.cost} / {self.target:g}) ^ {self.weight:g}"
