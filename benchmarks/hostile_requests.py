"""`nas serve`'s replicas' memory before and after hostile requests, and a good answer after them.

    python benchmarks/hostile_requests.py [--requests 100]

Trains and exports a small digits model, serves it with 2 replicas, sends --requests bad requests
in turn (a 17 KB PNG of 144 megapixels, a 40 MB multipart upload sent chunked, a 40 MB raw body
sent chunked, a malformed multipart form), each answered 400 or 413, and reports the replicas'
resident memory before and after, then checks a good image is still labelled. Writes the "Hostile
requests" section of benchmarks/RESULTS.md. About 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import itertools
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import command_line, table, write_section  # noqa: E402

NAS = [sys.executable, "-m", "nas.cli"]
NOTE = (
    "The image bomb no longer grows a replica (its pixels are counted from the header; before the cap, "
    "one such request grew a replica from 834 to 1,263 MB). Bodies over the limit are answered 413 once "
    "32 MiB have arrived, but each 40 MB body still costs the replicas memory that is not given back "
    "(about 30 MB a request at first, less later). Where is not found yet: probably Ray Serve's proxy, "
    "which may forward the whole body to the replica whether or not the application reads it. Not "
    "fixed; until it is, put a limit in front of Serve (a reverse proxy's client_max_body_size)."
)


def replicas_rss(server: psutil.Process) -> int:
    total = 0
    for process in server.children(recursive=True):
        try:
            if any("ServeReplica" in part for part in process.cmdline()):
                total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


def hostile_kinds(bomb: bytes):
    """(what, a function giving a request's keyword arguments) for each kind of hostile request."""
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}

    def chunked(head: bytes):
        return itertools.chain([head], (b"\0" * 2**20 for _ in range(40)))

    kinds = [
        ("144-megapixel PNG", lambda: {"files": [("file", ("bomb.png", bomb))]}),
        ("40 MB multipart, chunked", lambda: {"data": chunked(part), "headers": multipart}),
        ("40 MB raw body, chunked", lambda: {"data": chunked(b"")}),
        ("malformed multipart", lambda: {"data": b"--y\r\nnonsense", "headers": multipart}),
    ]
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nas-hostile-"))
    subprocess.run(
        [*NAS, "search", "--data", "digits", "--space", "linear", "--budget", "1", "--epochs", "1", "--name", "m"]
        + ["--runs-dir", str(work / "runs"), "--no-dashboard"],
        check=True,
        capture_output=True,
    )
    subprocess.run([*NAS, "export", str(work / "runs" / "m"), "--out", str(work / "model")], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [*NAS, "serve", str(work / "model"), "--port", str(port), "--replicas", "2"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while "Ctrl-C" not in server.stdout.readline():
            assert server.poll() is None, "nas serve did not start"
        good = io.BytesIO()
        Image.new("L", (8, 8), 100).save(good, "PNG")
        bomb = io.BytesIO()
        Image.new("1", (12000, 12000)).save(bomb, "PNG")
        with requests.Session() as http:
            for _ in range(5):  # warm: the memory before is the memory of a serving replica
                assert http.post(f"{url}/predict", data=good.getvalue(), timeout=30).status_code == 200
            process = psutil.Process(server.pid)
            before = replicas_rss(process)
            rows, started = [], time.monotonic()
            for what, request in hostile_kinds(bomb.getvalue()):  # one kind after another: which one grows
                codes = Counter(
                    http.post(f"{url}/predict", timeout=60, **request()).status_code for _ in range(args.requests // 4)
                )
                rows.append(
                    [
                        what,
                        ", ".join(f"{c} x{n}" for c, n in sorted(codes.items())),
                        f"{replicas_rss(process) / 2**20:,.0f}",
                    ]
                )
            seconds = time.monotonic() - started
            after = replicas_rss(process)
            still = http.post(f"{url}/predict", data=good.getvalue(), timeout=30).status_code
    finally:
        server.terminate()
        server.wait(timeout=60)
    body = (
        table([f"{args.requests // 4} requests of each kind, in turn", "HTTP status", "replicas' MiB after"], rows)
        + f"\n\nTwo replicas serving an 8x8 digits model: {before / 2**20:,.0f} MiB resident before "
        f"{args.requests} hostile requests, {after / 2**20:,.0f} MiB after ({(after - before) / 2**20:+,.0f} MiB), "
        f"sent one at a time in {seconds:.1f} s; a good image afterwards was answered {still}.\n\n" + NOTE
    )
    print(body)
    write_section("Hostile requests", command_line(), body)


if __name__ == "__main__":
    main()
