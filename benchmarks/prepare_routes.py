"""`nas data prepare` by its two routes (issue 26): tf.data in the command's process, and Ray Data
(`--address`) on a Ray of this machine's (`local`) and, with --address HOST:6379, on a running
cluster. The images per second of each (the whole command: start-up, listing, decoding, writing and
fsync, as a user waits for it), and whether their shards are byte for byte the same.

    python benchmarks/prepare_routes.py [--images 3000,12000] [--photo-size 256] [--image-size 64] [--repeats 2]
        [--address HOST:6379]

The images are JPEG crops of the photographs nas.photos cuts (written once per count into a temporary
folder); each route runs --repeats times, alternating, into new folders. Writes
benchmarks/results/prepare_routes.json and the "Prepare routes" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import command_line, table, write_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def prepare(source: Path, out: Path, image_size: int, address: str | None) -> float:
    """Seconds of one `nas data prepare` command."""
    command = [sys.executable, "-m", "nas.cli", "data", "prepare", str(source), "--out", str(out)]
    command += ["--image-size", str(image_size), "--shards", "4"]
    if address:
        command += ["--address", address]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return seconds


def measure(count: int, args, routes: dict[str, str | None], tmp: Path) -> dict:
    """One image count: each route's seconds, and whether every route wrote the same shards."""
    from nas.photos import PHOTOGRAPHS, write_photo_set

    source = write_photo_set(tmp / f"photos-{count}", size=args.photo_size, per_class=count // len(PHOTOGRAPHS))
    count = sum(1 for _ in source.rglob("*.jpg"))
    seconds: dict[str, list[float]] = {name: [] for name in routes}
    outs = {}
    for repeat in range(args.repeats):
        for n, (name, address) in enumerate(routes.items()):
            out = tmp / f"out-{count}-{repeat}-{n}"
            seconds[name].append(prepare(source, out, args.image_size, address))
            outs.setdefault(name, out)
            print(f"{count} images, {name}: {count / seconds[name][-1]:.0f} images/s", flush=True)
    first = next(iter(outs.values()))
    shards = sorted(p.name for p in first.glob("*.tfrecord"))
    identical = all(
        (out / shard).read_bytes() == (first / shard).read_bytes() for out in outs.values() for shard in shards
    )
    return {"images": count, "seconds": seconds, "identical_shards": identical}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="3000,12000", help="image counts, comma-separated")
    parser.add_argument("--photo-size", type=int, default=256, help="pixels of the JPEG files")
    parser.add_argument("--image-size", type=int, default=64, help="what prepare resizes them to")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--address", help="also a running Ray cluster's HOST:6379")
    args = parser.parse_args()

    routes = {"tf.data (local)": None, "Ray Data, local Ray": "local"}
    if args.address:
        routes[f"Ray Data, cluster {args.address}"] = args.address
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(int(n), args, routes, Path(tmp)) for n in args.images.split(",")]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prepare_routes.json").write_text(json.dumps({"settings": vars(args), "runs": runs}, indent=1))
    figures = table(
        ["images", "route", "seconds (each run)", "images/s (median)", "shards as tf.data's"],
        [
            [
                f"{run['images']:,}",
                name,
                ", ".join(f"{s:.1f}" for s in times),
                f"{run['images'] / statistics.median(times):.0f}",
                "byte for byte" if run["identical_shards"] else "DIFFERENT",
            ]
            for run in runs
            for name, times in run["seconds"].items()
        ],
    )
    body = (
        f"JPEG crops of {args.photo_size} pixels (nas.photos), prepared at {args.image_size} pixels into 4 shards a "
        f"split; the whole command timed (start-up, listing, decoding, writing, fsync), {args.repeats} runs a route, "
        "alternating. Every route runs on this one machine of 2 cores, so Ray Data has no more cores to use than "
        "tf.data: what it costs here is Ray's start (`local` starts a Ray for the command) and a Ray Data job's; "
        "the cluster route joins a running two-node cluster (`ray start`, 1 CPU a node, both on this machine). "
        "What a real cluster gains, its other machines' cores, is not measured here.\n\n" + figures
    )
    write_section("Prepare routes", command_line(), body)
    print(figures)


if __name__ == "__main__":
    main()
