"""`nas` as a user runs it, for the tests: `python -m nas.cli ARGS` in a process of its own.

    result = run_nas("search", "--budget", "2", cwd=tmp_path)          # waits; CompletedProcess
    process = start_nas("search", "--name", "a", cwd=tmp_path, faults="2:slow")  # returns at once
    result, url, status = run_with_dashboard("search", cwd=tmp_path)  # and the dashboard's page status

The command sees this environment minus what would change it behind a test's back: RAY_ADDRESS
(a search would join someone's cluster), MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_NAME (it would
log to someone's MLflow) and NAS_TEST_FAULTS (set only through `faults`). A started
command leads a process group of its own, so `os.killpg` ends it with the Ray processes it started.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request

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


def run_with_dashboard(*args: str, cwd) -> tuple[subprocess.CompletedProcess, str | None, int | None]:
    """Runs `nas ARGS`, a search, as a user starts it (its Ray dashboard on); once it prints the dashboard's
    URL, fetches the page. Returns the finished process, the URL and the page's HTTP status."""
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: stdout is read as it comes
        process = start_nas(*args, cwd=cwd, stderr=errors)
        url, status, output = None, None, []
        try:
            for line in process.stdout:
                output.append(line)
                match = re.search(r"Ray dashboard: (http://127\.0\.0\.1:\d+)", line)
                if match:
                    url = match.group(1)
                    for _ in range(30):  # the dashboard may take a few seconds to answer
                        try:
                            status = urllib.request.urlopen(url, timeout=5).status
                            break
                        except OSError:
                            time.sleep(1)
            process.wait(timeout=900)
        finally:
            process.kill()
        errors.seek(0)
        result = subprocess.CompletedProcess(process.args, process.returncode, "".join(output), errors.read())
        return result, url, status
