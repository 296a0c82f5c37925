"""The REINFORCE controller's policy network and its TensorFlow graphs: sampling architectures,
scoring them, and one policy-gradient step with Adam.

The graphs are pure functions of the network's weights and Adam's state, which each controller keeps
as tensors of its own (most of them in one flat vector: a graph called with a few tensors costs less
than with hundreds). So one `PolicyNetwork` per plan and graph settings serves every controller of the
process that has them, and only the first pays for tracing: seconds for a plan of cnn10's size, paid
before by each controller that `nas bench run`, a benchmark or a test builds by the hundred.

The Keras layers here give the structure only; their own variables are never read for values (the
graphs run them in a `keras.StatelessScope` over the weights given). Adam's update is written out as
Keras's Adam computes it (Keras's `stateless_apply` does not run on TensorFlow), and a state is
saved per variable in Keras's order: a controller state saved before this module loads unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from controllers.reinforce import ReinforceSettings, Step

# Keras's Adam defaults, which the controller always used.
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7


@dataclass(frozen=True)
class GraphSettings:
    """The settings the graphs read when traced (the rest of ReinforceSettings is read outside them)."""

    hidden_size: int
    lstm_layers: int
    per_decision: bool
    temperature: float
    tanh_constant: float
    skip_target: float
    skip_weight: float
    entropy_weight: float
    ppo_clip: float

    @classmethod
    def of(cls, settings: ReinforceSettings) -> GraphSettings:
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})


def policy_network(steps: Sequence[Step], sizes: dict[str, int], settings: ReinforceSettings) -> PolicyNetwork:
    """The network for this plan (its steps and each head's number of choices) and these settings,
    shared by every controller of the process that asks for the same."""
    return _shared(tuple(steps), tuple(sorted(sizes.items())), GraphSettings.of(settings))


@functools.lru_cache(maxsize=32)
def _shared(steps: tuple[Step, ...], sizes: tuple[tuple[str, int], ...], settings: GraphSettings) -> PolicyNetwork:
    return PolicyNetwork(steps, dict(sizes), settings)


class PolicyNetwork:
    def __init__(self, steps: tuple[Step, ...], sizes: dict[str, int], settings: GraphSettings):
        import keras  # TensorFlow is loaded only when a REINFORCE controller is used

        self.steps, self.settings = steps, settings
        self.decisions = sum(len(step.decisions) for step in steps)  # each decision in one step
        s = settings
        self.cells = [keras.layers.LSTMCell(s.hidden_size, name=f"lstm{k}") for k in range(s.lstm_layers)]
        heads = [step for step in steps if step.head != "anchor"]
        self.softmax = {
            key: keras.layers.Dense(sizes[step.head], name=f"softmax_{key}")
            for key, step in sorted({self._softmax_key(step): step for step in heads}.items())
        }
        self.embed = {
            h: keras.layers.Embedding(sizes[h], s.hidden_size, name=f"embed_{h}")
            for h in sorted({step.head for step in heads})
        }
        self.go = keras.layers.Embedding(1, s.hidden_size, name="go")  # the first step's input
        self.w_prev = keras.layers.Dense(s.hidden_size, use_bias=False, name="anchor_prev")
        self.w_curr = keras.layers.Dense(s.hidden_size, use_bias=False, name="anchor_curr")
        self.v = keras.layers.Dense(1, use_bias=False, name="anchor_v")
        for cell in self.cells:
            cell.build((None, s.hidden_size))
        for layer in [*self.softmax.values(), self.w_prev, self.w_curr, self.v]:
            layer.build((None, s.hidden_size))
        for layer in [*self.embed.values(), self.go]:
            layer.build((None,))
        modules = [*self.cells, self.go, *self.softmax.values(), *self.embed.values(), self.w_prev, self.w_curr, self.v]
        self.variables = [v for m in modules for v in m.trainable_variables]
        # Embeddings keep tensors of their own: their gradients are sparse (the rows looked up, once per
        # lookup), and Keras's Adam squares them so, which a flat vector's dense gradient would not.
        sparse = {id(v) for layer in [self.go, *self.embed.values()] for v in layer.trainable_variables}
        self.sparse = [i for i, v in enumerate(self.variables) if id(v) in sparse]
        self.dense = [i for i, v in enumerate(self.variables) if id(v) not in sparse]
        self.sizes = [int(np.prod(self.variables[i].shape)) for i in self.dense]
        self.size = sum(self.sizes)
        self._trace()

    def _softmax_key(self, step: Step) -> str:
        """The softmax of a decision step: its own (`per_decision`), or its kind's."""
        return f"d{step.decisions[0]}" if self.settings.per_decision else step.head

    # -- the state a controller keeps ----------------------------------------------------------
    # The weights: a list of tensors, first one flat float32 vector of every variable's values but
    # the embeddings', then each embedding's. Adam's state: [iteration, learning rate, then the first
    # and second moments of each of those tensors]. A saved state lists them per variable, as Keras's
    # Adam orders its own (`arrays`, `from_arrays`).

    def initial_weights(self, seed: int, init_range: float) -> list[Any]:
        """Weights uniform in [-init_range, init_range], drawn from the seed alone: runs are reproducible."""
        init = np.random.default_rng([seed, 1])
        return self._pack([init.uniform(-init_range, init_range, v.shape).astype("float32") for v in self.variables])

    def initial_optimizer(self, learning_rate: float) -> list[Any]:
        import tensorflow as tf

        zeros = self._pack([np.zeros(v.shape, np.float32) for v in self.variables])
        return [tf.constant(0, tf.int64), tf.constant(learning_rate, tf.float32), *(z for t in zeros for z in (t, t))]

    def arrays(self, weights: list, optimizer: list) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The weights per variable, and Adam's state in Keras's order: the iteration, the learning
        rate, then each variable's first and second moments."""
        first, second = self._unpack(optimizer[2::2]), self._unpack(optimizer[3::2])
        moments = [m for pair in zip(first, second) for m in pair]
        return self._unpack(weights), [optimizer[0].numpy(), optimizer[1].numpy(), *moments]

    def from_arrays(self, weights: list[np.ndarray], optimizer: list[np.ndarray]) -> tuple[list[Any], list[Any]]:
        """The inverse of `arrays`; ValueError if the arrays are not this network's."""
        import tensorflow as tf

        expected = [(tuple(v.shape), np.dtype(np.float32)) for v in self.variables]
        adam = [((), np.dtype(np.int64)), ((), np.dtype(np.float32)), *(e for e in expected for _ in range(2))]
        for field, got, want in (("weights", weights, expected), ("optimizer", optimizer, adam)):
            shapes = [(tuple(a.shape), a.dtype) for a in got]
            if shapes != want:
                raise ValueError(f"{field}: saved arrays of {shapes}, expected {want}")
        moments = zip(self._pack(optimizer[2::2]), self._pack(optimizer[3::2]))
        return self._pack(weights), [
            tf.constant(optimizer[0]),
            tf.constant(optimizer[1]),
            *(t for m in moments for t in m),
        ]

    def _pack(self, arrays: list[np.ndarray]) -> list[Any]:
        """Per-variable arrays as the tensors a controller keeps."""
        import tensorflow as tf

        flat = np.concatenate([np.asarray(arrays[i], np.float32).reshape(-1) for i in self.dense])
        return [tf.constant(flat), *(tf.constant(np.asarray(arrays[i], np.float32)) for i in self.sparse)]

    def _unpack(self, tensors: list) -> list[np.ndarray]:
        """The inverse of `_pack`: `_values`, run eagerly."""
        return [value.numpy() for value in self._values(tensors)]

    def _values(self, weights: list) -> list:
        """The variables' values out of the weights a controller keeps (in a graph, or eagerly)."""
        import tensorflow as tf

        values: list[Any] = [None] * len(self.variables)
        for i, part in zip(self.dense, tf.split(weights[0], self.sizes)):
            values[i] = tf.reshape(part, self.variables[i].shape)
        for i, tensor in zip(self.sparse, weights[1:]):
            values[i] = tensor
        return values

    # -- the graphs ------------------------------------------------------------------------------

    def _trace(self) -> None:
        import tensorflow as tf

        d = self.decisions
        weights = [
            tf.TensorSpec([self.size], tf.float32),
            *(tf.TensorSpec(self.variables[i].shape) for i in self.sparse),
        ]
        adam = [
            tf.TensorSpec([], tf.int64),
            tf.TensorSpec([], tf.float32),
            *(spec for spec in weights for _ in range(2)),
        ]
        self._sample = tf.function(
            lambda w, u, tau: self._run(w, None, u, tf.ones_like(u), tau)[0],
            autograph=False,
            input_signature=[weights, tf.TensorSpec([None, d], tf.float32), tf.TensorSpec([None], tf.float32)],
        )
        self._score = tf.function(
            lambda w, c, a: self._run(w, c, None, a)[1:3],
            autograph=False,
            input_signature=[weights, tf.TensorSpec([None, d], tf.int64), tf.TensorSpec([None, d], tf.float32)],
        )
        # The update too: Adam's eager step alone took most of a replayed search's time.
        self._step = tf.function(
            self._update,
            autograph=False,
            input_signature=[
                weights,
                adam,
                tf.TensorSpec([None, d], tf.int64),
                tf.TensorSpec([None, d], tf.float32),
                tf.TensorSpec([None], tf.float32),
                tf.TensorSpec([None, d], tf.float32),
                tf.TensorSpec([], tf.float32),
            ],
        )

    def sample(self, weights: list, uniforms: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Architectures [B, D] drawn by inverse CDF from `uniforms` [B, D], row b at temperature tau[b]."""
        with unoptimised():
            return self._sample(weights, uniforms, tau).numpy()

    def score(self, weights: list, choices: np.ndarray, active: np.ndarray):
        """Per-decision log-probabilities [B, D] of these architectures [B, D] and the policy's entropy
        along each [B]."""
        with unoptimised():
            return self._score(weights, np.asarray(choices, np.int64), active)

    def step(self, weights, optimizer, choices, active, advantage, old_logp, first):
        """One policy-gradient step: returns the loss, the mean entropy, the log-probabilities [B, D]
        of the choices before the step, and the new weights and Adam state."""
        with unoptimised():
            return self._step(weights, optimizer, choices, active, advantage, old_logp, first)

    def _shape(self, logits):
        import tensorflow as tf

        s = self.settings
        logits = logits / s.temperature
        return s.tanh_constant * tf.tanh(logits) if s.tanh_constant else logits

    def _run(self, weights, forced, uniforms, active, tau=None):
        """The policy with these weights (see `_policy`)."""
        import keras

        with keras.StatelessScope(state_mapping=list(zip(self.variables, self._values(weights)))):
            return self._policy(forced, uniforms, active, tau)

    def _policy(self, forced, uniforms, active, tau=None):
        """Runs the LSTM over the steps, in TensorFlow. With `forced` [B, D] it scores those choices
        (teacher forcing); with `uniforms` [B, D] instead it samples B architectures by inverse CDF,
        row b with its logits divided by `tau[b]`. Returns the choices [B, D], the log-probability
        of each choice given the ones before it [B, D], the policy's entropy along the way [B] and
        the KL divergence of its skip probabilities from `skip_target` [B]; `active` [B, D] masks
        decisions that had no effect."""
        import tensorflow as tf

        batch = tf.shape(uniforms if forced is None else forced)[0]
        hidden = self.settings.hidden_size
        states = [[tf.zeros((batch, hidden)), tf.zeros((batch, hidden))] for _ in self.cells]
        x = self.go(tf.zeros((batch,), "int32"))
        chosen, logps, anchors, keys, entropies, skip_kls = {}, {}, [], [], [], []
        for step in self.steps:
            for k, cell in enumerate(self.cells):
                x, states[k] = cell(x, states[k])
            h = x
            if step.head != "anchor":
                (d,) = step.decisions
                logp_all = tf.nn.log_softmax(self._shape(self.softmax[self._softmax_key(step)](h)))
                if forced is None:
                    cdf = tf.cumsum(tf.exp(logp_all / tau[:, None]), -1)  # unnormalised: u scales to its end
                    below = tf.reduce_sum(tf.cast(cdf < uniforms[:, d : d + 1] * cdf[:, -1:], tf.int64), -1)
                    chosen[d] = tf.minimum(below, logp_all.shape[-1] - 1)
                else:
                    chosen[d] = forced[:, d]
                # The chosen entry by a one-hot product, not a gather: the same number (the other
                # terms are zeros), and a gradient that traces in a fraction of a gather's time.
                pick = tf.one_hot(chosen[d], logp_all.shape[-1], dtype=logp_all.dtype)
                logps[d] = tf.reduce_sum(logp_all * pick, -1) * active[:, d]
                entropies.append(-tf.reduce_sum(tf.exp(logp_all) * logp_all, -1) * active[:, d])
                x = self.embed[step.head](chosen[d])
                continue
            if step.decisions:  # an anchor point with earlier layers to choose from
                ds, sources = list(step.decisions), list(step.sources)
                candidates = tf.stack([keys[j] for j in sources], 1)
                logits = self._shape(self.v(tf.tanh(candidates + self.w_curr(h)[:, None]))[..., 0])
                p = tf.sigmoid(logits)
                if forced is None:
                    picks = tf.cast(tf.gather(uniforms, ds, axis=1) < tf.sigmoid(logits / tau[:, None]), tf.float32)
                else:
                    picks = tf.cast(tf.gather(forced, ds, axis=1), tf.float32)
                chosen.update({d: tf.cast(picks[:, j], tf.int64) for j, d in enumerate(ds)})
                log_on, log_off = tf.math.log_sigmoid(logits), tf.math.log_sigmoid(-logits)
                mask = tf.gather(active, ds, axis=1)
                terms = (picks * log_on + (1 - picks) * log_off) * mask
                logps.update({d: terms[:, j] for j, d in enumerate(ds)})
                entropies.append(-tf.reduce_sum((p * log_on + (1 - p) * log_off) * mask, -1))
                t = self.settings.skip_target
                kl = p * (log_on - np.log(t)) + (1 - p) * (log_off - np.log(1 - t))
                skip_kls.append(tf.reduce_sum(kl * mask, -1))
                chosen_states = tf.stack([anchors[j] for j in sources], 1)
                x = tf.einsum("bj,bjh->bh", picks, chosen_states) / (1 + tf.reduce_sum(picks, -1, keepdims=True))
            anchors.append(h)
            keys.append(self.w_prev(h))
        order = range(self.decisions)
        entropy = tf.add_n(entropies) if entropies else tf.zeros((batch,))
        skip_kl = tf.add_n(skip_kls) if skip_kls else tf.zeros((batch,))
        return tf.stack([chosen[d] for d in order], 1), tf.stack([logps[d] for d in order], 1), entropy, skip_kl

    def _update(self, weights, optimizer, choices, active, advantage, old_logp, first):
        """One policy-gradient step on a batch of finished children. With `ppo_clip`, PPO's clipped
        surrogate, the ratios taken to the log-probabilities under the policy before this update's
        first step: this step's own when `first` is 1, else `old_logp` (one graph for both: a scoring
        graph of its own cost seconds to build)."""
        import tensorflow as tf

        s = self.settings
        with tf.GradientTape() as tape:
            tape.watch(weights)
            logp, entropy, skip_kl = self._run(weights, choices, None, active)[1:]
            entropy = tf.reduce_mean(entropy)
            if s.ppo_clip:  # a ratio per decision, as PPO takes one per token of a sequence
                reference = first * tf.stop_gradient(logp) + (1 - first) * old_logp
                ratio = tf.exp(logp - reference)
                clipped = tf.clip_by_value(ratio, 1 - s.ppo_clip, 1 + s.ppo_clip)
                gain = tf.reduce_mean(
                    tf.reduce_sum(tf.minimum(ratio * advantage[:, None], clipped * advantage[:, None]), -1)
                )
            else:
                gain = tf.reduce_mean(advantage * tf.reduce_sum(logp, -1))
            loss = -gain - s.entropy_weight * entropy + s.skip_weight * tf.reduce_mean(skip_kl)
        # Weights a plan does not use (anchors without skip decisions, the last choice's embedding)
        # get a zero gradient (see `_adam`).
        gradients = tape.gradient(loss, weights)
        weights, optimizer = _adam(weights, gradients, optimizer)
        return loss, entropy, logp, weights, optimizer


def _adam(weights: list, gradients: list, optimizer: list) -> tuple[list, list]:
    """Keras 3's Adam step (`keras.optimizers.Adam.update_step` and the iteration count `apply` adds),
    op for op on each tensor: the same numbers as the Keras optimizer the controller held before. A
    weight of the flat vector that the plan does not use has a zero gradient here where Keras's had
    none and skipped it: its moments, zero from the start, stay zero and it does not move."""
    from keras import ops

    iteration, learning_rate, moments = optimizer[0], optimizer[1], optimizer[2:]
    step = ops.cast(iteration + 1, "float32")
    alpha = learning_rate * ops.sqrt(1 - ops.power(ops.cast(BETA_2, "float32"), step))
    alpha = alpha / (1 - ops.power(ops.cast(BETA_1, "float32"), step))
    new_weights, new_moments = [], []
    for k, (w, g) in enumerate(zip(weights, gradients, strict=True)):
        m, v = moments[2 * k], moments[2 * k + 1]
        if g is not None:  # sparse for an embedding: squared per lookup, as Keras's Adam squares it
            m = m + ops.multiply(ops.subtract(g, m), 1 - BETA_1)
            v = v + ops.multiply(ops.subtract(ops.square(g), v), 1 - BETA_2)
            w = w - ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), EPSILON))
        new_weights.append(w)
        new_moments += [m, v]
    return new_weights, [iteration + 1, learning_rate, *new_moments]


@contextlib.contextmanager
def unoptimised() -> Iterator[None]:
    """Runs the controller's graphs without Grappler, TensorFlow's graph optimizer. Its passes over
    graphs this large (an LSTM unrolled over every step of the space, its gradient and Adam) took
    about a third of what the first update costs, and the graphs run about as fast without them
    (benchmarks/RESULTS.md, "Controller start-up"). TensorFlow reads the setting per call: Keras
    models this process trains keep it."""
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})
