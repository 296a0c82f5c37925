"""`--address`: a search joins a Ray cluster that `ray start --head` started, as on a real cluster."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

RAY = str(Path(sys.executable).parent / "ray")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                    "--disable-usage-stats"], check=True, capture_output=True, env=env, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


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
