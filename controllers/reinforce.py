"""REINFORCE controller (Zoph & Le 2017): an LSTM that writes an architecture one decision at a time.

At each decision the LSTM's output goes through that decision's own softmax (or, with
`per_decision: false`, one softmax per kind of decision shared by all layers, as ENAS does); the
chosen value is embedded (one embedding per kind) and fed back as the next input. Skip connections
use anchor points: at layer i the controller's state h_i is compared with every earlier layer's
anchor state h_j,

    P(layer j feeds layer i) = sigmoid(v^T tanh(W_prev h_j + W_curr h_i)),

each sampled independently; the next input is the mean of the chosen anchors' states (ENAS).
Logits are shaped as c * tanh(logits / T) (ENAS).

Learning is set for searches of tens to hundreds of children (benchmarks/RESULTS.md, "Controllers
on unseen landscapes"): a few uniformly drawn children first, then policy-gradient updates in batches
of two, the advantage (reward - moving-average baseline) divided by a moving spread of it, four
PPO steps per batch with each decision's probability ratio clipped (Zoph et al. 2018 used PPO),
the best two children found so far joining every batch (elitism, as priority queue training; the
baseline and spread move with them too). Half the asks after the warm-up mutate one of those best
two at one decision (evolution's mutation): of 32 such mutations, one not asked before, drawn with
the policy's probability of each. The other asks (and those whose mutations were all asked before)
return the first of 32 policy draws (the later ones at higher temperatures) not asked before. A
duplicate the search answers from its record does not join a batch again as a new child. Results arrive
asynchronously, so each update recomputes the log-probabilities of the architectures that actually
finished under the current policy.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from controllers.base import Controller, mutate, read_settings
from search_spaces import Architecture, Decision, SearchSpace


@dataclass
class ReinforceSettings:
    """Settings, from a space file's `controller:` section. The network's are the papers'; the
    learning's are for searches of tens to hundreds of children (see `reinforce_settings`)."""

    hidden_size: int = 35  # LSTM units per layer (Zoph & Le: 35; ENAS: 64)
    lstm_layers: int = 2  # stacked LSTM layers (Zoph & Le: 2)
    learning_rate: float = 0.03  # Adam (Zoph & Le: 6e-4 for 12,800 children; ENAS: 3.5e-4)
    batch_size: int = 0  # finished children per policy update; 0: from the budget
    baseline_decay: float = 0.8  # moving average of the reward (ENAS code uses 0.99-0.999)
    entropy_weight: float = 1e-4  # bonus on the policy's entropy (ENAS: 1e-4)
    tanh_constant: float = 2.5  # logits -> c * tanh(logits / temperature) (ENAS: 2.5; 0 turns it off)
    temperature: float = 0.5  # (ENAS: 5)
    reward_power: float = 1.0  # the reward is val_accuracy ** power (Zoph & Le cube it: 3)
    init_range: float = 0.08  # weights start uniform in [-r, r] (Zoph & Le: 0.08)
    # A penalty of skip_weight x KL(p || skip_target) on each skip probability p, which keeps the
    # controller from wiring every layer to every other (the ENAS code: 0.4 and 0.8; 0: off).
    skip_target: float = 0.4
    skip_weight: float = 0.0
    # Divide the advantage (reward - baseline) by a moving spread of it, so that the step size does
    # not depend on how far apart the space's rewards lie.
    normalise: bool = True
    warmup: int = -1  # children drawn uniformly before the policy asks; -1: from the budget
    ppo_epochs: int = 4  # policy-gradient steps on each batch (1 with ppo_clip 0: plain REINFORCE)
    ppo_clip: float = 0.2  # PPO's clipped probability ratio (Schulman et al. 2017; 0: not clipped)
    # An ask draws up to this many architectures from the policy (the later ones at higher
    # temperatures) and returns the first not asked before: a trained architecture teaches nothing new.
    fresh_samples: int = 32
    learn_from_duplicates: bool = False  # a told duplicate joins a batch again (ENAS samples repeat)
    # A softmax for each decision, whose bias learns that decision's preference at once; otherwise
    # one per kind of decision, shared by all layers (ENAS), which must tell layers apart by state.
    per_decision: bool = True
    # Each policy update learns from its batch of new children and from the best `elite` told so far
    # (those not in the batch), with their advantages over the baseline: the best found keeps pulling
    # the policy (priority queue training, Abolafia et al. 2018; evolution's elitism). Their rewards
    # move the baseline and the spread as the batch's do (as measured and tuned). 0: off.
    elite: int = 2
    # The share of asks after the warm-up that mutate one of the best `elite` told children at one
    # decision instead of drawing from the policy: of `fresh_samples` one-decision mutations not asked
    # before (evolution's), one drawn with the policy's probability of each. The policy learns from
    # them as from its own draws. On noisy landscapes of many choices a decision, one-decision steps
    # from the best found reach the top sooner than a policy that learns each decision's preference
    # (benchmarks/RESULTS.md, "Controllers on unseen landscapes"). 0: off.
    mutate: float = 0.5

    def check(self) -> str | None:
        for name in ("hidden_size", "lstm_layers", "ppo_epochs", "fresh_samples"):
            if getattr(self, name) < 1:
                return f"{name}: got {getattr(self, name)}, expected an integer >= 1"
        if self.batch_size < 0:
            return f"batch_size: got {self.batch_size}, expected an integer >= 1 (0: from the budget)"
        if self.elite < 0:
            return f"elite: got {self.elite}, expected an integer >= 0 (0: off)"
        if self.warmup < -1:
            return f"warmup: got {self.warmup}, expected an integer >= 0 (-1: from the budget)"
        for name in ("learning_rate", "temperature", "reward_power", "init_range"):
            if not getattr(self, name) > 0:
                return f"{name}: got {getattr(self, name)}, expected a number > 0"
        if not 0 <= self.baseline_decay < 1:
            return f"baseline_decay: got {self.baseline_decay}, expected a number >= 0 and < 1"
        if self.entropy_weight < 0 or self.tanh_constant < 0 or self.skip_weight < 0:
            return "entropy_weight, tanh_constant and skip_weight: expected numbers >= 0"
        if not 0 < self.skip_target < 1:
            return f"skip_target: got {self.skip_target}, expected a probability > 0 and < 1"
        if not 0 <= self.mutate <= 1:
            return f"mutate: got {self.mutate}, expected a share from 0 to 1"
        if not 0 <= self.ppo_clip < 1:
            return f"ppo_clip: got {self.ppo_clip}, expected a number >= 0 and < 1"
        return None


# Plain REINFORCE, as Zoph & Le and ENAS learnt and as nas did before issue 25: one softmax per kind
# of decision, one unclipped step per batch on raw advantages, from the first child, repeats included.
PLAIN_REINFORCE = {
    "normalise": False,
    "warmup": 0,
    "ppo_epochs": 1,
    "ppo_clip": 0.0,
    "fresh_samples": 1,
    "learn_from_duplicates": True,
    "per_decision": False,
    "elite": 0,
    "mutate": 0.0,
}
# Settings a state saved before them lacks, with the values that reproduce how it learned then.
SETTINGS_ADDED_LATER = {"skip_target": 0.4, "skip_weight": 0.0, **PLAIN_REINFORCE}


def reinforce_settings(
    space: SearchSpace, overrides: Mapping[str, Any] | None = None, budget: int | None = None
) -> ReinforceSettings:
    """The settings from the space file's `controller:` section and `overrides`, with the warm-up
    and the batch size derived from the budget where neither gives them: min(5, budget // 10) random
    children (at least 1), then batches of 2 (1 under a budget of 10). A first top architecture is
    wanted within tens of children whatever the budget, so neither grows with it."""
    from controllers.evolution import EvolutionSettings

    settings = read_settings(ReinforceSettings, space, overrides, shared_with=(EvolutionSettings,))
    budget = 100 if budget is None else budget
    if settings.batch_size == 0:
        settings = dataclasses.replace(settings, batch_size=2 if budget >= 10 else 1)
    if settings.warmup == -1:
        settings = dataclasses.replace(settings, warmup=min(5, max(1, budget // 10)))
    return settings


@dataclass(frozen=True)
class Step:
    """One step of the controller's sequence: a categorical decision, or a layer's anchor point."""

    head: str  # the softmax (and embedding) used, shared by decisions of one kind; "anchor" for anchors
    decisions: tuple[int, ...]  # indices into space.decisions; an anchor's are the layer's input decisions
    sources: tuple[int, ...] = ()  # an anchor's: the earlier layers those decisions connect, in order


def _head(decision: Decision) -> str:
    """Decisions of one kind and size share a softmax and an embedding, whatever their layer."""
    return f"{decision.kind}_{len(decision.choices)}"


def plan(space: SearchSpace) -> list[Step]:
    """The order in which the controller makes its decisions: the space's order, with one anchor
    step per layer (when the space has skip decisions) before that layer's own decisions."""
    anchors = any(d.kind == "input" for d in space.decisions)
    steps = [Step(_head(d), (i,)) for i, d in enumerate(space.decisions) if d.layer is None]
    layers = sorted({d.layer for d in space.decisions if d.layer is not None})
    for layer in range(layers[-1] + 1 if layers else 0):
        mine = [(i, d) for i, d in enumerate(space.decisions) if d.layer == layer]
        if anchors:
            inputs = sorted((d.source, i) for i, d in mine if d.kind == "input")
            steps.append(Step("anchor", tuple(i for _, i in inputs), tuple(j for j, _ in inputs)))
        steps += [Step(_head(d), (i,)) for i, d in mine if d.kind != "input"]
    return steps


class ReinforceController(Controller):
    name = "reinforce"

    def __init__(self, space: SearchSpace, seed: int = 0, settings: ReinforceSettings | None = None):
        super().__init__(space, seed)
        self.settings = settings or ReinforceSettings()
        self.steps = plan(space)
        self._build()
        self.baseline: float | None = None
        self.spread: float | None = None  # moving root mean square of reward - baseline
        self.pending: list[tuple[list[int], float]] = []
        self.log: list[dict[str, Any]] = []
        self.asked: list[list[int]] = []  # every architecture asked, in order
        self.told: list[tuple[list[int], float]] = []  # every distinct architecture told, and its reward
        self._asked = set()
        self._told = set()

    def _build(self) -> None:
        """The network for the current settings (its graphs shared with every controller of the
        process that has the same plan and settings), its weights drawn from the seed."""
        from controllers.policy_network import policy_network

        sizes = {_head(d): len(d.choices) for d in self.space.decisions}
        self.network = policy_network(self.steps, sizes, self.settings)
        self.weights = self.network.initial_weights(self.seed, self.settings.init_range)
        self.optimizer = self.network.initial_optimizer(self.settings.learning_rate)

    # -- ask and tell ----------------------------------------------------------------------------

    def ask(self) -> Architecture:
        """The first architecture not asked before among `fresh_samples` drawn from the policy (draw k
        at temperature 2^(k // 16)), or uniformly during the warm-up; the first drawn if all were.
        With `mutate`, that share of asks draws from as many mutations of the best told children."""
        s, d = self.settings, len(self.space.decisions)
        if len(self.asked) < s.warmup:
            sizes = np.array([len(x.choices) for x in self.space.decisions])
            rows = (self.rng.random((s.fresh_samples, d)) * sizes).astype(np.int64)
        else:
            if s.mutate and self.told and self.rng.random() < s.mutate:
                best = self._best(max(1, s.elite))
                parents = [
                    self.space.architecture(best[int(self.rng.integers(len(best)))][0]) for _ in range(s.fresh_samples)
                ]
                fresh = [a for a in (mutate(self.space, self.rng, p) for p in parents) if a.choices not in self._asked]
                if fresh:
                    choices = np.array([a.choices for a in fresh])
                    active = np.array([self.space.active(c) for c in choices], np.float32)
                    logp = self.network.score(self.weights, choices, active)[0].numpy().sum(axis=1)
                    weights = np.exp(logp - logp.max())
                    return self._record(fresh[int(self.rng.choice(len(fresh), p=weights / weights.sum()))])
            uniforms = self.rng.random((s.fresh_samples, d)).astype(np.float32)
            tau = (2.0 ** (np.arange(s.fresh_samples) // 16)).astype(np.float32)
            rows = self.network.sample(self.weights, uniforms, tau)
        archs = [self.space.architecture(row) for row in rows]
        return self._record(next((a for a in archs if a.choices not in self._asked), archs[0]))

    def _best(self, count: int) -> list[tuple[list[int], float]]:
        """The `count` best children told so far, with their rewards; the earlier among equals."""
        return sorted(self.told, key=lambda told: -told[1])[:count]  # stable

    def _record(self, arch: Architecture) -> Architecture:
        if arch.choices not in self._asked:
            self._asked.add(arch.choices)
            self.asked.append(list(arch.choices))
        return arch

    def probabilities(self, arch: Architecture) -> np.ndarray:
        """For each decision, the probability that the current policy makes this architecture's
        choice, given the choices before it (inactive decisions: 1)."""
        active = np.array([self.space.active(arch.choices)], np.float32)
        return np.exp(self.network.score(self.weights, np.array([arch.choices]), active)[0].numpy()[0])

    def tell(self, arch: Architecture, reward: float) -> None:
        """Learns in batches of `batch_size` children, the first once the warm-up's are all told.
        A duplicate (the search answers it from its record) was learnt from when first told."""
        if arch.choices in self._told and not self.settings.learn_from_duplicates:
            return
        if arch.choices not in self._told:
            self._told.add(arch.choices)
            self.told.append((list(arch.choices), float(reward)))
        self.pending.append((list(arch.choices), float(reward)))
        if len(self.pending) >= self.settings.batch_size and len(self.told) >= self.settings.warmup:
            self._update()

    def _update(self) -> None:
        s = self.settings
        batch = list(self.pending)
        if s.elite:
            inside = {tuple(c) for c, _ in batch}
            best = self._best(s.elite)
            batch += [(c, r) for c, r in best if tuple(c) not in inside]
        rewards = np.maximum(np.array([r for _, r in batch], np.float64), 0.0) ** s.reward_power
        fresh = rewards[: len(self.pending)]  # the new children's, for the log: the batch starts with them
        if self.baseline is None:
            self.baseline = float(rewards.mean())
        choices = np.array([c for c, _ in batch], np.int64)
        advantage = rewards - self.baseline
        if s.normalise:
            if self.spread is None:
                self.spread = float(np.sqrt(np.mean((rewards - self.baseline) ** 2)))
            advantage = advantage / max(self.spread, 1e-8)
        active = np.array([self.space.active(c) for c in choices], np.float32)
        advantage, old_logp = advantage.astype(np.float32), np.zeros(choices.shape, np.float32)
        for epoch in range(s.ppo_epochs):
            first = np.float32(epoch == 0)
            loss, entropy, logp, self.weights, self.optimizer = self.network.step(
                self.weights, self.optimizer, choices, active, advantage, old_logp, first
            )
            if epoch == 0:
                old_logp = logp.numpy()
        self.log.append(
            {
                "update": len(self.log) + 1,
                "children": len(fresh),
                "elite": len(batch) - len(fresh),
                "mean_reward": float(fresh.mean()),
                "baseline": self.baseline,
                "entropy": float(entropy),
                "loss": float(loss),
            }
        )
        if s.normalise:
            square = float(np.mean((rewards - self.baseline) ** 2))
            self.spread = float(np.sqrt(s.baseline_decay * self.spread**2 + (1 - s.baseline_decay) * square))
        self.baseline = s.baseline_decay * self.baseline + (1 - s.baseline_decay) * float(rewards.mean())
        self.pending = []

    def updates(self) -> list[dict[str, Any]]:
        return list(self.log)

    def settings_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)

    # -- state -----------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        weights, optimizer = self.network.arrays(self.weights, self.optimizer)
        return {
            **super().state(),
            "settings": self.settings_json(),
            "weights": [_encode(w) for w in weights],
            "optimizer": [_encode(v) for v in optimizer],
            "baseline": self.baseline,
            "spread": self.spread,
            "pending": self.pending,
            "log": self.log,
            "asked": self.asked,
            "told": self.told,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Continues from `state` with its settings: a resumed search may have another budget, but
        the learning it continues keeps the batch size and warm-up it started with."""
        super().load(state)
        saved = {**SETTINGS_ADDED_LATER, **state["settings"]}  # saved before some settings existed
        settings = ReinforceSettings(**saved)
        problem = settings.check()
        if problem:
            raise ValueError(f"settings: {problem}")
        if settings != self.settings:
            self.settings = settings
            self._build()  # the network for these settings; its weights and Adam's state are the saved ones
        self.weights, self.optimizer = self.network.from_arrays(
            [_decode(w) for w in state["weights"]], [_decode(v) for v in state["optimizer"]]
        )
        self.baseline = state["baseline"]
        self.spread = state.get("spread")
        self.pending = [(list(c), float(r)) for c, r in state["pending"]]
        self.log = [dict(entry) for entry in state["log"]]
        self.asked = [list(c) for c in state.get("asked", [])]
        self.told = [(list(c), float(r)) for c, r in state.get("told", [])]
        self._asked = {tuple(c) for c in self.asked}
        self._told = {tuple(c) for c, _ in self.told}


def _encode(array: np.ndarray) -> dict[str, Any]:
    """An exact, compact JSON form of an array."""
    array = np.asarray(array)  # tobytes() writes C order, 0-d arrays included
    return {"dtype": str(array.dtype), "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}


def _decode(data: Mapping[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data["data"]), dtype=data["dtype"]).reshape(data["shape"])
