"""`nas` as a user runs it, for the tests: `python -m nas.cli ARGS` in a process of its own.

    result = run_nas("search", "--budget", "2", cwd=tmp_path)          # waits; CompletedProcess
    process = start_nas("search", "--name", "a", cwd=tmp_path, faults="2:slow")  # returns at once

The command sees this environment minus what would change it behind a test's back: RAY_ADDRESS
(a search would join someone's cluster), MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_NAME (it would
log to someone's MLflow) and NAS_TEST_FAULTS (set only through `faults`). A started
command leads a process group of its own, so `os.killpg` ends it with the Ray processes it started.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

NAS = [sys.executable, "-m", "nas.cli"]
UNSET = ("RAY_ADDRESS", "NAS_TEST_FAULTS", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")


def nas_env(faults: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment for a `nas` command: without UNSET, with `faults` and `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    if faults:
        env["NAS_TEST_FAULTS"] = faults
    return {**env, **extra}


def run_nas(
    *args: str, cwd, faults: str | None = None, timeout: float = 600, **extra_env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*NAS, *args],
        cwd=cwd,
        env=nas_env(faults, **extra_env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_nas(
    *args: str,
    cwd,
    faults: str | None = None,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    memory_limit: int | None = None,
    **extra_env: str,
) -> subprocess.Popen:
    """Started now (the caller reads or waits); `stdout=subprocess.DEVNULL` for a command whose
    output nobody reads, which could otherwise fill the pipe and block it. `stdout` and `stderr`
    also take an open file, for output read while the command runs. `memory_limit` (bytes) caps
    the command's address space (RLIMIT_AS): an allocation beyond it fails."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.Popen(
        [*NAS, *args],
        cwd=cwd,
        env=nas_env(faults, **extra_env),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        text=True,
        start_new_session=True,
        preexec_fn=limit_memory if memory_limit else None,
    )
