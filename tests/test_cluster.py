"""`--address`: a search joins a Ray cluster that `ray start --head` started, as on a real cluster."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).parent / "ray")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head(tmp_path):
    """A Ray head of its own, ended with its process group: `ray stop` would end every Ray on the machine."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    process = subprocess.Popen([RAY, "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
                                "--include-dashboard", "false", "--disable-usage-stats"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(600):  # until the head accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "ray start failed"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)  # a head takes 30 s and more to end gracefully; it holds nothing we keep
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_search_joins_a_running_cluster(tmp_path, head):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "NAS_TEST_FAULTS")}
    args = [sys.executable, "-m", "nas.cli", "search", "--address", head, "--space", "dnn", "--budget", "3",
            "--epochs", "1", "--final-epochs", "3", "--data", "digits", "--runs-dir", "runs"]
    refused = subprocess.run([*args, "--name", "a"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**env, "RAY_AUTH_MODE": "disabled"})
    assert refused.returncode == 2 and "run nas with RAY_AUTH_MODE=token" in refused.stderr  # the head wants a token
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs" / "a").exists()

    joined = subprocess.run([*args, "--name", "b"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**env, "RAY_AUTH_MODE": "token"})
    assert joined.returncode == 0, joined.stderr
    config = json.loads((tmp_path / "runs" / "b" / "config.json").read_text())
    assert config["address"] == head and config["workers"] == 2 and config["ray_resources"] == {"CPU": 2.0}
    trials = [json.loads(line) for line in (tmp_path / "runs" / "b" / "trials.jsonl").read_text().splitlines()]
    assert [t["status"] for t in trials] == ["completed"] * 3
    assert json.loads((tmp_path / "runs" / "b" / "summary.json").read_text())["test_accuracy"] > 0.2
