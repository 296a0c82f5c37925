"""A weight-sharing supernet of a conv space (ENAS, Pham et al. 2018): one set of weights from which
every child of the space is computed, and only the sampled child's path runs.

    net = ConvSupernet(space, input_shape=(28, 28, 1), num_classes=10)
    arch = net.encode(space.architecture(choices))      # an int32 tensor: no retracing per architecture
    loss = net.train_step(x, y, arch)                   # one shared-weight step on one batch
    correct = net.correct(x, y, arch)                   # how many of a batch the child classifies right
    model = net.child_model(space.architecture(choices))   # nas.builder's model, the shared weights copied in

How the weights are shared, so that a child copied out computes exactly what it computed in the
supernet (nas.builder concatenates a layer's inputs and projects them with a 1x1 convolution):
- a layer's own kernel once, at the largest height and width of its choices, the most channels any
  input may bring and its most filters; a child takes the centre crop to its height and width and
  the first input channels and filters (a prefix, as in slimmable networks);
- a projection per (layer, source): a 1x1 convolution over a concatenation is the sum of 1x1
  convolutions over its parts;
- batch normalisation per (layer, width, placement), as slimmable networks keep one per width;
- the classifier per layer: a dense layer over the concatenated loose ends is the sum of one
  product per end.

Every choice is a `tf.switch_case` or a slice of a tensor the architecture indexes, so that a step
runs and differentiates only the chosen branch. Gradients of a slice are dense with zeros, so the
optimizer (`MaskedAdam`) updates only the entries whose gradient is not zero: Adam's moments would
otherwise keep moving weights the step did not sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from search_spaces import Architecture, SearchSpace
from search_spaces.space import skip_sources, stem_reductions, widened

PLACEMENTS = ("none", "before_activation", "after_activation")
BN_EPSILON = 1e-3  # Keras's BatchNormalization default, which nas.builder uses
ALWAYS = -1  # an input that is not a decision: the previous layer under `inputs: skips`


class SupernetError(ValueError):
    """The space has no supernet: the message names the space and what it decides that a supernet cannot."""


@dataclass(frozen=True)
class _Choice:
    """One layer setting: the position of its decision in an architecture and the values it indexes,
    or a fixed value (position None)."""

    position: int | None
    values: tuple

    def fixed(self) -> Any:
        return self.values[0] if self.position is None else None


def supported(space: SearchSpace, input_shape: tuple[int, ...] | None = None) -> str | None:
    """Why the space has no supernet (for images of `input_shape`, when given), or None when it has one."""
    if space.family != "conv":
        return f"space {space.name!r} is of family {space.family}; a supernet exists for the conv family only"
    stem_to = space.fixed["top"].get("stem_to", 0)
    if input_shape is not None and stem_reductions(input_shape[0], input_shape[1], stem_to):
        return (
            f"space {space.name!r} has a stem for images over {stem_to} pixels, these are "
            f"{input_shape[0]}x{input_shape[1]}, and the supernet builds no stem yet"
        )
    for d in space.decisions:
        group = d.name.partition(".")[0]
        if d.layer is None and d.name != "layers" and group != "head":
            return (
                f"space {space.name!r} decides {d.name}, which shared weights cannot compare; expected only "
                "layer decisions, depth and head.dropout"
            )
    return None


class ConvSupernet:
    """The shared weights of every child of a conv space, and the traced steps that use them."""

    def __init__(
        self,
        space: SearchSpace,
        input_shape: tuple[int, ...],
        num_classes: int,
        seed: int = 0,
        learning_rate: float = 0.002,
    ):
        import keras
        import tensorflow as tf

        problem = supported(space, input_shape)
        if problem:
            raise SupernetError(problem)
        self.space, self.input_shape, self.num_classes = space, tuple(input_shape), num_classes
        positions = {d.name: k for k, d in enumerate(space.decisions)}
        fixed_layer = space.fixed.get("layer", {})
        depths = next((d.choices for d in space.decisions if d.name == "layers"), None)
        self.max_depth = max(depths) if depths else int(space.fixed["top"]["layers"])
        self.depth = _Choice(positions.get("layers"), tuple(depths) if depths else (self.max_depth,))
        dropouts = next((d.choices for d in space.decisions if d.name == "head.dropout"), None)
        self.dropout = _Choice(
            positions.get("head.dropout"),
            tuple(dropouts) if dropouts else (space.fixed.get("head", {}).get("dropout", 0.0),),
        )
        reduce_after = set(space.fixed.get("reduce_after", []))

        def choice(i: int, key: str) -> _Choice:
            name = f"layer{i}.{key}"
            if name in positions:
                return _Choice(positions[name], tuple(space.decisions[positions[name]].choices))
            return _Choice(None, (fixed_layer[key],))

        self.layers = []
        stage = 0
        # the children as the search trains them (training.search_width), which the supernet ranks
        widen, width = space.fixed["top"].get("widen", 1.0), space.fixed["training"]["search_width"]
        for i in range(self.max_depth):
            layer = {key: choice(i, key) for key in ("kernel_height", "kernel_width", "batch_norm", "activation")}
            filters = choice(i, "filters")  # the layer's own filters: its choices widened for its stage
            layer["filters"] = _Choice(filters.position, tuple(widened(f, widen, stage, width) for f in filters.values))
            # per earlier layer, the position of the decision that connects it, or ALWAYS (inputs:
            # skips, the previous layer); None for inputs: previous
            mode = fixed_layer.get("inputs")
            layer["inputs"] = (
                None
                if mode == "previous"
                else [positions[f"layer{i}.input{j}"] if j in skip_sources(mode, i) else ALWAYS for j in range(i)]
            )
            layer["stage"] = stage
            self.layers.append(layer)
            stage += i in reduce_after
        self.channels = int(input_shape[-1])
        self.max_filters = [max(layer["filters"].values) for layer in self.layers]

        keras.utils.set_random_seed(seed)
        seeds = iter(range(seed * 10_000, (seed + 1) * 10_000))
        # A seeded Keras initializer gives the same values at every call: one seed per variable, or
        # every layer's kernel (of one shape in cnn10) would start the same.
        init = lambda shape: keras.initializers.GlorotUniform(seed=next(seeds))(shape)  # noqa: E731
        var = lambda value, name: tf.Variable(value, name=name, dtype=tf.float32)  # noqa: E731
        self.kernels, self.biases, self.projections, self.norms, self.heads = [], [], [], [], []
        for i, layer in enumerate(self.layers):
            height, width = max(layer["kernel_height"].values), max(layer["kernel_width"].values)
            cin = max([self.channels, self.max_filters[i], *self.max_filters[:i]])
            self.kernels.append(var(init((height, width, cin, self.max_filters[i])), f"layer{i}_kernel"))
            self.biases.append(var(tf.zeros(self.max_filters[i]), f"layer{i}_bias"))
            self.projections.append(
                [var(init((1, 1, self.max_filters[j], self.max_filters[i])), f"layer{i}_project{j}") for j in range(i)]
            )
            # gamma, beta, moving mean and variance per placement, one row per width (its first
            # `filters` entries used): a width is an index, not a branch of the graph
            shape = (len(layer["filters"].values), self.max_filters[i])
            self.norms.append(
                {
                    placement: [
                        var(tf.ones(shape), f"layer{i}_bn_{placement}_gamma"),
                        var(tf.zeros(shape), f"layer{i}_bn_{placement}_beta"),
                        var(tf.zeros(shape), f"layer{i}_bn_{placement}_mean"),
                        var(tf.ones(shape), f"layer{i}_bn_{placement}_variance"),
                    ]
                    for placement in {_placement(v) for v in layer["batch_norm"].values} - {"none"}
                }
            )
            self.heads.append(var(init((self.max_filters[i], num_classes)), f"layer{i}_head"))
        self.head_bias = var(tf.zeros(num_classes), "head_bias")
        self.trainable = [
            *self.kernels,
            *self.biases,
            *(p for ps in self.projections for p in ps),
            # gamma and beta, not the moving statistics
            *(v for norms in self.norms for vs in norms.values() for v in vs[:2]),
            *self.heads,
            self.head_bias,
        ]
        self.optimizer = MaskedAdam(self.trainable, learning_rate)
        self.augment = _augmentation_model(space, input_shape)
        from nas.builder import BN_MOMENTUM

        # The moving statistics' momentum: the builder's while training; k / (k + 1) at the k-th batch of
        # a recalibration, which makes them the exact mean of its batches' statistics.
        self.bn_momentum = tf.Variable(BN_MOMENTUM, trainable=False, name="bn_momentum")
        # Steps taken: seeds the step's dropout, so that a run restored from its state goes on as it would have.
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps")
        self.seed = seed
        self.traces = 0  # how often a step was traced: once per step function, whatever the architectures
        self.train_step = tf.function(self._train_step, reduce_retracing=True, autograph=False)
        self.correct = tf.function(self._correct, reduce_retracing=True, autograph=False)
        # With the batch's own normalisation statistics: a controller's reward on one validation batch
        # (the moving statistics are shared by children whose kernels and inputs differ).
        self.correct_in_batch = tf.function(
            lambda x, y, arch: self._correct(x, y, arch, batch_statistics=True), reduce_retracing=True, autograph=False
        )
        self._calibrate = tf.function(self._calibrate_step, reduce_retracing=True, autograph=False)

    # -- architectures ---------------------------------------------------------------------------

    def encode(self, arch: Architecture):
        import tensorflow as tf

        return tf.constant(arch.choices, dtype=tf.int32)

    def widest(self, arch: Architecture) -> Architecture:
        """`arch` with every layer's filters at their widest choice."""
        choices = list(arch.choices)
        for layer in self.layers:
            filters = layer["filters"]
            if filters.position is not None:
                choices[filters.position] = int(np.argmax(filters.values))
        return Architecture(arch.space, tuple(choices))

    # -- the forward pass ------------------------------------------------------------------------

    def logits(self, x, arch, training: bool, batch_statistics: bool = False):
        """Logits of the child `arch` (an int32 tensor) for raw-pixel images `x`. Batch normalisation
        uses the batch's statistics while training and with `batch_statistics`, else the moving ones."""
        import tensorflow as tf

        x = tf.cast(x, tf.float32) / 255.0
        if training and self.augment is not None:
            x = self.augment(x, training=True)
        depth = _value(self.depth, arch)
        outputs, fed = [], []
        for i in range(len(self.layers)):
            masks = self._input_masks(i, arch)
            active = tf.less(i, depth)

            def compute(i=i, masks=masks):
                return self._layer(i, x, outputs, masks, arch, training, batch_statistics)

            if self.depth.position is None:  # every layer is active
                outputs.append(compute())
            else:
                # zeros of the active layer's shape: tf.cond's gradient fails on branches of other shapes
                outputs.append(tf.cond(active, compute, lambda i=i: self._zeros(i, x, arch)))
            fed.append([m * tf.cast(active, tf.int32) for m in masks])  # an inactive layer feeds nothing
        logits = tf.convert_to_tensor(self.head_bias)  # [classes], broadcast over the batch below
        rate = tf.cast(_value(self.dropout, arch), tf.float32)
        for i in range(self.max_depth):
            # an end: active and fed by no later active layer. Its pooled features are few, so every
            # layer's are computed and the others multiplied by 0.
            feeds = tf.add_n([fed[k][i] for k in range(i + 1, self.max_depth)] or [tf.constant(0)])
            is_end = tf.cast(tf.logical_and(tf.less(i, depth), tf.equal(feeds, 0)), tf.float32)
            features = tf.reduce_mean(outputs[i], axis=(1, 2))
            if training and any(self.dropout.values):  # the identity at rate 0
                features = tf.nn.experimental.stateless_dropout(
                    features, rate=rate, seed=tf.stack([tf.constant(self.seed, tf.int64), self.steps * 64 + i])
                )
            logits += is_end * tf.matmul(features, self.heads[i][: tf.shape(features)[-1]])
        return logits

    def _zeros(self, i: int, image, arch):
        """What an inactive layer outputs: zeros of the shape it would have had."""
        import tensorflow as tf

        scale = 2 ** self.layers[i]["stage"]
        height, width = (-(-int(n) // scale) for n in self.input_shape[:2])  # max pooling with padding "same"
        filters = tf.cast(_value(self.layers[i]["filters"], arch), tf.int32)
        return tf.zeros(tf.stack([tf.shape(image)[0], height, width, filters]))

    def _input_masks(self, i: int, arch) -> list:
        """0/1 per earlier layer: does it feed layer i."""
        import tensorflow as tf

        positions = self.layers[i]["inputs"]
        if positions is None:  # inputs: previous
            return [tf.constant(int(j == i - 1)) for j in range(i)]
        # the choices are (False, True): the index is the value
        return [tf.constant(1) if p == ALWAYS else tf.gather(arch, p) for p in positions]

    def _layer(self, i: int, image, outputs: list, masks: list, arch, training: bool, batch_statistics: bool):
        import keras
        import tensorflow as tf

        layer = self.layers[i]
        stage = layer["stage"]
        filters = tf.cast(_value(layer["filters"], arch), tf.int32)
        pooled = lambda j: _pool(outputs[j], stage - self.layers[j]["stage"])  # noqa: E731
        count = tf.add_n(masks) if masks else tf.constant(0)

        def from_image():
            return _pool(image, stage)

        def from_one():
            source = tf.argmax(tf.stack(masks), output_type=tf.int32)
            return tf.switch_case(source, [lambda j=j: pooled(j) for j in range(i)])

        def from_several():
            shape = tf.shape(from_image())  # of every pooled source at this layer's resolution
            total = None
            for j in range(i):

                def project(j=j):
                    h = pooled(j)
                    kernel = self.projections[i][j][:, :, : tf.shape(h)[-1], :filters]
                    return tf.nn.conv2d(h, kernel, 1, "SAME")

                def nothing():
                    return tf.zeros(tf.stack([shape[0], shape[1], shape[2], filters]))

                part = tf.cond(tf.greater(masks[j], 0), project, nothing)
                total = part if total is None else total + part
            return total

        if layer["inputs"] is None or not masks:  # inputs: previous, or layer 0: known without the architecture
            h = pooled(i - 1) if i else from_image()
        else:
            h = tf.switch_case(tf.minimum(count, 2), [from_image, from_one, from_several])
        kh = tf.cast(_value(layer["kernel_height"], arch), tf.int32)
        kw = tf.cast(_value(layer["kernel_width"], arch), tf.int32)
        kernel = self.kernels[i]
        top, left = (kernel.shape[0] - kh) // 2, (kernel.shape[1] - kw) // 2
        cin = tf.shape(h)[-1]
        h = tf.nn.conv2d(h, tf.slice(kernel, tf.stack([top, left, 0, 0]), tf.stack([kh, kw, cin, filters])), 1, "SAME")

        activations = layer["activation"].values
        if len(activations) == 1:
            activate = keras.activations.get(activations[0])
        else:
            act_index = _index(layer["activation"], arch)

            def activate(t):
                return tf.switch_case(act_index, [lambda a=a: keras.activations.get(a)(t) for a in activations])

        bias = self.biases[i][:filters]
        width = _index(layer["filters"], arch)
        branches = {
            "none": lambda: activate(h + bias),
            "before_activation": lambda: activate(
                self._norm(i, "before_activation", width, filters, h, training, batch_statistics)
            ),
            "after_activation": lambda: self._norm(
                i, "after_activation", width, filters, activate(h + bias), training, batch_statistics
            ),
        }
        placements = [_placement(p) for p in layer["batch_norm"].values]
        if len(placements) == 1:
            return branches[placements[0]]()
        return tf.switch_case(_index(layer["batch_norm"], arch), [branches[p] for p in placements])

    def _norm(self, i: int, placement: str, width, filters, h, training: bool, batch_statistics: bool = False):
        """Batch normalisation of `h` with the parameters of the layer's `width`-th width (an index),
        the first `filters` of each row."""
        import tensorflow as tf

        gamma, beta, mean, variance = (v[width][:filters] for v in self.norms[i][placement])
        if not training and not batch_statistics:
            return tf.nn.batch_normalization(h, mean, variance, beta, gamma, BN_EPSILON)
        batch_mean, batch_variance = tf.nn.moments(h, axes=[0, 1, 2])
        if not training:
            return tf.nn.batch_normalization(h, batch_mean, batch_variance, beta, gamma, BN_EPSILON)
        at = tf.stack([tf.fill([filters], width), tf.range(filters)], axis=1)
        for moving, value in ((self.norms[i][placement][2], batch_mean), (self.norms[i][placement][3], batch_variance)):
            moving.scatter_nd_update(at, tf.gather_nd(moving, at) * self.bn_momentum + value * (1 - self.bn_momentum))
        return tf.nn.batch_normalization(h, batch_mean, batch_variance, beta, gamma, BN_EPSILON)

    # -- steps -----------------------------------------------------------------------------------

    def _train_step(self, x, y, arch):
        import tensorflow as tf

        self.traces += 1  # Python runs this once per trace
        with tf.GradientTape() as tape:
            logits = self.logits(x, arch, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=logits)
            )
        gradients = tape.gradient(loss, self.trainable, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        self.optimizer.apply(gradients)
        self.steps.assign_add(1)
        return loss

    def _calibrate_step(self, x, arch):
        self.traces += 1
        self.logits(x, arch, training=True)  # for its batch-norm updates
        self.steps.assign_add(1)

    def recalibrate(self, batches, arch) -> None:
        """Sets the moving statistics of the child `arch`'s batch normalisation to their mean over
        `batches` of images, computed with its weights (Single-Path One-Shot, Guo et al. 2019): the
        statistics that training left behind were those of the last children that shared them."""
        from nas.builder import BN_MOMENTUM

        for k, x in enumerate(batches):
            self.bn_momentum.assign(k / (k + 1))
            self._calibrate(x, arch)
        self.bn_momentum.assign(BN_MOMENTUM)

    def accuracy(self, x, y, arch, batch_size: int = 256) -> float:
        """The child's accuracy on all of `x`, `y` with the shared weights."""
        right = sum(
            int(self.correct(x[k : k + batch_size], y[k : k + batch_size], arch)) for k in range(0, len(y), batch_size)
        )
        return right / max(1, len(y))

    # -- state -----------------------------------------------------------------------------------

    def state_variables(self) -> list:
        """Everything a step changes, in a fixed order: what `state` saves and `load_state` restores."""
        moving = [v for norms in self.norms for vs in norms.values() for v in vs[2:]]
        augment = list(self.augment.variables) if self.augment is not None else []  # its random generators' state
        return [*self.trainable, *moving, *self.optimizer.state_variables(), self.steps, *augment]

    def state(self) -> list:
        return [v.numpy() for v in self.state_variables()]

    def load_state(self, arrays: list) -> None:
        variables = self.state_variables()
        if len(arrays) != len(variables):
            raise ValueError(f"got {len(arrays)} arrays, expected {len(variables)}")
        for v, a in zip(variables, arrays):
            if tuple(v.shape) != tuple(a.shape):
                raise ValueError(f"{v.name}: got shape {tuple(a.shape)}, expected {tuple(v.shape)}")
            v.assign(a)

    def _correct(self, x, y, arch, batch_statistics: bool = False):
        import tensorflow as tf

        self.traces += 1
        predicted = tf.argmax(
            self.logits(x, arch, training=False, batch_statistics=batch_statistics), axis=-1, output_type=tf.int32
        )
        return tf.reduce_sum(tf.cast(tf.equal(predicted, tf.cast(y, tf.int32)), tf.int32))

    # -- children out of the supernet ------------------------------------------------------------

    def child_model(self, arch: Architecture):
        """The stand-alone model nas.builder builds for `arch` as the search trains it, holding the
        supernet's weights for it."""
        from nas.builder import bn_placement, build_model

        spec = self.space.resolve(arch, searched=True)
        model = build_model(spec, self.input_shape, self.num_classes)
        widths = [layer["filters"] for layer in spec["layers"]]
        for i, layer in enumerate(spec["layers"]):
            sources = layer["inputs"]
            cin = self.channels if not sources else widths[sources[0]] if len(sources) == 1 else widths[i]
            if len(sources) > 1:
                model.get_layer(f"layer{i}_project").set_weights(
                    [
                        np.concatenate(
                            [self.projections[i][j].numpy()[:, :, : widths[j], : widths[i]] for j in sources], axis=2
                        )
                    ]
                )
            kernel = self.kernels[i].numpy()
            top = (kernel.shape[0] - layer["kernel_height"]) // 2
            left = (kernel.shape[1] - layer["kernel_width"]) // 2
            weights = [
                kernel[top : top + layer["kernel_height"], left : left + layer["kernel_width"], :cin, : widths[i]]
            ]
            placement = bn_placement(layer["batch_norm"])
            if placement != "before_activation":
                weights.append(self.biases[i].numpy()[: widths[i]])
            model.get_layer(f"layer{i}_conv").set_weights(weights)
            if placement != "none":
                position = self.layers[i]["filters"].position
                c = 0 if position is None else arch.choices[position]
                model.get_layer(f"layer{i}_bn").set_weights(
                    [v.numpy()[c, : widths[i]] for v in self.norms[i][placement]]
                )
        fed = {j for layer in spec["layers"] for j in layer["inputs"]}
        ends = [i for i in range(len(spec["layers"])) if i not in fed]
        head = np.concatenate([self.heads[i].numpy()[: widths[i]] for i in ends], axis=0)
        model.get_layer("predictions").set_weights([head, self.head_bias.numpy()])
        return model


class MaskedAdam:
    """Adam that moves only the entries whose gradient is not zero, keeping the others' moments: a
    shared weight the step did not sample stays where it is. Each entry counts its own updates for
    Adam's bias correction, so an entry first sampled late does not take a step several times the
    learning rate. (An entry whose gradient is exactly zero, a dead ReLU's say, counts as not
    sampled: its moments wait rather than decay.)"""

    def __init__(
        self, variables: list, learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
    ):
        import tensorflow as tf

        self.variables, self.learning_rate = variables, tf.Variable(learning_rate, trainable=False)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.counts = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    def state_variables(self) -> list:
        return [self.learning_rate, *self.m, *self.v, *self.counts]

    def apply(self, gradients: list) -> None:
        import tensorflow as tf

        for variable, m, v, n, g in zip(self.variables, self.m, self.v, self.counts, gradients):
            used = tf.not_equal(g, 0)
            n.assign(tf.where(used, n + 1, n))
            m.assign(tf.where(used, self.beta_1 * m + (1 - self.beta_1) * g, m))
            v.assign(tf.where(used, self.beta_2 * v + (1 - self.beta_2) * tf.square(g), v))
            count = tf.maximum(n, 1.0)
            correction = tf.sqrt(1 - tf.pow(self.beta_2, count)) / (1 - tf.pow(self.beta_1, count))
            step = self.learning_rate * correction * m / (tf.sqrt(v) + self.epsilon)
            variable.assign_sub(tf.where(used, step, tf.zeros_like(step)))


def _augmentation_model(space: SearchSpace, input_shape):
    """The space's fixed augmentation as a Keras model (nas.builder's layers), or None."""
    import keras

    from nas.builder import augmentation

    augment = space.fixed.get("augment", {})
    if not any(augment.values()):
        return None
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, augmentation(inputs, augment))


def _placement(value) -> str:
    from nas.builder import bn_placement

    return bn_placement(value)


def _index(choice: _Choice, arch):
    import tensorflow as tf

    return tf.constant(0) if choice.position is None else tf.gather(arch, choice.position)


def _value(choice: _Choice, arch):
    import tensorflow as tf

    return tf.gather(tf.constant(choice.values), _index(choice, arch))


def _pool(x, times: int):
    import tensorflow as tf

    if times <= 0:
        return x
    return tf.nn.max_pool2d(x, 2**times, 2**times, "SAME")
