import pytest

from nas.data import load_data
from nas.trainer import ChildFailed, train_child, train_final
from search_spaces import load_space


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def dnn_spec(**training):
    training = {"learning_rate": 0.01, **training}
    space = load_space("dnn")
    spec = space.resolve(space.architecture([0] * len(space.decisions)))  # one layer of 64 units
    spec["training"].update(training)
    return spec


def test_a_child_learns_and_reports_its_metrics(digits):
    metrics = train_child(dnn_spec(), digits.search_arrays(), input_shape=digits.input_shape, num_classes=10, epochs=3)
    assert metrics["val_accuracy"] > 0.8  # chance is 0.1
    assert metrics["val_accuracy"] == max(metrics["val_accuracy_per_epoch"])
    assert metrics["epochs"] == 3 and len(metrics["val_accuracy_per_epoch"]) == 3
    assert metrics["params"] == 64 * 64 + 64 + 64 * 10 + 10
    assert 0 < metrics["fit_seconds"] < 60
    assert 0 < metrics["latency_ms"] < 1000  # one image, batch of 1, on this process


def test_a_diverging_child_fails_with_a_reason(digits):
    spec = dnn_spec(optimizer="sgd", learning_rate=1e9, schedule="constant")
    with pytest.raises(ChildFailed, match=r"training loss became nan in epoch 1"):
        train_child(spec, digits.search_arrays(), input_shape=digits.input_shape, num_classes=10, epochs=3)


def test_the_winner_is_retrained_on_train_and_validation_and_tested(digits):
    model, metrics = train_final(
        dnn_spec(), digits.final_arrays(), input_shape=digits.input_shape, num_classes=10, epochs=3
    )
    assert metrics["test_accuracy"] > 0.8 and metrics["epochs"] == 3
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 10)


def test_weight_decay_shrinks_the_weights_and_ema_ends_training_on_their_average(digits):
    import keras
    import numpy as np

    class LastRawWeights(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # before fit swaps in the average
            self.weights = [w.copy() for w in self.model.get_weights()]

    def train(callbacks=(), **training):
        return train_final(
            dnn_spec(**training),
            digits.final_arrays(),
            input_shape=digits.input_shape,
            num_classes=10,
            epochs=2,
            callbacks=callbacks,
        )

    def norm(model):
        return sum(float(np.sum(w**2)) for w in model.trainable_weights[::2])  # the kernels

    plain, _ = train()
    decayed, metrics = train(weight_decay=5.0)  # each step shrinks the weights by up to 5 %
    assert norm(decayed) < 0.5 * norm(plain) and metrics["test_accuracy"] > 0.5

    raw = LastRawWeights()
    averaged, metrics = train(callbacks=[raw], ema=0.9)
    assert metrics["test_accuracy"] > 0.8
    differences = [np.abs(a - r).max() for a, r in zip(averaged.get_weights(), raw.weights, strict=True)]
    assert max(differences) > 1e-3  # the model returned holds the average, not the last step's weights
