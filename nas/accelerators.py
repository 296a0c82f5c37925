"""How a child trains on the hardware its trial was given: the distribution strategy, the dtype
policy, steps per execution and the batch size, chosen from the search's flags by one function.

    plan = choose(gpus=2, tpu=None, mixed_precision="float16")   # MirroredStrategy, mixed_float16
    with training_scope(plan) as strategy:                          # in the worker, per child
        model = build_model(...); model.compile(..., steps_per_execution=plan.steps_per_execution)

The course's TPU recipe: TPUStrategy from a TPUClusterResolver, the bfloat16 policy, many steps per
execution, a batch size that is a multiple of 8 x cores, and the final softmax in float32 (the
builder makes the classifier float32 whatever the policy). A model trained in mixed precision keeps
float32 variables; `float32_copy` rebuilds it with the float32 policy for export, so that it loads
and predicts on a CPU or GPU with no TPU present ("TPU off for inference").
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

from nas.errors import InputError

PRECISIONS = ("off", "float16", "bfloat16")
POLICIES = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
TPU_STEPS_PER_EXECUTION = 32  # the course's setting: one host round trip per 32 steps
TPU_BATCH_MULTIPLE = 8  # per TPU core: a TPU core multiplies matrices in tiles of 8 x 128


@dataclass(frozen=True)
class Plan:
    strategy: str  # "default" (CPU or one GPU), "mirrored" (several GPUs) or "tpu"
    policy: str  # Keras dtype policy: float32, mixed_float16 or mixed_bfloat16
    steps_per_execution: int = 1
    tpu: str | None = None  # TPUClusterResolver's tpu argument: "local" on a TPU VM, or a name/address

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "policy": self.policy,
            "steps_per_execution": self.steps_per_execution,
            "tpu": self.tpu,
        }


CPU = Plan("default", "float32")


def choose(gpus: float = 0, tpu: str | None = None, mixed_precision: str | None = None) -> Plan:
    """The plan for a trial's resources and the --mixed-precision flag (None: the default, which is
    bfloat16 on a TPU and off elsewhere). Raises InputError for a combination that cannot work."""
    if mixed_precision is not None and mixed_precision not in PRECISIONS:
        raise InputError(f"mixed_precision: got {mixed_precision!r}, expected one of {', '.join(PRECISIONS)}")
    if tpu:
        if gpus:
            raise InputError("tpu: given with --gpus-per-trial, expected one kind of accelerator per trial")
        if mixed_precision == "float16":
            raise InputError("mixed_precision: float16 on a TPU, expected bfloat16 (TPUs compute in bfloat16) or off")
        precision = mixed_precision or "bfloat16"
        return Plan("tpu", POLICIES[precision], TPU_STEPS_PER_EXECUTION, tpu)
    precision = mixed_precision or "off"
    if precision == "float16" and not gpus:
        raise InputError(
            "mixed_precision: float16 without GPUs, expected --gpus-per-trial N (CPUs have no fast "
            "float16), or bfloat16 or off"
        )
    return Plan("mirrored" if gpus > 1 else "default", POLICIES[precision])


_STRATEGIES: dict[Plan, Any] = {}  # per worker process: a TPU system is initialised once


def strategy(plan: Plan):
    """The tf.distribute strategy of a plan, made once per process."""
    if plan not in _STRATEGIES:
        import tensorflow as tf

        if plan.strategy == "tpu":
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=plan.tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            _STRATEGIES[plan] = tf.distribute.TPUStrategy(resolver)
        elif plan.strategy == "mirrored":
            _STRATEGIES[plan] = tf.distribute.MirroredStrategy()
        else:
            _STRATEGIES[plan] = tf.distribute.get_strategy()
    return _STRATEGIES[plan]


@contextlib.contextmanager
def training_scope(plan: Plan):
    """Sets the plan's dtype policy and enters its strategy's scope; yields the strategy. The policy
    is set back to float32 afterwards, so nothing else in the process inherits it."""
    import keras

    keras.mixed_precision.set_global_policy(plan.policy)
    try:
        chosen = strategy(plan)
        with chosen.scope():
            yield chosen
    finally:
        keras.mixed_precision.set_global_policy("float32")


def batch_size(requested: int, plan: Plan, replicas: int) -> int:
    """The global batch: on a TPU rounded up to a multiple of 8 x cores; elsewhere as requested (a
    MirroredStrategy splits it between its GPUs)."""
    if plan.strategy != "tpu":
        return requested
    multiple = TPU_BATCH_MULTIPLE * replicas
    return max(multiple, math.ceil(requested / multiple) * multiple)


def float32_copy(model, build):
    """`model` as a float32 model: `build()` makes the same architecture under the float32 policy
    and gets the trained weights (mixed precision keeps its variables in float32 already)."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    keras.mixed_precision.set_global_policy("float32")
    copy = build()
    copy.set_weights(model.get_weights())
    return copy
