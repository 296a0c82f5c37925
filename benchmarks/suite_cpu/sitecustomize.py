"""Loaded by every Python process that benchmarks/suite_cpu.py starts (through PYTHONPATH): once a
second, and at exit, the process writes its CPU seconds, whether it imported TensorFlow, the test
that started it (pytest's PYTEST_CURRENT_TEST, which subprocesses and Ray's workers inherit) and its
command line to a file of its own in $NAS_CPU_LOG. Nothing is written without that variable."""

import os
import sys
import threading
import time

_folder = os.environ.get("NAS_CPU_LOG")


def _write() -> None:
    times = os.times()
    line = "\t".join(
        [
            f"{times.user + times.system:.2f}",
            str(int("tensorflow" in sys.modules)),
            os.environ.get("PYTEST_CURRENT_TEST", "-").rsplit(" ", 1)[0],
            " ".join(sys.argv[:4])[:200],
        ]
    )
    try:
        with open(os.path.join(_folder, f"{os.getpid()}.tsv"), "w") as f:
            f.write(line + "\n")
    except OSError:
        pass


def _every_second() -> None:
    while True:
        time.sleep(1.0)
        _write()


if _folder:
    import atexit

    threading.Thread(target=_every_second, daemon=True, name="nas-cpu-log").start()
    atexit.register(_write)
