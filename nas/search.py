"""The search's bookkeeping, without Ray: number trials, skip duplicates, record results, teach the
controller, and keep the run directory current.

    search = Search(space, controller, rundir, budget=200)
    trial = search.next_trial()            # None: nothing to run right now
    search.record(trial, {"status": "completed", "val_accuracy": 0.98, ...})

The Ray Tune searcher in `nas.tune` is a thin adapter over this class, so its logic is tested by
driving it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from controllers import Controller
from nas.rundir import RunDir
from search_spaces import Architecture, SearchSpace

# Asks in a row that return architectures already trained before the space counts as exhausted (or
# the controller as converged), as Keras Tuner's oracles do.
MAX_CONSECUTIVE_DUPLICATES = 200


class SearchExhausted(Exception):
    """The controller keeps asking for architectures that were already trained."""


@dataclass(frozen=True)
class Trial:
    number: int  # 1, 2, ... in the order trials were asked for
    arch: Architecture
    spec: dict[str, Any]  # the resolved child, as the builder reads it


class Search:
    def __init__(self, space: SearchSpace, controller: Controller, rundir: RunDir, budget: int,
                 failure_reward: float = 0.0, on_record: Callable[[dict[str, Any]], None] | None = None):
        self.space = space
        self.controller = controller
        self.rundir = rundir
        self.budget = budget
        self.failure_reward = failure_reward
        self.on_record = on_record
        self.records: list[dict[str, Any]] = []
        self.rewards: dict[Architecture, float] = {}  # every finished architecture's reward
        self.running: dict[Architecture, Trial] = {}
        self.asked = 0  # trial numbers handed out
        self.duplicates = 0  # asks answered from a finished trial instead of training again

    def next_trial(self) -> Trial | None:
        """The next architecture to train, or None for "not now" (the only new architectures the
        controller offers are being trained already). Raises SearchExhausted."""
        if self.asked >= self.budget:
            raise SearchExhausted(f"the budget of {self.budget} trials is spent")
        for _ in range(MAX_CONSECUTIVE_DUPLICATES):
            arch = self.controller.ask()
            if arch in self.rewards:  # trained already: its reward is known, so teach without training
                self.duplicates += 1
                self.controller.tell(arch, self.rewards[arch])
                self.rundir.write_json("controller.json", self.controller.state())
                continue
            if arch in self.running:
                return None
            self.asked += 1
            trial = Trial(self.asked, arch, self.space.resolve(arch))
            self.running[arch] = trial
            return trial
        raise SearchExhausted(f"the controller asked {MAX_CONSECUTIVE_DUPLICATES} architectures in a row "
                              "that were already trained: it has converged or the space is exhausted")

    def record(self, trial: Trial, result: dict[str, Any]) -> dict[str, Any]:
        """Writes a finished trial to disk, then tells the controller and saves its state."""
        self.running.pop(trial.arch, None)
        completed = result.get("status") == "completed"
        reward = float(result["val_accuracy"]) if completed else self.failure_reward
        metrics = {k: v for k, v in result.items() if k not in ("status", "error", "traceback", "seconds", "node", "pid")}
        record = {
            "trial": trial.number,
            "status": "completed" if completed else "failed",
            "arch": trial.arch.to_json(),
            "hash": trial.arch.key,
            "values": self.space.decode(trial.arch),
            "reward": reward,
            "metrics": metrics if completed else {},
            "error": None if completed else result.get("error") or "unknown error",
            "traceback": None if completed else result.get("traceback"),
            "seconds": result.get("seconds"),
            "node": result.get("node"),
            "pid": result.get("pid"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self.rundir.append_trial(record)
        self.records.append(record)
        self.rewards[trial.arch] = reward
        self.controller.tell(trial.arch, reward)
        self.rundir.write_json("controller.json", self.controller.state())
        if self.on_record:
            self.on_record(record)
        return record

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "completed"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "failed"]

    def best(self) -> dict[str, Any] | None:
        return max(self.completed, key=lambda r: (r["reward"], -r["trial"]), default=None)

