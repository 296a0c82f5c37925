"""What a search maximises: validation accuracy alone, or accuracy traded against a cost (MnasNet).

    objective = Objective.parse("accuracy-params", target_params=20_000)
    reward = objective.reward({"val_accuracy": 0.98, "params": 40_000, "latency_ms": 1.2})
    # 0.98 * (40_000 / 20_000) ** -0.07 = 0.933

Tan et al. (2019) reward a model with ACC(m) x [COST(m) / T]^w: with w = -0.07 (their soft
constraint) a model twice the target loses about 5 % of its reward and one half the target gains
about 5 %, so accuracy still dominates but the controller learns to prefer cheaper children.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nas.errors import InputError

KINDS = ("accuracy", "accuracy-params", "accuracy-latency")
DEFAULT_WEIGHT = -0.07  # MnasNet's alpha = beta for a soft constraint
COST = {"accuracy-params": ("params", "target_params"), "accuracy-latency": ("latency_ms", "target_latency_ms")}


def _flag(setting: str) -> str:
    return "--" + setting.replace("_", "-")


@dataclass(frozen=True)
class Objective:
    kind: str = "accuracy"
    target: float | None = None  # parameters, or milliseconds per image (batch of 1)
    weight: float = DEFAULT_WEIGHT

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
        if kind == "accuracy":
            given = [flag for flag, value in targets.items() if value is not None]
            if given:
                raise InputError(
                    f"{given[0]}: applies to --objective accuracy-params or accuracy-latency, not to accuracy"
                )
            return cls()
        _, flag = COST[kind]
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
        """A completed child's reward from its metrics (val_accuracy, params, latency_ms)."""
        accuracy = float(metrics["val_accuracy"])
        if self.kind == "accuracy":
            return accuracy
        cost = float(metrics[COST[self.kind][0]])
        return accuracy * (max(cost, 1e-9) / self.target) ** self.weight

    def describe(self) -> str:
        if self.kind == "accuracy":
            return "validation accuracy"
        key, _ = COST[self.kind]
        return f"validation accuracy x ({key} / {self.target:g}) ^ {self.weight:g}"
