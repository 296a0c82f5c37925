"""`nas export --format onnx`: model.onnx, converted by tf2onnx and checked with onnxruntime.

    check = write_onnx(model, Path("out/model.onnx"), x_test)   # {"opset", "checked_images", ...}

The model is converted in inference mode (`model(x, training=False)`): Keras's own
`model.export(format="onnx")` converts `model.__call__`, whose random augmentation layers stay in the
graph (ops ONNX does not have, so onnxruntime refuses the file) and would be active if it did not.
The file takes raw pixels, float32 N x H x W x C (named `images`), as model.keras does, and gives
`probabilities`, N x classes. Before it is kept, onnxruntime runs it on the images given (the run's
test split) and must agree with Keras on every top-1 label, probabilities within `TOLERANCE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ExportFailed, InputError

OPSET = 17  # tf2onnx 1.17 converts up to opset 18; onnxruntime runs both
TOLERANCE = 1e-4
BATCH = 256


def check_installed() -> None:
    """InputError naming what to install, before anything is trained or written (found, not
    imported: tf2onnx imports TensorFlow)."""
    from importlib.util import find_spec

    missing = [name for name in ("tf2onnx", "onnxruntime") if find_spec(name) is None]
    if missing:
        raise InputError(
            f"format: onnx needs {' and '.join(missing)}, which are not installed; expected pip install 'nas[onnx]'"
        )


def write_onnx(model, path: Path, images: np.ndarray) -> dict[str, Any]:
    """Converts `model` to `path` and checks it on `images`; returns what was checked (for
    metadata.json). ExportFailed if onnxruntime and Keras disagree."""
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="images")]
    function = tf.function(lambda x: {"probabilities": model(x, training=False)}, input_signature=signature)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=OPSET)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    worst, disagree = 0.0, 0
    for start in range(0, len(images), BATCH):
        x = np.asarray(images[start : start + BATCH], np.float32)
        expected = model(x, training=False).numpy()
        got = session.run(["probabilities"], {"images": x})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
        disagree += int((got.argmax(1) != expected.argmax(1)).sum())
    if worst > TOLERANCE or disagree:
        raise ExportFailed(
            f"model.onnx: onnxruntime disagrees with the Keras model on the run's test images (top-1 differs "
            f"on {disagree} of {len(images)}, probabilities by up to {worst:.2g}, allowed {TOLERANCE:g}); not written"
        )
    path.write_bytes(proto.SerializeToString())
    return {
        "opset": OPSET,
        "converter": f"tf2onnx {tf2onnx.__version__}",
        "checked_with": f"onnxruntime {onnxruntime.__version__}",
        "checked_images": int(len(images)),
        "max_abs_difference": worst,
        "input": "images",
        "output": "probabilities",
    }
