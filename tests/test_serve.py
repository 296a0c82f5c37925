"""`nas serve` as a user runs it: the real command in a subprocess with its own local Ray and Ray
Serve, on a free localhost port, answering real HTTP requests with a real digits model directory;
its answers must equal `nas predict --json` on the same files."""

import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from nas_commands import run_nas, start_nas
from PIL import Image

START_TIMEOUT = 180  # Ray, Serve and two replicas that import TensorFlow, on a busy 2-core machine
STOP_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def end_session(process: subprocess.Popen) -> None:
    """Kills what the test started: the command's process group (Ray's GCS and raylet are in it)
    and every process of its session (Ray's workers have process groups of their own)."""
    for pid in [process.pid, *session_members(process.pid)]:
        try:
            os.killpg(pid, signal.SIGKILL) if pid == process.pid else os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    process.wait(timeout=30)


def replica_memory(sid: int) -> int:
    """The resident bytes of the Serve replicas among the session's processes."""
    total = 0
    for pid in session_members(sid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"ServeReplica" not in f.read():
                    continue
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:  # fields after the command: state, ppid, pgrp, session, ...
                members.append(int(entry))
    return members


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """60 digits of the test split as PNG files, and a text file posing as a PNG."""
    from nas.data import load_data

    data = load_data("digits", seed=0)
    folder = tmp_path_factory.mktemp("serve_images")
    paths = []
    for i in range(60):
        paths.append(folder / f"{i:03d}_{data.y_test[i]}.png")
        Image.fromarray(data.x_test[i, :, :, 0]).save(paths[-1])
    (folder / "bad.png").write_text("not an image\n")
    return folder, paths


def test_serve_answers_like_predict_refuses_bad_images_and_stops_cleanly(digits_model_dir, digit_files, tmp_path):
    folder, paths = digit_files
    port = free_port()
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        server = start_nas(
            "serve", str(digits_model_dir), "--port", str(port), "--replicas", "2", cwd=None, stdout=out, stderr=err
        )
    started = time.monotonic()
    try:
        # What `nas predict` says about the same files, computed while the server starts.
        predicted = run_nas("predict", str(digits_model_dir), str(folder), "--json", cwd=None, timeout=300)
        assert predicted.returncode == 2 and "bad.png" in predicted.stderr  # the bad file, named
        expected = {os.path.basename(a["image"]): a["labels"] for a in json.loads(predicted.stdout)}
        assert len(expected) == len(paths)
        print(f"nas predict done {time.monotonic() - started:.1f} s after start")

        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert server.poll() is None, f"nas serve exited with {server.returncode}: {read(tmp_path / 'err')}"
            if f"{url}/predict" in read(tmp_path / "out"):  # printed once Serve reports the replicas up
                try:
                    health = requests.get(f"{url}/health", timeout=5)
                    if health.status_code == 200:
                        break
                except requests.RequestException:
                    pass
            assert time.monotonic() < deadline, f"not ready within {START_TIMEOUT} s: {read(tmp_path / 'err')}"
            time.sleep(0.5)
        assert health.json()["classes"] == [str(d) for d in range(10)]
        print(f"ready {time.monotonic() - started:.1f} s after start")
        replicas = {requests.get(f"{url}/health", timeout=5).json()["replica"] for _ in range(20)}
        assert len(replicas) == 2, replicas  # --replicas 2: both answer
        # A second server on the same port is refused at once, before it starts Ray.
        second = start_nas("serve", str(digits_model_dir), "--port", str(port), cwd=None)

        with requests.Session() as http:
            # A good image as the raw body, and three as a multipart upload (one request, one model call).
            answer = http.post(f"{url}/predict", data=paths[0].read_bytes(), timeout=30)
            assert answer.status_code == 200, answer.text
            assert_same(answer.json()["predictions"][0]["labels"], expected[paths[0].name])
            files = [("file", (p.name, p.read_bytes(), "image/png")) for p in paths[1:4]]
            answer = http.post(f"{url}/", files=files, params={"top_k": 2}, timeout=30)
            assert answer.status_code == 200, answer.text
            predictions = answer.json()["predictions"]
            assert [p["image"] for p in predictions] == [p.name for p in paths[1:4]]
            for p in predictions:
                assert_same(p["labels"], expected[p["image"]][:2])

            # Not an image: 400 with a one-line JSON error naming it; the server goes on.
            bad = http.post(f"{url}/predict", data=(folder / "bad.png").read_bytes(), timeout=30)
            assert bad.status_code == 400 and "request body: not a readable image" in bad.json()["error"]
            bad = http.post(f"{url}/predict", files=[("file", ("bad.png", b"not an image", "image/png"))], timeout=30)
            assert bad.status_code == 400 and bad.json()["error"].startswith("bad.png: not a readable image")
            assert http.post(f"{url}/predict", params={"top_k": 0}, data=b"x", timeout=30).status_code == 400

            # Hostile bodies: answered 400 or 413 without decoding them, and bodies over the limit
            # without reaching a replica (Serve's proxy answers them): the replicas' memory stays where
            # it was (a 40 MB body a replica received grew it by about 50 MB, and the memory stayed).
            before = replica_memory(server.pid)
            bomb = tmp_path / "bomb.png"
            Image.new("1", (12000, 12000)).save(bomb)  # 17 KB, 144 megapixels: over the cap for 8x8 digits
            for _ in range(4):
                answer = http.post(f"{url}/predict", files=[("file", ("bomb.png", bomb.read_bytes()))], timeout=30)
                assert answer.status_code == 400 and "bomb.png: 12000x12000 pixels" in answer.json()["error"]
            part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
            for extra, head in (({"Content-Type": "multipart/form-data; boundary=x"}, part), ({}, b"")) * 5:
                answer = http.post(f"{url}/predict", data=megabytes(40, head), headers=extra, timeout=60)
                assert answer.status_code == 413 and "more than 33,554,432 bytes" in answer.json()["error"]
            answer = http.post(f"{url}/predict", data=b"\0" * 40 * 2**20, timeout=60)  # with a Content-Length
            assert answer.status_code == 413 and "41,943,040 bytes, expected at most 33,554,432" in answer.text
            after = replica_memory(server.pid)
            print(
                f"replicas' memory before and after 15 hostile requests: {before / 2**20:.0f}, {after / 2**20:.0f} MiB"
            )
            assert after - before < 32 * 2**20

            # The limit itself, chunked: MAX_BODY_BYTES reach the replica (not an image), one byte more does not.
            answer = http.post(f"{url}/predict", data=megabytes(32), timeout=60)
            assert answer.status_code == 400 and "request body: not a readable image" in answer.json()["error"]
            answer = http.post(f"{url}/predict", data=megabytes(32, tail=b"\0"), timeout=60)
            assert answer.status_code == 413 and "more than 33,554,432 bytes" in answer.json()["error"]

            # 50 requests in a row.
            seconds = []
            for path in paths[10:60]:
                start = time.perf_counter()
                answer = http.post(f"{url}/predict", data=path.read_bytes(), timeout=30)
                seconds.append(time.perf_counter() - start)
                assert answer.status_code == 200, answer.text
                assert_same(answer.json()["predictions"][0]["labels"], expected[path.name])
            print(
                f"50 requests in a row: median {statistics.median(seconds) * 1000:.1f} ms, "
                f"max {max(seconds) * 1000:.1f} ms, total {sum(seconds):.2f} s"
            )

        # 40 at once: batched together into model calls, each answer still the one for its image.
        def post(path):
            return path, requests.post(f"{url}/predict", data=path.read_bytes(), timeout=60)

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=40) as pool:
            answers = list(pool.map(post, paths[20:60]))
        print(f"40 requests at once: {time.perf_counter() - start:.2f} s")
        for path, answer in answers:
            assert answer.status_code == 200, answer.text
            assert_same(answer.json()["predictions"][0]["labels"], expected[path.name])

        _, second_err = second.communicate(timeout=120)
        assert second.returncode == 2, second_err
        assert (
            second_err == f"nas: error: --port: cannot listen on 127.0.0.1:{port} (Address already in use), "
            "expected a free port of an address of this machine\n"
        )

        server.send_signal(signal.SIGINT)
        start = time.perf_counter()
        assert server.wait(timeout=STOP_TIMEOUT) == 0, read(tmp_path / "err")
        print(f"stopped {time.perf_counter() - start:.1f} s after SIGINT")
        assert not port_open(port)
        assert read(tmp_path / "err") == ""  # no traceback, and none of Ray's or Serve's chatter
    finally:
        end_session(server)
        if "second" in locals():
            end_session(second)


def megabytes(n: int, head: bytes = b"", tail: bytes = b""):
    """`head`, n MiB of zeros and `tail` as a generator: requests sends it chunked, without a Content-Length."""
    return itertools.chain([head], (b"\0" * 2**20 for _ in range(n)), [tail])


def assert_same(labels: list[dict], expected: list[dict]) -> None:
    assert [x["label"] for x in labels] == [x["label"] for x in expected]
    assert [x["probability"] for x in labels] == pytest.approx([x["probability"] for x in expected], abs=1e-6)


def read(path) -> str:
    return path.read_text()
