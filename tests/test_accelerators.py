"""The strategy and dtype policy for each flag combination, and mixed precision trained for real on CPU."""

import numpy as np
import pytest

from nas import accelerators
from nas.accelerators import CPU, Plan, choose
from nas.errors import InputError

keras = pytest.importorskip("keras")


@pytest.mark.parametrize(
    "gpus, tpu, precision, plan",
    [
        (0, None, None, CPU),
        (0, None, "off", CPU),
        (0, None, "bfloat16", Plan("default", "mixed_bfloat16")),
        (1, None, None, Plan("default", "float32")),
        (1, None, "float16", Plan("default", "mixed_float16")),
        (0.5, None, "float16", Plan("default", "mixed_float16")),
        (2, None, None, Plan("mirrored", "float32")),
        (4, None, "float16", Plan("mirrored", "mixed_float16")),
        (0, "local", None, Plan("tpu", "mixed_bfloat16", 32, "local")),
        (0, "my-tpu", "off", Plan("tpu", "float32", 32, "my-tpu")),
    ],
)
def test_each_flag_combination_gets_its_strategy_and_policy(gpus, tpu, precision, plan):
    assert choose(gpus, tpu, precision) == plan


@pytest.mark.parametrize(
    "gpus, tpu, precision, message",
    [
        (0, None, "float16", "mixed_precision: float16 without GPUs"),
        (1, "local", None, "tpu: given with --gpus-per-trial"),
        (0, "local", "float16", "mixed_precision: float16 on a TPU, expected bfloat16"),
        (0, None, "half", "mixed_precision: got 'half'"),
    ],
)
def test_combinations_that_cannot_work_are_refused(gpus, tpu, precision, message):
    with pytest.raises(InputError, match=message):
        choose(gpus, tpu, precision)


def test_a_tpu_batch_is_a_multiple_of_8_per_core():
    tpu = choose(0, "local")
    assert [accelerators.batch_size(b, tpu, replicas=8) for b in (1, 32, 64, 100)] == [64, 64, 64, 128]
    assert accelerators.batch_size(32, tpu, replicas=1) == 32
    assert accelerators.batch_size(100, CPU, replicas=1) == 100


def _arrays():
    """scikit-learn's digits 0, 1 and 2 as raw pixels: 537 images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = digits.target < 3
    x = (digits.images[keep] * 16).clip(0, 255).astype(np.uint8)[..., None]
    y = digits.target[keep]
    return {
        "x_train": x[:400],
        "y_train": y[:400],
        "x_val": x[400:],
        "y_val": y[400:],
        "x_test": x[400:],
        "y_test": y[400:],
    }


SPEC = {
    "space": "s",
    "family": "dense",
    "layers": [{"units": 32, "activation": "relu", "batch_norm": True, "dropout": 0.0}],
    "training": {"optimizer": "adam", "learning_rate": 0.01, "schedule": "constant", "batch_size": 32},
}


def test_a_bfloat16_child_trains_on_cpu_with_a_float32_softmax():
    from nas.trainer import _fit

    arrays = _arrays()
    model, history, _ = _fit(
        SPEC,
        arrays["x_train"],
        arrays["y_train"],
        input_shape=(8, 8, 1),
        num_classes=3,
        epochs=2,
        seed=0,
        validation=(arrays["x_val"], arrays["y_val"]),
        plan=choose(mixed_precision="bfloat16"),
    )
    assert model.get_layer("layer0_dense").compute_dtype == "bfloat16"
    assert model.get_layer("layer0_dense").variable_dtype == "float32"  # the weights stay float32
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model(arrays["x_val"]).dtype == "float32"
    assert np.isfinite(history["loss"]).all() and history["val_accuracy"][-1] > 0.5  # 3 classes: chance 1/3
    assert keras.mixed_precision.global_policy().name == "float32"  # the rest of the process is untouched


def test_a_bfloat16_trained_winner_is_exported_float32(tmp_path):
    from nas.trainer import train_final

    spec = {**SPEC, "training": {**SPEC["training"], "schedule": "cosine"}}
    model, metrics = train_final(
        spec, _arrays(), input_shape=(8, 8, 1), num_classes=3, epochs=3, seed=0, plan=choose(mixed_precision="bfloat16")
    )
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert metrics["test_accuracy"] > 0.5
    # compiled with the optimizer it trained with (its schedule's decay steps included) and its state
    trained, _ = train_final(spec, _arrays(), input_shape=(8, 8, 1), num_classes=3, epochs=3, seed=0)
    assert model.optimizer.get_config() == trained.optimizer.get_config()
    assert int(model.optimizer.iterations) == int(trained.optimizer.iterations) > 0
    assert len(model.optimizer.variables) == len(trained.optimizer.variables)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    x = _arrays()["x_test"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_a_child_trains_under_mirrored_strategy_on_cpu():
    """Several GPUs train under MirroredStrategy; on a machine without GPUs it mirrors the CPU."""
    from nas.trainer import train_child

    plan = Plan("mirrored", "float32")
    assert type(accelerators.strategy(plan)).__name__ == "MirroredStrategy"
    metrics = train_child(SPEC, _arrays(), input_shape=(8, 8, 1), num_classes=3, epochs=2, seed=0, plan=plan)
    assert metrics["val_accuracy"] > 0.5
