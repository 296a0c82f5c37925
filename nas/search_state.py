"""The search's bookkeeping, without Ray: number trials, skip duplicates, record results, teach the
controller, and keep the run directory current so that a search killed at any moment resumes with
nothing lost or repeated.

    search = Search(space, controller, rundir, budget=200)   # or Search.resume(...)
    trial = search.next_trial()            # None: nothing to run right now
    search.record(trial, {"status": "completed", "val_accuracy": 0.98, ...})

What is on disk, and when (each step is one atomic write, in this order):

    ask     -> state.json     the controller's state after the ask, and the trial among `running`
    finish  -> trials.jsonl   the trial's line, appended and fsynced
            -> state.json     the controller's state after the tell, the trial no longer running

A crash between the two writes of a finish leaves a trial that is both finished and `running`:
resuming tells the controller its reward again from the saved state, which is what the lost write
held. Trials still `running` are run again under their numbers and architectures. So with a seed,
a resumed search asks what an uninterrupted one would have asked, given the same results.

The Ray Tune searcher in `nas.tune` is a thin adapter over this class, so its logic is tested by
driving it by hand.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controllers import Controller
from controllers.base import ControllerExhausted
from nas.errors import InputError
from nas.objective import Objective
from nas.progress import duration as format_duration
from nas.run import read_trials
from nas.rundir import RunDir
from nas.trial_record import Metrics, TrialRecord
from search_spaces import Architecture, SearchSpace, SpaceError

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


def failure_reward_setting(space: SearchSpace) -> float | None:
    """The space file's `controller.failure_reward`: a number, or None for "the lowest reward so far"."""
    value = space.controller.get("failure_reward", "lowest")
    if value == "lowest":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpaceError(
            f"{space.source}: controller.failure_reward: got {value!r}, expected a finite number or 'lowest'"
        )
    return float(value)


class Search:
    def __init__(
        self,
        space: SearchSpace,
        controller: Controller,
        rundir: RunDir,
        budget: int,
        max_failures: int | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        objective: Objective | None = None,
        time_budget: float | None = None,
    ):
        self.space = space
        self.objective = objective or Objective()
        self.controller = controller
        self.rundir = rundir
        self.budget = budget
        self.max_failures = max_failures  # consecutive failed trials that stop the search
        self.fixed_failure_reward = failure_reward_setting(space)
        self.on_record = on_record
        self.records: list[TrialRecord] = []
        self.rewards: dict[Architecture, float] = {}  # every finished architecture's reward
        self.running: dict[Architecture, Trial] = {}
        self.rerun: list[Trial] = []  # trials a killed run had started: run again first, same numbers
        self.waiting: Architecture | None = None  # asked again while being trained: told once it finishes
        self.asked = 0  # trial numbers handed out
        self.duplicates = 0  # asks answered from a finished trial instead of training again
        self.consecutive_failures = 0
        self.stopped: str | None = None  # why the search stopped before its budget
        self.interrupted = False  # Ctrl-C: start nothing more; what is running stays `running`
        self.resumed_with = 0  # records that earlier sessions of a resumed search finished
        # --time-budget: seconds from now (this session) after which no child may be expected to end
        self.time_budget = time_budget
        self.deadline = None if time_budget is None else time.monotonic() + time_budget
        self.ended_by: str | None = None  # why the search asked for no more children before its budget

    @classmethod
    def resume(cls, space: SearchSpace, controller: Controller, rundir: RunDir, budget: int, **kwargs) -> Search:
        """The search as a killed or stopped run left it (see the module's docstring)."""
        search = cls(space, controller, rundir, budget, **kwargs)
        records = read_trials(rundir, repair=True, space=space)
        finished = {r.trial: r for r in records}
        for r in records:
            search._remember(r)
        if not rundir.file("state.json").exists():  # killed before its first trial was asked
            if records:
                raise InputError(
                    f"{rundir.file('state.json')}: missing, but {len(records)} trials finished; "
                    "expected the state file of the run"
                )
            return search
        state = rundir.read_saved("state.json", required=("asked", "duplicates", "running", "controller"))
        try:
            controller.load(state["controller"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(
                f"{rundir.file('state.json')}: controller: cannot be loaded ({type(e).__name__}: "
                f"{e}); expected the state this run's controller saved"
            ) from None
        search.asked, search.duplicates = state["asked"], state["duplicates"]
        search.waiting = space.from_json(state["waiting"]) if state.get("waiting") else None
        for entry in state["running"]:
            arch = space.from_json(entry["arch"])
            if entry["trial"] in finished:  # finished, but the tell's state write was lost
                controller.tell(arch, finished[entry["trial"]].reward)
            else:
                search.rerun.append(Trial(entry["trial"], arch, space.resolve(arch, searched=True)))
        unknown = set(finished) - set(range(1, search.asked + 1))
        if unknown:
            raise InputError(
                f"{rundir.file('trials.jsonl')}: trials {sorted(unknown)} were never asked "
                f"according to state.json; expected the files of one run"
            )
        search.running = {t.arch: t for t in search.rerun}
        search.resumed_with = len(records)
        search._save()
        return search

    def _remember(self, record: TrialRecord) -> None:
        self.records.append(record)
        self.rewards[self.space.from_json(record.arch)] = record.reward
        self.consecutive_failures = 0 if not record.failed else self.consecutive_failures + 1

    def _save(self) -> None:
        self.rundir.write_json(
            "state.json",
            {
                "asked": self.asked,
                "duplicates": self.duplicates,
                "waiting": self.waiting.to_json() if self.waiting else None,
                "running": [
                    {"trial": t.number, "arch": t.arch.to_json()}
                    for t in sorted(self.running.values(), key=lambda t: t.number)
                ],
                "controller": self.controller.state(),
            },
        )

    @property
    def finished(self) -> bool:
        return self.stopped is not None or (self.asked >= self.budget and not self.rerun)

    def next_trial(self) -> Trial | None:
        """The next architecture to train, or None for "not now" (the only new architectures the
        controller offers are being trained already). Raises SearchExhausted."""
        if self.stopped or self.interrupted:
            raise SearchExhausted(self.stopped or "interrupted")
        expected = self.expected_child_seconds()  # 0 until a child has finished: the first always start
        if self.deadline is not None and expected and time.monotonic() + expected > self.deadline:
            self.ended_by = f"the time budget of {format_duration(self.time_budget)} ran out"
            raise SearchExhausted(self.ended_by)
        if self.rerun:
            return self.rerun.pop(0)
        if self.asked >= self.budget:
            raise SearchExhausted(f"the budget of {self.budget} trials is spent")
        if self.waiting is not None:
            if self.waiting in self.running:
                return None  # without asking again: what is asked must not depend on how often Ray polls
            arch, self.waiting = self.waiting, None
            self._tell_duplicate(arch)
        for _ in range(MAX_CONSECUTIVE_DUPLICATES):
            try:
                arch = self.controller.ask()
            except ControllerExhausted as e:  # e.g. a Keras Tuner oracle that has tried everything
                self.ended_by = str(e)
                raise SearchExhausted(str(e)) from None
            if arch in self.rewards:  # trained already: its reward is known, so teach without training
                self._tell_duplicate(arch)
                continue
            if arch in self.running:  # being trained: wait for its reward, then teach it
                self.waiting = arch
                self._save()
                return None
            self.asked += 1
            trial = Trial(self.asked, arch, self.space.resolve(arch, searched=True))
            self.running[arch] = trial
            self._save()
            return trial
        self.ended_by = (
            f"the controller asked {MAX_CONSECUTIVE_DUPLICATES} architectures in a row "
            "that were already trained: it has converged or the space is exhausted"
        )
        raise SearchExhausted(self.ended_by)

    def expected_child_seconds(self) -> float:
        """How long the next child will likely take, start-up included: the median of the finished
        children's (0 before the first has finished: the first children always start)."""
        seconds = sorted(r.seconds for r in self.records if r.seconds is not None and r.status != "failed")
        return seconds[len(seconds) // 2] if seconds else 0.0

    def requeue(self, trial: Trial) -> None:
        """A trial that never reached a worker runs again, first, under its number."""
        if self.running.get(trial.arch) is trial:
            self.rerun.insert(0, trial)

    def _tell_duplicate(self, arch: Architecture) -> None:
        self.duplicates += 1
        self.controller.tell(arch, self.rewards[arch])
        self._save()

    def failure_reward(self) -> float:
        if self.fixed_failure_reward is not None:
            return self.fixed_failure_reward
        return min((r.reward for r in self.completed), default=0.0)

    def record(self, trial: Trial, result: dict[str, Any]) -> TrialRecord | None:
        """Writes a finished trial to disk, then tells the controller and saves its state. `result`
        is the worker's: its status and metrics (nas.trial_record.Metrics), or its error."""
        if self.running.get(trial.arch) is not trial:
            return None  # not ours to record (already recorded, or from before a resume)
        # A child stopped early (ASHA) has a reward, from its last epoch's validation accuracy.
        status = result.get("status") if result.get("status") in ("completed", "stopped") else "failed"
        rewarded = status != "failed"
        reward = self.objective.reward(result) if rewarded else self.failure_reward()
        record = TrialRecord(
            trial=trial.number,
            status=status,
            arch=trial.arch.to_json(),
            values=self.space.decode(trial.arch),
            reward=reward,
            metrics=Metrics.from_result(result) if rewarded else Metrics(),
            hash=trial.arch.key,
            error=None if rewarded else str(result.get("error") or "unknown error"),
            traceback=None if rewarded else result.get("traceback"),
            seconds=result.get("seconds"),
            node=result.get("node"),
            pid=result.get("pid"),
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self.rundir.append_trial(record.to_json())
        self._remember(record)
        del self.running[trial.arch]
        self.controller.tell(trial.arch, reward)
        self._save()
        if self.max_failures and self.consecutive_failures >= self.max_failures:
            self.stopped = (
                f"{self.consecutive_failures} trials failed in a row (--max-failures "
                f"{self.max_failures}); the last: {record.error}"
            )
        if self.on_record:
            self.on_record(record)
        return record

    @property
    def completed(self) -> list[TrialRecord]:
        return [r for r in self.records if r.completed]

    @property
    def stopped_early(self) -> list[TrialRecord]:
        return [r for r in self.records if r.status == "stopped"]

    @property
    def failed(self) -> list[TrialRecord]:
        return [r for r in self.records if r.failed]

    def best(self) -> TrialRecord | None:
        return max(self.completed, key=lambda r: (r.reward, -r.trial), default=None)
