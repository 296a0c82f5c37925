"""The weight-sharing supernet (nas.supernet) computes exactly the children nas.builder builds."""

import numpy as np
import pytest

from controllers import make_controller
from nas.data import load_data
from search_spaces import load_space, parse_space

TINY = """
name: tiny_supernet
family: conv
layers: [2, 3, 4]
reduce_after: [1]
layer:
  kernel_height: [1, 3, 5]
  kernel_width: [1, 3]
  filters: [4, 8]
  inputs: any
  batch_norm: [before_activation, after_activation, none]
  activation: [relu, tanh]
head: {dropout: [0.0, 0.3]}
training: {batch_size: 32}
"""

# The previous layer always feeds a layer, earlier ones if the architecture says so (ENAS's macro space, cnn10's);
# Filters widened 1.5x after the reduction and halved in the search, as cnn10's.
SKIPS = (
    TINY.replace("inputs: any", "inputs: skips")
    .replace("tiny_supernet", "skips_supernet")
    .replace("reduce_after: [1]", "reduce_after: [1]\nwiden: 1.5")
    .replace("training: {batch_size: 32}", "training: {batch_size: 32, search_width: 0.5}")
)

# Each layer fed by the one before (inputs: previous), depth a decision, fixed batch norm, two
# reductions and fixed augmentation, as in cnn10 (whose own supernet takes too long to trace for a unit test).
CHAIN = """
name: chain_supernet
family: conv
layers: [1, 3]
reduce_after: [0, 1]
layer: {kernel_height: 3, kernel_width: [1, 3], filters: [4, 8], batch_norm: true}
augment: {translation: 0.1, rotation: 0.05}
"""


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", seed=0)


def trained_supernet(space, data, steps: int, seed: int = 0):
    """A supernet after `steps` shared-weight steps, each on a fresh random architecture and batch,
    so that its weights and batch-norm statistics are far from their initial values."""
    from nas.supernet import ConvSupernet

    net = ConvSupernet(space, data.input_shape, data.num_classes, seed=seed, learning_rate=0.01)
    sampler = make_controller("random", space, seed=seed, budget=1000)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = rng.choice(len(data.y_train), 32, replace=False)
        loss = net.train_step(data.x_train[batch], data.y_train[batch], net.encode(sampler.ask()))
        assert np.isfinite(float(loss))
    return net, sampler


@pytest.mark.parametrize("space_name, steps, children", [("tiny", 20, 8), ("skips", 20, 4), ("chain", 20, 4)])
def test_a_child_copied_out_of_the_supernet_predicts_as_in_it(digits, space_name, steps, children):
    """Every architecture's stand-alone model (nas.builder), the supernet's weights copied in, gives
    the supernet's own probabilities within 1e-5; the steps were traced once, whatever the
    architectures (the architecture is a tensor)."""
    import tensorflow as tf

    space = parse_space({"tiny": TINY, "skips": SKIPS, "chain": CHAIN}[space_name])
    net, sampler = trained_supernet(space, digits, steps)
    images = digits.x_val[:64]
    for _ in range(children):
        arch = sampler.ask()
        model = net.child_model(arch)
        expected = tf.nn.softmax(net.logits(tf.constant(images), net.encode(arch), training=False)).numpy()
        np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-5)
        correct = int(net.correct(images, digits.y_val[:64], net.encode(arch)))
        assert correct == int((expected.argmax(-1) == digits.y_val[:64]).sum())
    assert net.traces == 2  # one trace of train_step and one of correct


def test_a_step_moves_only_the_weights_the_architecture_sampled(digits):
    from nas.supernet import ConvSupernet

    space = parse_space(CHAIN)
    net = ConvSupernet(space, digits.input_shape, digits.num_classes)
    arch = space.architecture([0] * len(space.decisions))  # 1 layer of 3x1 kernels and 4 filters
    before = [v.numpy().copy() for v in net.trainable]
    for _ in range(3):
        net.train_step(digits.x_train[:32], digits.y_train[:32], net.encode(arch))
    moved = {v.name.split(":")[0] for v, old in zip(net.trainable, before) if not np.array_equal(v.numpy(), old)}
    assert "layer0_kernel" in moved and "head_bias" in moved
    assert "layer1_kernel" not in moved and "layer2_kernel" not in moved  # beyond the depth
    kernel = net.kernels[0].numpy()
    assert not np.array_equal(kernel[:, 1, :, :4], before[0][:, 1, :, :4])
    assert np.array_equal(kernel[:, [0, 2]], before[0][:, [0, 2]])  # only the centre column of the 3x3 kernel
    assert np.array_equal(kernel[..., 4:], before[0][..., 4:])  # only the first 4 of its 8 filters
    gamma = net.norms[0]["before_activation"][0].numpy()
    assert np.array_equal(gamma[1], np.ones(8)) and not np.array_equal(gamma[0, :4], np.ones(4))  # width 4's row


@pytest.mark.parametrize(
    "space_name, expected",
    [
        ("dnn", "space 'dnn' is of family dense; a supernet exists for the conv family only"),
        ("bench_cnn", "space 'bench_cnn' decides training.learning_rate, which shared weights cannot compare"),
    ],
)
def test_spaces_without_a_supernet_are_named(space_name, expected):
    from nas.supernet import supported

    assert expected in supported(load_space(space_name))
