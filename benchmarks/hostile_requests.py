"""`nas serve`'s replicas' memory before and after hostile requests, and a good answer after them.

    python benchmarks/hostile_requests.py [--requests 100] [--within-limit 40]

Trains and exports a small digits model, serves it with 2 replicas, sends --requests bad requests
in turn (a 17 KB PNG of 144 megapixels, a 40 MB multipart upload sent chunked, a 40 MB raw body
sent chunked, a malformed multipart form), each answered 400 or 413, and reports the resident
memory of the replicas and of Serve's HTTP proxy before and after, then checks a good image is
still labelled. --within-limit N then sends N chunked 30 MiB bodies that are under the limit but
not images (400), which do reach the replicas. Writes benchmarks/results/hostile_requests.json and
the "Hostile requests" section of benchmarks/RESULTS.md. About 3 minutes on 2 cores.
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
from results_md import finish, table  # noqa: E402

NAS = [sys.executable, "-m", "nas.cli"]
OUT = Path(__file__).resolve().parent / "results" / "hostile_requests.json"
NOTE = (
    "Resident memory (VmRSS), which counts the pages of Ray's object store a process has mapped (RssShmem, "
    "shared between the proxy and a replica). The image bomb does not grow a replica: its pixels are counted "
    "from the header (before the cap, one such request grew a replica from 834 to 1,263 MB). A body over the "
    "limit is answered 413 by Serve's HTTP proxy (nas/serve_proxy.py) and never reaches a replica: on a "
    "Content-Length at once, unread; chunked, once 32 MiB have arrived. Before, Serve's proxy forwarded every "
    "body whole and the replica pulled all of it whether or not the application read it, in batches that "
    "travel through the object store: each 40 MB body left object-store pages mapped and malloc's heap in the "
    "replica (1,628 MiB before 100 hostile requests, 2,999 MiB after). A body within the limit still travels "
    "that way: a stream of them grows the replicas, mostly by object-store pages (at most the store's size, "
    "30% of memory by default), and more slowly as the store's pages are reused. Not fixed."
)


def rss(server: psutil.Process, actor: str, field: str = "VmRSS") -> int:
    """The resident bytes (`field` of /proc/PID/status: VmRSS, or RssShmem for the shared memory
    mapped, Ray's object store) of the server's processes whose command line names `actor`."""
    total = 0
    for process in server.children(recursive=True):
        try:
            if any(actor in part for part in process.cmdline()):
                with open(f"/proc/{process.pid}/status") as f:
                    total += next(int(line.split()[1]) * 1024 for line in f if line.startswith(f"{field}:"))
        except (psutil.Error, OSError, StopIteration):
            continue
    return total


def memory(server: psutil.Process) -> dict[str, float]:
    return {
        "replicas_mib": rss(server, "ServeReplica") / 2**20,
        "replicas_shared_mib": rss(server, "ServeReplica", "RssShmem") / 2**20,
        "proxy_mib": rss(server, "ProxyActor") / 2**20,
    }


def hostile_kinds(bomb: bytes):
    """(what, a function giving a request's keyword arguments) for each kind of hostile request."""
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}

    def chunked(head: bytes):
        return megabytes(40, head)

    kinds = [
        ("144-megapixel PNG", lambda: {"files": [("file", ("bomb.png", bomb))]}),
        ("40 MB multipart, chunked", lambda: {"data": chunked(part), "headers": multipart}),
        ("40 MB raw body, chunked", lambda: {"data": chunked(b"")}),
        ("malformed multipart", lambda: {"data": b"--y\r\nnonsense", "headers": multipart}),
    ]
    return kinds


def megabytes(n: int, head: bytes = b""):
    """`head` then n MiB of zeros, as a generator: requests sends it chunked, without a Content-Length."""
    return itertools.chain([head], (b"\0" * 2**20 for _ in range(n)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--within-limit", type=int, default=0, help="30 MiB bodies under the limit, sent after")
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
    result = {"requests": args.requests, "kinds": [], "within_limit": None}
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
            result["before"] = memory(process)
            started = time.monotonic()
            for what, request in hostile_kinds(bomb.getvalue()):  # one kind after another: which one grows
                codes = Counter(
                    http.post(f"{url}/predict", timeout=60, **request()).status_code for _ in range(args.requests // 4)
                )
                result["kinds"].append({"what": what, "statuses": dict(sorted(codes.items())), **memory(process)})
            result["seconds"] = time.monotonic() - started
            result["after"] = memory(process)
            result["good_status_after"] = http.post(f"{url}/predict", data=good.getvalue(), timeout=30).status_code
            if args.within_limit:  # in two halves: whether the memory they take goes on growing
                halves = []
                for _ in range(2):
                    codes = Counter(
                        http.post(f"{url}/predict", data=megabytes(30), timeout=60).status_code
                        for _ in range(args.within_limit // 2)
                    )
                    halves.append({"statuses": dict(codes), **memory(process)})
                result["within_limit"] = {"requests": args.within_limit // 2 * 2, "halves": halves}
    finally:
        server.terminate()
        server.wait(timeout=60)
    finish(OUT, result, "Hostile requests", report, measured=True)


def report(result: dict) -> str:
    n, before, after = result["requests"], result["before"], result["after"]
    rows = [
        [
            k["what"],
            ", ".join(f"{c} x{m}" for c, m in k["statuses"].items()),
            f"{k['replicas_mib']:,.0f}",
            f"{k['proxy_mib']:,.0f}",
        ]
        for k in result["kinds"]
    ]
    header = [f"{n // 4} requests of each kind, in turn", "HTTP status", "replicas' MiB after", "proxy's MiB after"]
    body = table(header, rows) + (
        f"\n\nTwo replicas serving an 8x8 digits model: {before['replicas_mib']:,.0f} MiB resident before {n} "
        f"hostile requests, {after['replicas_mib']:,.0f} MiB after "
        f"({after['replicas_mib'] - before['replicas_mib']:+,.1f} MiB); Serve's proxy {before['proxy_mib']:,.0f} "
        f"and {after['proxy_mib']:,.0f} MiB. Sent one at a time in {result['seconds']:.1f} s; a good image "
        f"afterwards was answered {result['good_status_after']}."
    )
    within = result.get("within_limit")
    if within:
        half, whole = within["halves"]
        statuses = Counter(half["statuses"]) + Counter(whole["statuses"])
        body += (
            f" Then {within['requests']} chunked 30 MiB bodies within the limit, not images "
            f"({', '.join(f'{c} x{m}' for c, m in sorted(statuses.items()))}), which reach the replicas: "
            f"replicas {half['replicas_mib']:,.0f} MiB after half of them and {whole['replicas_mib']:,.0f} MiB "
            f"after all (of which object-store pages {half['replicas_shared_mib']:,.0f} and "
            f"{whole['replicas_shared_mib']:,.0f} MiB), proxy {half['proxy_mib']:,.0f} and "
            f"{whole['proxy_mib']:,.0f} MiB."
        )
    return body + "\n\n" + NOTE


if __name__ == "__main__":
    main()
