"""`nas data prepare` by its two routes (issue 26): tf.data in the command's process, and Ray Data
(`--address`) on a Ray of this machine's (`local`) and, with --address HOST:6379, on a running
cluster. The images per second of each (the whole command: start-up, listing, decoding, writing and
fsync, as a user waits for it), and whether their shards are byte for byte the same.

    python benchmarks/prepare_routes.py [--images 3000] [--photo-size 256] [--image-size 64] [--repeats 2]
        [--address HOST:6379]

The images are JPEG crops of the photographs nas.photos cuts (written once into a temporary folder);
each route runs --repeats times, alternating, into new folders. Writes
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--photo-size", type=int, default=256, help="pixels of the JPEG files")
    parser.add_argument("--image-size", type=int, default=64, help="what prepare resizes them to")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--address", help="also a running Ray cluster's HOST:6379")
    args = parser.parse_args()

    from nas.photos import PHOTOGRAPHS, write_photo_set

    routes = {"tf.data (local)": None, "Ray Data, local Ray": "local"}
    if args.address:
        routes[f"Ray Data, cluster {args.address}"] = args.address
    seconds: dict[str, list[float]] = {name: [] for name in routes}
    with tempfile.TemporaryDirectory() as tmp:
        source = write_photo_set(
            Path(tmp) / "photos", size=args.photo_size, per_class=args.images // len(PHOTOGRAPHS), seed=0
        )
        count = sum(1 for p in source.rglob("*.jpg"))
        outs = {}
        for _ in range(args.repeats):
            for name, address in routes.items():
                out = Path(tmp) / f"out-{len(outs)}"
                seconds[name].append(prepare(source, out, args.image_size, address))
                outs.setdefault(name, out)
                print(f"{name}: {count / seconds[name][-1]:.0f} images/s", flush=True)
        first = outs["tf.data (local)"]
        shards = sorted(p.name for p in first.glob("*.tfrecord"))
        identical = all(
            (outs[name] / shard).read_bytes() == (first / shard).read_bytes() for name in outs for shard in shards
        )
    result = {"settings": vars(args), "images": count, "seconds": seconds, "identical_shards": identical}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prepare_routes.json").write_text(json.dumps(result, indent=1))
    figures = table(
        ["route", "seconds (each run)", "images/s (median)"],
        [
            [name, ", ".join(f"{s:.1f}" for s in runs), f"{count / statistics.median(runs):.0f}"]
            for name, runs in seconds.items()
        ],
    )
    body = (
        f"{count} JPEG crops of {args.photo_size} pixels (nas.photos), prepared at {args.image_size} pixels into 4 "
        f"shards a split, the whole command timed, {args.repeats} runs a route alternating. The routes' shards are "
        f"{'byte for byte the same' if identical else 'NOT the same'}.\n\n" + figures
    )
    write_section("Prepare routes", command_line(), body)
    print(figures)


if __name__ == "__main__":
    main()
