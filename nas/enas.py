"""The weight-sharing phase of `nas search --strategy enas` (ENAS, Pham et al. 2018).

    settings = read_settings(space)                  # the space file's weight_sharing: section
    controller = make_enas_controller("reinforce", space, settings, seed=0)
    phase = SupernetPhase(space, arrays, input_shape, num_classes, settings, controller, seed=0)
    record = phase.train_epoch()                     # one epoch; phase.to_bytes() saves the state
    finalists = phase.finalists()                    # [(architecture, shared-weight accuracy), ...]

In a search, `search_supernet` runs the epochs, writes the checkpoint after each and the finalists.

Each supernet epoch takes one pass over the training split, a freshly sampled architecture per
batch, then `controller_steps` policy updates of `samples_per_step` architectures each, every one
rewarded by its accuracy with the shared weights on one validation batch. With the random
controller the paths are uniform and the policy learns nothing (Single-Path One-Shot; Li &
Talwalkar's random search with weight sharing). Then `candidates` distinct architectures are drawn
from the trained policy, each one's batch normalisation is recalibrated on training images and it
is scored on the whole validation split; the best `finalists` go on to be trained from scratch as
ordinary children. The state is saved atomically after every epoch: a killed run goes on from its
last finished epoch and asks what it would have asked.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from controllers import Controller, make_controller
from controllers.reinforce import PLAIN_REINFORCE
from nas.trial_record import TrialRecord
from search_spaces import Architecture, SearchSpace, SpaceError

# The ENAS code's controller (melodyguan/enas, the macro search; ../REFERENCES in the docs): they
# replace the space's own `controller:` settings, which suit a stand-alone search of a few hundred
# children; the space's `weight_sharing.controller` overrides them in turn.
ENAS_CONTROLLER = {
    "hidden_size": 64,
    "lstm_layers": 1,
    "learning_rate": 0.001,
    "tanh_constant": 1.5,
    "temperature": 1.0,
    "entropy_weight": 1e-4,
    "baseline_decay": 0.99,
    "skip_target": 0.4,
    "skip_weight": 0.8,
    "reward_power": 1.0,
    **PLAIN_REINFORCE,  # on every sampled path, repeats included, from the first
}


CONTROLLERS = ("reinforce", "random")  # those that can sample the supernet's paths as it trains


class SupernetDiverged(RuntimeError):
    """The supernet's loss became NaN or infinite; its last checkpoint is intact."""


class CheckpointMismatch(ValueError):
    """A checkpoint that another space, other settings or another version of the supernet wrote."""


@dataclass
class EnasSettings:
    """The `weight_sharing:` section of a space file; the defaults suit 4,000 small images on 2 cores."""

    supernet_epochs: int = 10  # passes over the training split with shared weights
    # The supernet's own batch and Adam learning rate (under the space's schedule over all its steps),
    # not the space's: each shared weight trains on few of the steps, so the supernet wants more,
    # larger steps than one child does (cnn10, 10 epochs on random paths: children's shared-weight
    # accuracy .68 at 32 and 0.01, .73 at 32 and 0.02, against .34 at cnn10's 64 and 0.002;
    # benchmarks/RESULTS.md, "Weight sharing").
    batch_size: int = 32
    learning_rate: float = 0.02
    controller_steps: int = 10  # policy updates after each epoch (ENAS: 50)
    samples_per_step: int = 10  # architectures per update, each rewarded on one validation batch (ENAS: 20)
    validation_batch: int = 128  # images in that batch
    candidates: int = 100  # drawn from the trained policy and scored on the whole validation split
    finalists: int = 4  # the best candidates, trained from scratch as ordinary children
    recalibration_batches: int = 10  # training batches that set a candidate's batch-norm statistics
    # Each step also trains the sampled path with every layer at its widest (the sandwich rule's
    # largest child, Yu & Huang 2019): a wide child's extra filters are the tail of a shared prefix,
    # trained only when a wide choice is sampled, so shared weights otherwise rank wide children low.
    train_widest: bool = True
    controller: dict = dataclasses.field(default_factory=dict)  # REINFORCE settings over ENAS_CONTROLLER

    def check(self) -> str | None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and not value > 0:
                return f"{f.name}: got {value}, expected a number > 0"
            if f.type == "int" and value < 1:
                return f"{f.name}: got {value}, expected an integer >= 1"
        if self.finalists > self.candidates:
            return f"finalists: got {self.finalists}, expected at most the {self.candidates} candidates"
        return None


def read_settings(space: SearchSpace, overrides: Mapping[str, Any] | None = None) -> EnasSettings:
    """The space file's `weight_sharing:` section with `overrides` over it; errors name the file and field."""
    fields = {f.name: f for f in dataclasses.fields(EnasSettings)}
    values = {}
    for key, value in {**space.weight_sharing, **(overrides or {})}.items():
        where = f"{space.source}: weight_sharing.{key}"
        if key not in fields:
            raise SpaceError(f"{where}: unknown setting, expected one of {', '.join(fields)}")
        kind = fields[key].type  # a string: the module postpones its annotations
        if kind == "dict":
            if not isinstance(value, dict):
                raise SpaceError(f"{where}: got {value!r}, expected a mapping of REINFORCE settings")
        elif kind == "bool":
            if not isinstance(value, bool):
                raise SpaceError(f"{where}: got {value!r}, expected true or false")
        elif isinstance(value, bool) or not isinstance(value, (int, float) if kind == "float" else int):
            expected = "a number > 0" if kind == "float" else "an integer"
            raise SpaceError(f"{where}: got {value!r}, expected {expected}")
        values[key] = float(value) if kind == "float" else value
    settings = EnasSettings(**values)
    problem = settings.check()
    if problem:
        raise SpaceError(f"{space.source}: weight_sharing.{problem}")
    return settings


def _controller_overrides(settings: EnasSettings) -> dict[str, Any]:
    return {**ENAS_CONTROLLER, "batch_size": settings.samples_per_step, **settings.controller}


def make_enas_controller(name: str, space: SearchSpace, settings: EnasSettings, seed: int = 0) -> Controller:
    """The controller that samples the supernet's paths: REINFORCE with the ENAS code's settings, or
    uniform paths ("random"). Other controllers learn from trained children only."""
    if name not in CONTROLLERS:
        raise ValueError(f"got controller {name!r}, expected one of {', '.join(CONTROLLERS)}")
    return make_controller(
        name, space, seed=seed, overrides=_controller_overrides(settings) if name == "reinforce" else None
    )


def controller_settings(name: str, space: SearchSpace, settings: EnasSettings) -> dict[str, Any]:
    """The resolved settings of the phase's controller, for config.json (without building it)."""
    if name != "reinforce":
        return {}
    from controllers.base import read_settings as read_controller_settings
    from controllers.evolution import EvolutionSettings
    from controllers.reinforce import ReinforceSettings

    return dataclasses.asdict(
        read_controller_settings(
            ReinforceSettings, space, _controller_overrides(settings), shared_with=(EvolutionSettings,)
        )
    )


class SupernetPhase:
    def __init__(
        self,
        space: SearchSpace,
        arrays: Mapping[str, np.ndarray],
        input_shape,
        num_classes: int,
        settings: EnasSettings,
        controller: Controller,
        seed: int = 0,
    ):
        import keras

        from nas.supernet import ConvSupernet

        training = space.fixed["training"]
        self.space, self.settings, self.controller, self.seed = space, settings, controller, seed
        self.x_train, self.y_train = arrays["x_train"], arrays["y_train"]
        self.x_val, self.y_val = arrays["x_val"], arrays["y_val"]
        self.batch_size = settings.batch_size
        learning_rate = settings.learning_rate
        self.steps_per_epoch = math.ceil(len(self.y_train) / self.batch_size)
        # The space's schedule over all the supernet's steps, as nas.trainer.make_optimizer's over a child's
        self.learning_rate = (
            keras.optimizers.schedules.CosineDecay(
                learning_rate, decay_steps=self.steps_per_epoch * settings.supernet_epochs
            )
            if training["schedule"] == "cosine"
            else lambda step: learning_rate
        )
        self.net = ConvSupernet(space, tuple(input_shape), num_classes, seed=seed, learning_rate=learning_rate)
        self.rng = np.random.default_rng([seed, 21])
        self.epoch = 0  # finished epochs
        self.history: list[dict[str, Any]] = []  # one record per finished epoch

    # -- training --------------------------------------------------------------------------------

    def train_epoch(self) -> dict[str, Any]:
        """One epoch of shared-weight steps, then the controller's; returns its record."""
        net, settings = self.net, self.settings
        start = time.perf_counter()
        order = self.rng.permutation(len(self.y_train))
        losses = []
        for b in range(self.steps_per_epoch):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            net.optimizer.learning_rate.assign(self.learning_rate(self.epoch * self.steps_per_epoch + b))
            arch = self.controller.ask()
            widest = net.widest(arch)
            paths = [arch, widest] if settings.train_widest and widest != arch else [arch]
            for k, path in enumerate(paths):
                loss = float(net.train_step(self.x_train[batch], self.y_train[batch], net.encode(path)))
                if not math.isfinite(loss):
                    raise SupernetDiverged(
                        f"the supernet's training loss became {loss} in epoch {self.epoch + 1}, step {b + 1}"
                    )
                if k == 0:
                    losses.append(loss)  # the sampled path's
        train_seconds = time.perf_counter() - start
        rewards = []
        for _ in range(settings.controller_steps * settings.samples_per_step):
            arch = self.controller.ask()
            batch = self.rng.choice(len(self.y_val), min(settings.validation_batch, len(self.y_val)), replace=False)
            reward = int(net.correct_in_batch(self.x_val[batch], self.y_val[batch], net.encode(arch))) / len(batch)
            self.controller.tell(arch, reward)
            rewards.append(reward)
        updates = self.controller.updates()
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "loss": float(np.mean(losses)),
            "reward_mean": float(np.mean(rewards)),
            "reward_max": float(np.max(rewards)),
            "entropy": updates[-1]["entropy"] if updates else None,
            "train_seconds": train_seconds,
            "controller_seconds": time.perf_counter() - start - train_seconds,
        }
        self.history.append(record)
        return record

    # -- deriving the finalists ------------------------------------------------------------------

    def candidates(self) -> list[Architecture]:
        """Distinct architectures drawn from the trained policy (fewer if it keeps repeating itself)."""
        seen: dict[Architecture, None] = {}
        for _ in range(self.settings.candidates * 20):
            seen.setdefault(self.controller.ask())
            if len(seen) == self.settings.candidates:
                break
        return list(seen)

    def score(self, arch: Architecture) -> float:
        """Shared-weight validation accuracy after recalibrating the child's batch normalisation."""
        net = self.net
        encoded = net.encode(arch)
        picks = self.rng.permutation(len(self.y_train))
        n = min(self.settings.recalibration_batches, self.steps_per_epoch)
        net.recalibrate(
            [self.x_train[picks[k * self.batch_size : (k + 1) * self.batch_size]] for k in range(n)], encoded
        )
        return net.accuracy(self.x_val, self.y_val, encoded)

    def finalists(self) -> list[tuple[Architecture, float]]:
        # Recalibration changes the shared statistics: score from a copy of the trained state, so the
        # checkpoint (and a resumed run) sees the supernet as training left it.
        saved = self.net.state()
        try:
            scored = [(arch, self.score(arch)) for arch in self.candidates()]
        finally:
            self.net.load_state(saved)
        scored.sort(key=lambda pair: -pair[1])  # stable: ties keep the order they were drawn in
        return scored[: self.settings.finalists]

    # -- state -----------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The supernet, its optimizer, the controller and the sampling generator, as one file's bytes
        (the driver writes it atomically: a kill leaves the previous epoch's file or this one)."""
        meta = {
            "epoch": self.epoch,
            "history": self.history,
            "rng": self.rng.bit_generator.state,
            "controller": self.controller.state(),
            "space_fingerprint": self.space.fingerprint(),
            "settings": dataclasses.asdict(self.settings),
        }
        buffer = io.BytesIO()
        np.savez(buffer, *self.net.state(), meta=np.array(json.dumps(meta)))
        return buffer.getvalue()

    def load_bytes(self, data: bytes) -> None:
        """Continues from `to_bytes`'s file; a ValueError says why it does not fit this phase."""
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            arrays = [saved[f"arr_{k}"] for k in range(len(saved.files) - 1)]
        if meta["space_fingerprint"] != self.space.fingerprint():
            raise CheckpointMismatch("saved by a search of another space")
        if meta["settings"] != dataclasses.asdict(self.settings):
            raise CheckpointMismatch("saved with other weight_sharing settings")
        try:
            self.net.load_state(arrays)
            self.controller.load(meta["controller"])
        except (ValueError, KeyError) as e:
            raise CheckpointMismatch(str(e)) from None
        self.rng.bit_generator.state = meta["rng"]
        self.epoch, self.history = meta["epoch"], meta["history"]


# -- the phase in a search ---------------------------------------------------------------------------

CHECKPOINT = "supernet/checkpoint.npz"  # in the run directory
HISTORY = "supernet/history.json"  # one record per finished epoch, for the report
FINALISTS = "supernet/finalists.json"


class _Phase:
    """A SupernetPhase built from plain data, in this process or as a Ray actor (then on the node
    that has the trial's accelerators): the driver keeps the checkpoint, so a cluster's workers need
    no shared file system."""

    def __init__(self, space_text: str, space_source: str, arrays: dict, setup: dict, saved: bytes | None):
        from nas import trainer
        from search_spaces import parse_space

        trainer.configure_threads(setup["cpus"])  # before TensorFlow's first op in a fresh worker
        space = parse_space(space_text, source=space_source)
        settings = read_settings(space, {"finalists": setup["finalists"]})
        controller = make_enas_controller(setup["controller"], space, settings, seed=setup["seed"])
        self.phase = SupernetPhase(
            space, arrays, setup["input_shape"], setup["num_classes"], settings, controller, seed=setup["seed"]
        )
        if saved is not None:
            self.phase.load_bytes(saved)

    def epochs_done(self) -> int:
        return self.phase.epoch

    def epoch(self) -> tuple[list[dict], bytes]:
        """Trains one epoch; returns the records of every epoch so far and the state to save."""
        self.phase.train_epoch()
        return self.phase.history, self.phase.to_bytes()

    def finalists(self) -> list[tuple[dict, float]]:
        return [(arch.to_json(), accuracy) for arch, accuracy in self.phase.finalists()]

    def where(self) -> dict[str, Any]:
        """The Ray node and process the supernet trains in (the driver's own with `here`)."""
        import ray

        return {"node": ray.get_runtime_context().get_node_id() if ray.is_initialized() else None, "pid": os.getpid()}


def search_supernet(
    space: SearchSpace,
    rundir,
    arrays: dict,
    *,
    input_shape,
    num_classes: int,
    controller: str,
    seed: int,
    finalists: int,
    cpus: float,
    gpus: float = 0,
    here: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[tuple[Architecture, float]]:
    """Runs (or resumes, from the run's checkpoint) the supernet phase and returns its finalists with
    their shared-weight accuracy, best first; they are also written to the run's supernet/finalists.json.
    `here` runs it in this process (a local Ray without accelerators), else as one Ray actor."""
    settings = read_settings(space, {"finalists": finalists})
    checkpoint = rundir.file(CHECKPOINT)
    saved = checkpoint.read_bytes() if checkpoint.is_file() else None
    setup = {
        "cpus": cpus,
        "controller": controller,
        "seed": seed,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "finalists": finalists,
    }
    start = time.perf_counter()
    if here:
        phase = _Phase(space.text, space.source, arrays, setup, saved)
        call = lambda method: getattr(phase, method)()  # noqa: E731
    else:
        import ray

        actor = (
            ray.remote(_Phase)
            .options(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
            .remote(space.text, space.source, ray.put(arrays), setup, saved)
        )

        def call(method: str):
            try:
                return ray.get(getattr(actor, method).remote())
            except ray.exceptions.RayTaskError as e:  # the phase's own error, as if it ran here
                cause = e.as_instanceof_cause()
                raise (
                    cause
                    if isinstance(cause, (SupernetDiverged, CheckpointMismatch))
                    else RuntimeError(str(e).strip().splitlines()[-1])
                ) from None

    try:
        where = call("where")
        while call("epochs_done") < settings.supernet_epochs:
            history, state = call("epoch")
            rundir.write_bytes(CHECKPOINT, state)
            rundir.write_json(HISTORY, history)  # after the checkpoint: it never runs ahead of it
            if on_epoch:
                on_epoch(history[-1])
        finalists = [(space.from_json(arch), accuracy) for arch, accuracy in call("finalists")]
    finally:
        if not here:
            ray.kill(actor)
    rundir.write_json(
        FINALISTS,
        {
            "finalists": [
                {"arch": a.to_json(), "values": space.decode(a), "shared_accuracy": accuracy}
                for a, accuracy in finalists
            ],
            "seconds": time.perf_counter() - start,
            **where,  # the node and process of the session that chose them
        },
    )
    return finalists


def read_finalists(space: SearchSpace, rundir) -> list[tuple[Architecture, float]] | None:
    """The finalists a run's supernet phase chose, or None when it has not finished."""
    if not rundir.file(FINALISTS).is_file():
        return None
    return _finalists(space, rundir.read_saved(FINALISTS, required=("finalists",)))


def _finalists(space: SearchSpace, saved: dict[str, Any]) -> list[tuple[Architecture, float]]:
    return [(space.from_json(f["arch"]), float(f["shared_accuracy"])) for f in saved["finalists"]]


def finalists_summary(space: SearchSpace, rundir, records: list[TrialRecord]) -> dict[str, Any] | None:
    """The finalists' shared-weight accuracy beside the validation accuracy each reached trained from
    scratch, and the Kendall tau between the two (None with fewer than two trained)."""
    if not rundir.file(FINALISTS).is_file():
        return None
    saved = rundir.read_saved(FINALISTS, required=("finalists",))
    finalists = _finalists(space, saved)
    trained = {space.from_json(r.arch): r for r in records if r.completed}
    rows = [
        {
            "trial": trained[a].trial if a in trained else None,
            "shared_accuracy": accuracy,
            "val_accuracy": trained[a].metrics.val_accuracy if a in trained else None,
        }
        for a, accuracy in finalists
    ]
    pairs = [(r["shared_accuracy"], r["val_accuracy"]) for r in rows if r["val_accuracy"] is not None]
    tau = None
    if len(pairs) >= 2:
        from scipy.stats import kendalltau

        value = kendalltau(*zip(*pairs)).statistic
        tau = None if math.isnan(value) else float(value)
    return {"finalists": rows, "kendall_tau": tau, "seconds": saved.get("seconds"), "node": saved.get("node")}
