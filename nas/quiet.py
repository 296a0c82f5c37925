"""Imports TensorFlow without its C++ start-up messages on the user's terminal.

TensorFlow 2.21 logs CPU features and missing CUDA drivers before its logging is configured, so
TF_CPP_MIN_LOG_LEVEL does not silence them. Importing it with file descriptor 2 pointed at
/dev/null does; Python errors raised by the import still surface as exceptions.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow() -> None:
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with stderr_silenced():
        import keras  # noqa: F401
        import tensorflow

        tensorflow.config.list_physical_devices()  # looks for CUDA now, and logs its absence here
