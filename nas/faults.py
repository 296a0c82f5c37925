"""Faults injected into children on purpose, so that tests exercise real failures end to end.

Set `NAS_TEST_FAULTS` in the environment of the search (Ray's workers inherit it) to a list of
`trial:kind` pairs, e.g. `NAS_TEST_FAULTS=2:raise,3:nan,4:exit,5:slow`:

    raise   the child raises an exception before training
    nan     the child's weights become NaN during its first epoch (its loss diverges)
    exit    the worker process exits at once, as if killed (os._exit)
    slow    every training step of the child takes 5 seconds longer (for --trial-timeout)
    hang    the child hangs for an hour before training (for --trial-timeout's last resort)

`finalN:raise` and `finalN:exit` do the same to the final training of the search's N-th model, best
first (the winner, then an ensemble's other members), as it starts: `final2:raise` fails an
ensemble's second member. (A lone winner may train in nas's own process: `final1:exit` ends nas.)

Unset, nothing here does anything.
"""

from __future__ import annotations

import os
import time

ENVIRONMENT_VARIABLE = "NAS_TEST_FAULTS"
KINDS = ("raise", "nan", "exit", "slow", "hang")
INJECTED_EXIT_CODE = 13


class InjectedFault(RuntimeError):
    pass


def planned(trial: int | str) -> str | None:
    for item in os.environ.get(ENVIRONMENT_VARIABLE, "").split(","):
        number, _, kind = item.strip().partition(":")
        if number == str(trial):
            if kind not in KINDS:
                raise ValueError(f"{ENVIRONMENT_VARIABLE}: unknown fault {kind!r}, expected one of {', '.join(KINDS)}")
            return kind
    return None


def inject(trial: int) -> list:
    """Carries out the fault planned for this trial, if any; returns the Keras callbacks it needs."""
    kind = planned(trial)
    if kind == "raise":
        raise InjectedFault(f"fault injected into trial {trial}")
    if kind == "exit":
        os._exit(INJECTED_EXIT_CODE)
    if kind == "hang":
        time.sleep(3600)
    if kind == "nan":
        return [_poison_weights()]
    if kind == "slow":
        return [_slow_steps()]
    return []


def inject_final(rank: int) -> None:
    """Carries out the fault planned for the final training of the `rank`-th model (1 the winner)."""
    kind = planned(f"final{rank}")
    if kind == "raise":
        raise InjectedFault(f"fault injected into final training {rank}")
    if kind == "exit":
        os._exit(INJECTED_EXIT_CODE)
    if kind is not None:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}: final{rank}:{kind}: a final training takes raise or exit")


def _poison_weights():
    import keras
    import numpy as np

    class PoisonWeights(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                for variable in self.model.trainable_variables:
                    variable.assign(np.full(variable.shape, np.nan, dtype=variable.dtype))

    return PoisonWeights()


def _slow_steps():
    import keras

    class SlowSteps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(5)

    return SlowSteps()
