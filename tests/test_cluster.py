"""`--address`: a search on a real two-node Ray cluster (`ray start --head` plus a second
`ray start --address` node with its own temp dir, both on this machine), as on a real cluster;
then the worker node is killed mid-search. The worker node declares one GPU: Ray schedules by
declared resources, so a trial that asks for a GPU goes there (and trains on its CPU). The cluster
runs with token authentication, as `ray start --head` turns it on wherever a token exists (any
local `ray.init` writes one to ~/.ray): the module writes its own token and points every process
at it, so a fresh machine and an old one test the same thing."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from nas_commands import run_nas

RAY = str(Path(sys.executable).parent / "ray")
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "NAS_TEST_FAULTS")}
# The cluster's token, written by the `cluster` fixture: every process of this module reads it from there.
TOKEN = {"RAY_AUTH_TOKEN_PATH": str(Path(tempfile.gettempdir()) / f"nas-test-token-{os.getpid()}")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict) -> subprocess.Popen:
    """A `ray start --block` of its own process group: ended with it, as `ray stop` would end every
    Ray on the machine."""
    return subprocess.Popen(
        [RAY, "start", "--block", "--num-cpus", "1", "--disable-usage-stats", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def end(process: subprocess.Popen, grace: float = 10) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)  # a head takes 30 s and more to end gracefully; it holds nothing we keep
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def node_ids(address: str) -> list[str]:
    script = (
        f"import ray; ray.init(address={address!r}, log_to_driver=False); "
        "print(' '.join(n['NodeID'] for n in ray.nodes() if n['Alive']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**CLEAN_ENV, **TOKEN, "RAY_AUTH_MODE": "token"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


@pytest.fixture(scope="module")
def cluster():
    """A head of 1 CPU and a worker node of 1 CPU and 1 (declared) GPU, both with token
    authentication and the module's own token; yields (address, head's node id, worker node's node
    id, the worker node's process)."""
    token = Path(TOKEN["RAY_AUTH_TOKEN_PATH"])
    token.write_text(secrets.token_hex(32))
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = start(
        ["--head", "--port", str(port), "--include-dashboard", "false"],
        {**CLEAN_ENV, **TOKEN, "RAY_AUTH_MODE": "token"},
    )
    worker = None
    try:
        for _ in range(600):  # until the head accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None, "ray start --head failed"
                time.sleep(0.1)
        (head_node,) = node_ids(address)
        # A short path: Ray's Unix sockets live under it, and a socket path may hold at most 107 bytes.
        temp_dir = tempfile.mkdtemp(prefix="nas-node-", dir="/tmp")
        worker = start(
            ["--address", address, "--temp-dir", temp_dir, "--num-gpus", "1"],
            {**CLEAN_ENV, **TOKEN, "RAY_AUTH_MODE": "token"},
        )
        for _ in range(120):
            nodes = node_ids(address)
            if len(nodes) == 2:
                break
            assert worker.poll() is None, "ray start --address failed"
            time.sleep(1)
        (worker_node,) = set(nodes) - {head_node}
        yield address, head_node, worker_node, worker
    finally:
        if worker:
            end(worker)
        end(head)
        if worker:
            shutil.rmtree(temp_dir, ignore_errors=True)
        token.unlink()


def search(address: str, cwd: Path, name: str, *extra: str, auth: str = "token") -> subprocess.CompletedProcess:
    """`nas search` on the cluster; `auth` is its RAY_AUTH_MODE, not this process's."""
    return run_nas(
        "search",
        "--address",
        address,
        "--data",
        "digits",
        "--runs-dir",
        "runs",
        "--name",
        name,
        *extra,
        cwd=cwd,
        RAY_AUTH_MODE=auth,
        **TOKEN,
    )


def trials(run: Path) -> list[dict]:
    path = run / "trials.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_search_spreads_its_trials_over_both_nodes_of_a_cluster(tmp_path, cluster):
    address, head_node, worker_node, _ = cluster
    refused = search(address, tmp_path, "a", "--space", "dnn", "--budget", "3", auth="disabled")
    assert refused.returncode == 2 and "run nas with RAY_AUTH_MODE=token" in refused.stderr  # the head wants a token
    assert len(refused.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs" / "a").exists()

    settings = ("--space", "dnn", "--budget", "4", "--epochs", "1", "--final-epochs", "3", "--ensemble", "2")
    joined = search(address, tmp_path, "b", *settings)
    assert joined.returncode == 0, joined.stderr[-3000:]
    run = tmp_path / "runs" / "b"
    config = json.loads((run / "config.json").read_text())
    assert (
        config["address"] == address and config["workers"] == 2 and config["ray_resources"] == {"CPU": 2.0, "GPU": 1.0}
    )
    records = trials(run)
    assert [t["status"] for t in records] == ["completed"] * 4
    assert {t["node"] for t in records} == {head_node, worker_node}  # each trial's node is in trials.jsonl
    # the best two retrained at once as Ray tasks on the cluster (not in the driver), then averaged
    summary = json.loads((run / "summary.json").read_text())
    best_two = sorted(records, key=lambda t: (-t["reward"], t["trial"]))[:2]
    assert [m["trial"] for m in summary["final"]["members"]] == [t["trial"] for t in best_two]
    assert summary["test_accuracy"] > 0.2 and "Ensemble of trials" in joined.stdout


def test_data_prepare_on_the_cluster_writes_the_local_route_s_files(tmp_path, cluster):
    """`nas data prepare --address`: Ray Data decodes on both nodes, the driver writes; the shards are
    the tf.data route's byte for byte, dataset.json the same but for its time, the broken file
    skipped and named by both."""
    from nas.photos import write_photo_set

    address = cluster[0]
    write_photo_set(tmp_path / "photos", size=48, per_class=10, seed=0)
    (tmp_path / "photos" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    routes = {}
    for route, extra in (("local", ()), ("ray", ("--address", address))):
        done = run_nas(
            *("data", "prepare", "photos", "--out", route, "--image-size", "32", "--shards", "2", *extra),
            cwd=tmp_path,
            RAY_AUTH_MODE="token",
            **TOKEN,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert [line for line in done.stderr.splitlines() if line.strip()] == [
            f"nas: skipped {Path('photos/cat/broken.jpg')}: not a readable image (UnidentifiedImageError)"
        ]
        routes[route] = tmp_path / route
    local, ray = (json.loads((routes[r] / "dataset.json").read_text()) for r in ("local", "ray"))
    assert {**local, "created": None} == {**ray, "created": None} and local["skipped"][0]["file"] == "cat/broken.jpg"
    shards = sorted(p.name for p in routes["local"].glob("*.tfrecord"))
    assert len(shards) == 6 and shards == sorted(p.name for p in routes["ray"].glob("*.tfrecord"))
    for name in shards:
        assert (routes["local"] / name).read_bytes() == (routes["ray"] / name).read_bytes(), name


def test_an_enas_supernet_trains_as_a_ray_actor_on_the_node_with_the_trials_gpu(tmp_path, cluster):
    """`--strategy enas --gpus-per-trial 1`: the supernet phase asks Ray for a trial's GPU, so it trains
    on the worker node (the only one with a GPU), not in the driver on the head; its finalists and
    the winner's retraining follow it there, and the run is the usual one."""
    from test_enas import SPACE

    address, head_node, worker_node, _ = cluster
    (tmp_path / "tiny.yaml").write_text(
        SPACE.replace("supernet_epochs: 3", "supernet_epochs: 1").replace("finalists: 3", "finalists: 2")
    )
    done = search(
        address,
        tmp_path,
        "e",
        *("--space", "tiny.yaml", "--strategy", "enas", "--gpus-per-trial", "1"),
        *("--epochs", "1", "--final-epochs", "3"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "e"
    assert json.loads((run / "supernet" / "finalists.json").read_text())["node"] == worker_node != head_node
    records = trials(run)
    assert [t["status"] for t in records] == ["completed"] * 2 and {t["node"] for t in records} == {worker_node}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["strategy"] == "enas" and summary["supernet"]["node"] == worker_node
    assert summary["test_accuracy"] > 0.2  # ten classes: chance is 0.1


def test_losing_a_node_mid_search_loses_no_finished_trial(tmp_path, cluster):
    """The worker node is killed (SIGKILL to its processes) once it has finished a trial; the search
    goes on on the head: the trials the node was running are run again or recorded as failed, the
    finished ones stay, and the budget's trials are all there, numbered 1..N."""
    address, head_node, worker_node, worker = cluster
    budget = 6
    run = tmp_path / "runs" / "k"
    killed_after: list[int] = []

    def kill_the_node_once_it_has_finished_a_trial():
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            done = trials(run) if run.exists() else []
            if any(t.get("node") == worker_node for t in done):
                killed_after.append(len(done))
                os.killpg(worker.pid, signal.SIGKILL)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_node_once_it_has_finished_a_trial, daemon=True)
    killer.start()
    done = search(
        address,
        tmp_path,
        "k",
        "--space",
        "dnn",
        "--budget",
        str(budget),
        "--epochs",
        "3",
        "--final-epochs",
        "2",
        "--max-failures",
        "3",
    )
    killer.join(timeout=5)
    assert killed_after, "the worker node finished no trial"
    assert done.returncode == 0, done.stderr[-3000:]
    records = trials(run)
    assert sorted(t["trial"] for t in records) == list(range(1, budget + 1))
    assert len({t["hash"] for t in records}) == budget  # no architecture trained twice
    assert all(t["status"] == "completed" or "WorkerDied" in t["error"] for t in records), records
    after = [t for t in records[killed_after[0] :] if t["status"] == "completed"]
    # The rest ran on the node that is left, but for the one trial the killed node (one CPU) may have
    # finished and reported in the moment before it died.
    assert after and after[-1]["node"] == head_node and sum(t["node"] == worker_node for t in after) <= 1
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
